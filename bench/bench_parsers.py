"""Parser linearity: time per MB of adversarial input, 16 KB to 4 MB, per source format.

Each input mixes ordinary problem text with what used to stall ingest: unterminated
``<math>``, ``<cmath>``, ``[[a|``, ``\\(``, ``\\[``, ``\\begin{problem}``,
``\\begin{equation}``, ``\\begin{enumerate}``, ``\\item[``, ``\\label{``, ``<br ``,
``[[Category:``, ``$$``, long blank runs, and for tables broken rows (unterminated
quotes, extra fields, Latin-1 bytes, deep nesting, 5,000-digit numbers). What is timed
is what ingest does with each format:

- wiki: :func:`parse_wiki_page` then :func:`normalise_markup`, :func:`latex_problem` and
  :func:`english_score` on the statement and every solution;
- LaTeX booklet: :func:`split_booklet` then :func:`normalise_markup` on every item;
- JSONL / CSV: :func:`fineproofs.tables.iter_table`, :func:`map_row` and
  :func:`normalise_markup` on every statement (one row holds half of the bytes);
- canonical: :func:`canonical` on one statement of that size.

Prints seconds per MB for each size and the ratio of the largest to the smallest
per-MB figure (flat ≈ 1; quadratic would be ~256 from 16 KB to 4 MB).

    python bench/bench_parsers.py [--max-mb 4] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from fineproofs.filters.canonical import canonical
from fineproofs.filters.language import english_score
from fineproofs.filters.latex import latex_problem
from fineproofs.filters.markup import normalise_markup
from fineproofs.pipelines.sources.booklet import split_booklet
from fineproofs.pipelines.sources.errors import ParseError
from fineproofs.pipelines.sources.rows import map_row
from fineproofs.pipelines.sources.wiki import parse_wiki_page
from fineproofs.tables import iter_table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_robust_parsers import hostile as _hostile

SIZES = [16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20]


def hostile(n: int, rng: random.Random) -> str:
    """``n`` characters of prose mixed with unterminated openers and blank runs (the
    robustness suite's generator, :func:`test_robust_parsers.hostile`)."""
    return _hostile(n, rng.randrange(2**32))


def wiki_input(n: int, rng) -> str:
    # "==" stays mid-line: a heading at line start would end the section and the rest would be skipped
    body = lambda k: hostile(k, rng).replace("\n==", "\n ==")  # noqa: E731
    return "==Problem==\n" + body(n // 2) + "\n==Solution==\n" + body(n - n // 2) + "\n"


def run_wiki(text: str) -> None:
    statement, solutions = parse_wiki_page(text)
    for t in (statement, *solutions):
        t = normalise_markup(t)
        latex_problem(t)
        english_score(t)


def booklet_input(n: int, rng) -> str:
    good = "\\begin{problem}[A%d] Prove that $x_%d^2 \\ge 0$.\\end{problem}\n\\begin{solution}Squares.\\end{solution}\n"
    head = "\\begin{document}\\section{Algebra}\n" + "".join(good % (i, i) for i in range(20))
    return head + hostile(max(0, n - len(head)), rng) + "\\end{document}\n"


def run_booklet(text: str) -> None:
    for it in split_booklet(text):
        normalise_markup(it.statement)
        for s in it.solutions:
            normalise_markup(s)


def _rows(n: int, rng) -> tuple[list[str], str]:
    good = [f"Prove that {i} + $x^{i}$ is fine for all $x$." for i in range(max(1, n // 2 // 60))]
    return good, hostile(n // 2, rng)


def jsonl_input(n: int, rng) -> bytes:
    good, bad = _rows(n, rng)
    lines = [json.dumps({"problem": g, "solution": "Easy.", "year": 2001}).encode() for g in good]
    lines += [
        json.dumps({"problem": bad, "solution": bad[:1000]}).encode(),
        b"[" * 5000 + b"]" * 5000,
        b'{"problem": 1' + b"0" * 5000 + b"}",
        b'{"problem": "caf\xe9"}',
        b'{"year": 1e30, "problem": "x"}',
    ]
    rng.shuffle(lines)
    return b"\n".join(lines) + b"\n"


def csv_input(n: int, rng) -> bytes:
    good, bad = _rows(n, rng)
    q = lambda s: '"' + s.replace('"', '""') + '"'  # noqa: E731
    lines = [f"{q(g)},Easy.,{2000 + i % 20}".encode() for i, g in enumerate(good)]
    lines += [f"{q(bad)},x,1999".encode(), b'"unterminated,x,2001', b"a,b,c,d,e", "caf\xe9,x,2002".encode("latin-1")]
    lines += [b'x,"' + b"a" * 50 + b'"b,2003'] * 10
    rng.shuffle(lines)
    return b"problem,solution,year\n" + b"\n".join(lines) + b"\n"


def run_table(path: Path) -> None:
    for _, row, err in iter_table(path):
        if err:
            continue
        try:
            normalise_markup(map_row(row)["problem"])
        except ParseError:
            pass


def canonical_input(n: int, rng) -> str:
    return hostile(n, rng)


def measure(fn, arg, min_time: float = 0.25) -> float:
    """Seconds per call (repeated for small inputs so the clock is not the noise)."""
    reps, total = 0, 0.0
    while total < min_time or reps == 0:
        t0 = time.perf_counter()
        fn(arg)
        total += time.perf_counter() - t0
        reps += 1
        if total > 2 * min_time and reps >= 1:
            break
    return total / reps


def bench(max_bytes: int, seed: int) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    tmp = Path(tempfile.mkdtemp(prefix="fineproofs-bench-"))
    cases = {
        "wiki": (wiki_input, run_wiki, None),
        "latex booklet": (booklet_input, run_booklet, None),
        "jsonl": (jsonl_input, run_table, ".jsonl"),
        "csv": (csv_input, run_table, ".csv"),
        "canonical()": (canonical_input, canonical, None),
    }
    for name, (make, run, suffix) in cases.items():
        out[name] = []
        for n in (s for s in SIZES if s <= max_bytes):
            data = make(n, random.Random(seed))
            arg = data
            if suffix:
                arg = tmp / f"in{suffix}"
                arg.write_bytes(data)
            size = len(data.encode() if isinstance(data, str) else data)
            out[name].append((size, measure(run, arg)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max-mb", type=float, default=4.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    results = bench(int(args.max_mb * (1 << 20)), args.seed)
    labels = [f"{s >> 10} KB" if s < 1 << 20 else f"{s >> 20} MB" for s in SIZES if s <= args.max_mb * (1 << 20)]
    print(f"{'seconds per MB':<16}" + "".join(f"{x:>10}" for x in labels) + f"{'max/min':>10}")
    for name, rows in results.items():
        per_mb = [t / (size / (1 << 20)) for size, t in rows]
        print(f"{name:<16}" + "".join(f"{x:>10.3f}" for x in per_mb) + f"{max(per_mb) / min(per_mb):>10.2f}")
    print(f"(total {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
