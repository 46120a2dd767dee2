"""Decontamination on hostile inputs: benchmark files validated before any work (one
DataError naming the file and the line, never a silently skipped row), disguised
copies (Cyrillic/Greek look-alikes, full-width forms, invisible characters, HTML)
still caught, and rows that cannot be checked reported as errors, not as clean."""

from __future__ import annotations

import csv
import io
import json
import os
import random

import pytest

from fineproofs.errors import DataError
from fineproofs.filters.decontaminate import DecontaminationFilter, Decontaminator, load_benchmark
from fineproofs.tables import iter_table

PROBLEMS = [
    "Prove that for every positive integer $n$, the number $n^5 - n$ is divisible by $30$.",
    "Find all functions $f:\\mathbb{R}\\to\\mathbb{R}$ such that $f(x+y)=f(x)+f(y)+2xy$ for all real numbers $x, y$.",
    "Let $ABC$ be a triangle with incenter $I$. Prove that $AI \\cdot BI \\cdot CI \\le 8 R^3 / 27$ where $R$ is the circumradius.",
    "Determine the smallest positive integer $k$ such that every $k$-element subset of $\\{1,2,\\dots,50\\}$ contains two numbers whose sum divides their product.",
    "Prove that there are infinitely many primes $p$ such that $p^2+2$ has at most four distinct prime divisors counted in $\\{3, 7, 11\\}$.",
]
CYRILLIC = {"a": "а", "e": "е", "o": "о", "p": "р", "c": "с", "x": "х", "y": "у", "i": "і"}


def write_csv(path, rows, header=("Problem ID", "Problem"), bom=False):
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    path.write_bytes((("\ufeff" if bom else "") + buf.getvalue()).encode())


@pytest.fixture
def bench_csv(tmp_path):
    f = tmp_path / "bench.csv"
    write_csv(f, [(f"B{i}", p) for i, p in enumerate(PROBLEMS)])
    return f


def test_valid_benchmark_loads_every_row(bench_csv, tmp_path):
    probs = load_benchmark(str(bench_csv))
    assert [p.id for p in probs] == [f"B{i}" for i in range(5)]
    bom = tmp_path / "bom.csv"
    write_csv(bom, [(f"B{i}", p) for i, p in enumerate(PROBLEMS)], bom=True)
    assert [p.text for p in load_benchmark(str(bom))] == PROBLEMS  # the BOM does not hide "Problem ID"


def _mutate_csv(text: str, rng: random.Random) -> tuple[str, str]:
    lines = text.split("\n")
    k = rng.randrange(1, len([x for x in lines if x]))
    kind = rng.choice(["unterminated", "latin1", "extra", "empty", "truncate_quote"])
    if kind == "unterminated":
        lines[k] = lines[k].replace('"', "", 1) if lines[k].count('"') else lines[k]
        lines[k] = lines[k].split(",", 1)[0] + ',"' + lines[k].split(",", 1)[1].replace('"', "")
    elif kind == "latin1":
        lines[k] = lines[k] + "\udce9"
    elif kind == "extra":
        lines[k] = lines[k] + ",EXTRA"
    elif kind == "empty":
        lines[k] = lines[k].split(",", 1)[0] + ","
    else:
        lines[k] = lines[k][: len(lines[k]) // 2]
    return "\n".join(lines), kind


@pytest.mark.parametrize("seed", range(30))
def test_mutated_benchmark_fails_loudly_or_loads_every_row(tmp_path, seed):
    rng = random.Random(seed)
    buf = io.StringIO()
    w = csv.writer(buf, quoting=csv.QUOTE_ALL if seed % 2 else csv.QUOTE_MINIMAL, lineterminator="\n")
    w.writerow(["Problem ID", "Problem"])
    w.writerows((f"B{i}", p) for i, p in enumerate(PROBLEMS))
    text, kind = _mutate_csv(buf.getvalue(), rng)
    f = tmp_path / "m.csv"
    f.write_bytes(text.encode("utf-8", errors="surrogateescape"))
    try:
        probs = load_benchmark(str(f))
    except DataError as e:
        msg = str(e)
        assert str(f) in msg and "\n" not in msg
        assert msg.split(str(f), 1)[1].startswith(":") or "no rows" in msg  # names the line
        return
    assert len(probs) == len(PROBLEMS), kind  # nothing skipped silently


@pytest.mark.parametrize(
    "bad",
    [
        b"[1, 2]",
        b"{not json",
        b'{"problem": "caf\xe9"}',
        b"[" * 3000,
        b'{"id": 3}',
        b'{"problem": ""}',
        b'{"problem": ["a list"]}',
        b'{"problem": "x", "n": ' + b"9" * 5000 + b"}",
    ],
)
def test_a_bad_jsonl_benchmark_line_is_named(tmp_path, bad):
    f = tmp_path / "b.jsonl"
    f.write_bytes(b'{"problem": "Prove it.", "id": 1}\n' + bad + b'\n{"problem": "Again.", "id": 2}\n')
    with pytest.raises(DataError, match=rf"{f.name}:2: "):
        load_benchmark(str(f))


def test_unterminated_quote_merging_two_problems_is_an_error(tmp_path):
    f = tmp_path / "q.csv"
    f.write_text('Problem ID,Problem\nB1,"Prove one\nB2,Prove two\nB3,"Prove three"\n')
    with pytest.raises(DataError, match=r"q\.csv:2: .*quote"):
        load_benchmark(str(f))


def test_whole_file_problems_are_one_line(tmp_path):
    os.mkfifo(tmp_path / "fifo.csv")
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "nocol.csv").write_text("a,b\n1,2\n")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    (tmp_path / "bench.xlsx").write_text("x")
    for name in ("missing.csv", "fifo.csv", "empty.csv", "nocol.csv", "bad.parquet", "bench.xlsx"):
        with pytest.raises(DataError) as e:
            load_benchmark(str(tmp_path / name))
        assert name in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(DataError):  # validated when the filter is built, before any document is read
        DecontaminationFilter([str(tmp_path / "missing.csv")])


def _cyrillic(text: str, rng: random.Random, share: float) -> str:
    out, in_math = [], False
    for ch in text:
        in_math ^= ch == "$"
        out.append(CYRILLIC[ch] if not in_math and ch in CYRILLIC and rng.random() < share else ch)
    return "".join(out)


def _fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" and c not in "$\\{}" else c for c in text)


@pytest.mark.parametrize("seed", range(10))
def test_disguised_copies_are_caught(bench_csv, seed):
    rng = random.Random(seed)
    dec = Decontaminator(load_benchmark(str(bench_csv)))
    i = seed % len(PROBLEMS)
    p = PROBLEMS[i]
    disguises = [
        _cyrillic(p, rng, 0.5),
        _fullwidth(p),
        "\u200b".join(p[j : j + 7] for j in range(0, len(p), 7)),  # zero-width spaces every 7 characters
        "<b onclick='x()'>" + p.replace(" ", " \u202e", 3) + "</b><script>alert(1)</script>",
        "Hey, can someone help: " + _cyrillic(p, rng, 0.3) + " Thanks!",
    ]
    for d in disguises:
        m = dec.match(d)
        assert m is not None and m.benchmark_id == f"B{i}", d


def test_rows_that_cannot_be_checked_are_errors(bench_csv, tmp_path):
    dec = Decontaminator(load_benchmark(str(bench_csv)))
    f = tmp_path / "in.jsonl"
    f.write_bytes(
        b"\n".join(
            [
                json.dumps({"problem": PROBLEMS[0]}).encode(),
                json.dumps({"statement": "x"}).encode(),
                b"[1]",
                json.dumps({"problem": ["a list"]}).encode(),
                json.dumps({"problem": "Unrelated: 1+1=2."}).encode(),
                json.dumps({"problem": None}).encode(),
            ]
        )
        + b"\n"
    )
    verdicts = list(dec.check_rows(iter_table(f), "problem"))
    assert [v.contaminated for v in verdicts] == [True, None, None, None, False, None]
    assert [v.line for v in verdicts] == [1, 2, 3, 4, 5, 6]
    assert verdicts[1].error.startswith("missing_text_field") and verdicts[3].error.startswith("bad_field")
    assert verdicts[4].output_row()["contaminated"] is False
    with pytest.raises(ValueError):
        verdicts[1].output_row()  # an unchecked row is never written as clean


def test_from_files_validates_every_file(bench_csv, tmp_path):
    assert len(Decontaminator.from_files([str(bench_csv)]).problems) == len(PROBLEMS)
    with pytest.raises(DataError, match="nope.csv"):
        Decontaminator.from_files([str(bench_csv), str(tmp_path / "nope.csv")])
