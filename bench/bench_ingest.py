"""Ingest throughput: read + clean + dedup + decontaminate on N synthetic
statement-like problems (run on demand, not in tests).

    python bench/bench_ingest.py                 # 10k and 100k
    python bench/bench_ingest.py --sizes 2000 20000 --tasks 2
    python bench/bench_ingest.py --compare 20000   # whole ingest with / without decontamination

Prints per size the wall time of the whole ingest, the ratio of the two sizes' times
(≈ size ratio when the pipeline is linear), and the ratio of the decontamination
stage to a plain datatrove read→write pass over the same documents. Synthetic rows
mix templates, random formulas and constants, ~5% exact and ~3% near duplicates and
~0.5% disguised IMO-Bench problems (when ../shared/data/imobench exists).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from loguru import logger

from fineproofs.config import load_profile

IMOBENCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "imobench"
OPENERS = [
    "Let $n$ be a positive integer.",
    "Let $a$, $b$, $c$ be positive real numbers with $abc={k}$.",
    "Let $ABC$ be a triangle with $AB={k}$ and $AC={m}$.",
    "A sequence satisfies $x_1={k}$ and $x_{{n+1}}=x_n^2+{m}$.",
    "Let $p$ be a prime with $p>{k}$.",
    "Consider a ${k}\\times {m}$ board whose cells are coloured in {j} colours.",
]
CLAIMS = [
    "Prove that ${v}^{k}+{m}{w}$ is divisible by ${j}$.",
    "Prove that $a^{k}+b^{k}+c^{k}\\ge {m}(ab+bc+ca)$.",
    "Show that there are at least ${k}$ cells of the same colour in some row.",
    "Prove that $f(x+{k}y)={m}f(x)+f(y)$ has no solution $f:\\mathbb{{Z}}\\to\\mathbb{{Z}}$ other than $f\\equiv 0$.",
    "Prove that the circumcircle of $ABC$ passes through the point $P_{k}$ defined by $PA={m}PB$.",
    "Prove that $x_n$ is never divisible by ${j}$ for $n\\ge {k}$.",
]
WORDS = "moreover furthermore suppose assume consider therefore hence whenever provided every each".split()


def synth(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows: list[dict] = []
    bench = []
    if IMOBENCH.exists():
        from fineproofs.filters.decontaminate import load_benchmark

        bench = load_benchmark(str(IMOBENCH / "proofbench_v2.csv")) + load_benchmark(
            str(IMOBENCH / "answerbench_v2.csv")
        )
    for i in range(n):
        r = rng.random()
        if rows and r < 0.05:
            rows.append(dict(rng.choice(rows)))  # exact duplicate
            continue
        if rows and r < 0.08:
            d = dict(rng.choice(rows))
            d["problem"] = d["problem"].replace("Prove that", "Show that").replace("$n$", "$m$")
            rows.append(d)
            continue
        if bench and r < 0.085:
            rows.append({"problem": "Can anyone help? " + rng.choice(bench).text.replace("$", ""), "solution": "Hint."})
            continue
        k, m, j = rng.randint(2, 99), rng.randint(2, 999), rng.randint(3, 60)
        v, w = rng.sample("xyzuvw", 2)
        text = " ".join(
            [
                rng.choice(OPENERS),
                rng.choice(WORDS).capitalize() + " that $t_{i}={m}$.".replace("{i}", str(i)),
                rng.choice(CLAIMS),
            ]
        ).format(k=k, m=m, j=j, v=v, w=w)
        rows.append({"problem": text, "solution": f"By induction on $n$ with step {k}.", "source": "synthetic"})
    return rows


def plain_pass(inp: Path, out: Path) -> float:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    t = time.perf_counter()
    LocalPipelineExecutor(
        [JsonlReader(str(inp), text_key="problem"), JsonlWriter(str(out), compression=None)],
        tasks=1,
        logging_dir=str(out / "logs"),
    ).run()
    return time.perf_counter() - t


def stage_seconds(out: Path, stage: str) -> float:
    stats = json.loads((out / "logs" / stage / "stats.json").read_text())
    return sum(
        s["time_stats"].get("total", 0.0)
        for s in stats
        if isinstance(s, dict) and isinstance(s.get("time_stats"), dict)
    )


def run(n: int, tasks: int, tmp: Path, decontaminate: bool = True) -> dict:
    from fineproofs.pipelines.ingest import run_ingest

    src = tmp / f"src{n}"
    if not src.exists():
        src.mkdir()
        with open(src / "rows.jsonl", "w") as f:
            for r in synth(n):
                f.write(json.dumps(r) + "\n")
    data = load_profile("embedded").model_dump()
    data["sources"]["paths"] = [str(src)]
    data["limit"] = None
    from fineproofs.config import Profile

    benches = [str(IMOBENCH / "proofbench_v2.csv"), str(IMOBENCH / "answerbench_v2.csv")] if IMOBENCH.exists() else []
    if not decontaminate:
        benches = []
    t = time.perf_counter()
    out = tmp / f"out{n}{'' if decontaminate else '-plain'}"
    r = run_ingest(Profile.model_validate(data), out, benchmarks=benches, tasks=tasks)
    total = time.perf_counter() - t
    plain = plain_pass(src, tmp / f"plain{n}{'' if decontaminate else '-nd'}")
    decon = stage_seconds(out, "decontaminate")
    return {
        "n": n,
        "total_s": total,
        "decontam_s": decon,
        "plain_s": plain,
        "counts": r.counts,
        "flagged": sum(b["flagged"] for b in r.decontam_report["benchmarks"].values()),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs=2, default=[10_000, 100_000])
    ap.add_argument("--tasks", type=int, default=2)
    ap.add_argument(
        "--compare", type=int, metavar="N", help="whole ingest of N problems with and without decontamination"
    )
    ap.add_argument("--repeat", type=int, default=1, help="--compare: runs per arm (the fastest counts)")
    args = ap.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    if args.compare:
        n = args.compare
        arms: dict[bool, list[dict]] = {False: [], True: []}
        for _ in range(args.repeat):  # alternate the arms; the fastest of each (least disturbed by load)
            for dec in (False, True):
                with tempfile.TemporaryDirectory() as d:
                    run(50, args.tasks, Path(d))  # warm imports and caches before timing
                    arms[dec].append(run(n, args.tasks, Path(d), decontaminate=dec))
        without = min(arms[False], key=lambda r: r["total_s"])
        with_ = min(arms[True], key=lambda r: r["total_s"])
        extra_ms = (with_["total_s"] - without["total_s"]) / n * 1000
        print(
            f"{n} problems: ingest without decontamination {without['total_s']:.1f}s, with {with_['total_s']:.1f}s "
            f"(ratio {with_['total_s'] / without['total_s']:.2f}x; {extra_ms:.2f} ms per problem; decontaminate "
            f"stage {with_['decontam_s']:.1f}s, flagged {with_['flagged']}"
            + ("" if IMOBENCH.exists() else "; IMO-Bench files absent: nothing indexed")
            + ")"
        )
        return
    with tempfile.TemporaryDirectory() as d:
        fixed = run(50, args.tasks, Path(d))["total_s"]  # executor start-up etc., independent of size
        res = [run(n, args.tasks, Path(d)) for n in args.sizes]
    for r in res:
        r["work_s"] = r["total_s"] - fixed
        print(
            f"{r['n']:>7} problems: ingest {r['total_s']:.1f}s ({r['work_s']:.1f}s above the fixed {fixed:.1f}s)  decontaminate stage {r['decontam_s']:.1f}s  "
            f"plain read-write {r['plain_s']:.2f}s  (decontam/plain = {r['decontam_s'] / r['plain_s']:.1f}x)  "
            f"flagged {r['flagged']}  counts {r['counts']}"
        )
    a, b = res
    print(
        f"time ratio {b['n']}/{a['n']}: wall {b['total_s'] / a['total_s']:.1f}, above fixed cost "
        f"{b['work_s'] / a['work_s']:.1f}  (size ratio {b['n'] / a['n']:.0f})"
    )


if __name__ == "__main__":
    main()
