"""Crash safety and re-run cost of a build (run on demand).

1. SIGKILL: builds the RL split with the paper profile against a loopback stand-in
   server (tests/faultproxy.py + tests/oracle.py), kills it at N random moments,
   resumes after each, and compares with an uninterrupted build: lost and duplicated
   store records, and identical output rows.
2. Re-run: times a finished build run again on the same directory (zero requests
   expected) against the first run, on the embedded model (``--embedded``) or on the
   loopback server.

    python bench/bench_resume.py --kills 20
    python bench/bench_resume.py --kills 0 --embedded --limit 4
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from buildkit import PAPER_MODELS, paper_profile_file, rows, run_killed_after, run_killed_at, store_keys  # noqa: E402
from faultproxy import FaultServer  # noqa: E402
from oracle import oracle_reply  # noqa: E402

from fineproofs.config import load_profile  # noqa: E402
from fineproofs.pipelines.build import Build  # noqa: E402


def bench_kills(kills: int, seed: int) -> None:
    os.environ["GEMINI_API_KEY"] = "bench-key"
    with tempfile.TemporaryDirectory() as d, FaultServer(model=PAPER_MODELS, reply_fn=oracle_reply, latency=0.05) as s:
        tmp = Path(d)
        profile = paper_profile_file(tmp, s.url, student_samples=64)
        t0 = time.perf_counter()
        run_killed_at(profile, tmp / "clean", [], limit=8)
        clean_s = time.perf_counter() - t0
        clean_keys = store_keys(tmp / "clean")
        rng = random.Random(seed)
        # kill at random points of the generation: once the store holds a random number of records
        targets = rng.sample(range(1, len(clean_keys)), kills)
        done = run_killed_after(profile, tmp / "killed", targets, limit=8)
        killed_keys = store_keys(tmp / "killed")
        lost = len(set(clean_keys) - set(killed_keys))
        dup = len(killed_keys) - len(set(killed_keys))
        same = rows(tmp / "clean") == rows(tmp / "killed")
        print(
            f"SIGKILL: {done} kills landed mid-build (of {kills} tried, clean build {clean_s:.1f} s); "
            f"records {len(killed_keys)} vs {len(clean_keys)}: lost {lost}, duplicated {dup}; "
            f"output identical: {same}"
        )


def bench_rerun(embedded: bool, limit: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if embedded:
            prof, server = load_profile("embedded"), None
        else:
            os.environ["GEMINI_API_KEY"] = "bench-key"
            server = FaultServer(model=PAPER_MODELS, reply_fn=oracle_reply, latency=0.05).start()
            prof = load_profile(str(paper_profile_file(tmp, server.url, student_samples=32)))
        try:
            t0 = time.perf_counter()
            first = Build(prof, tmp / "run", "rl", limit=limit, progress=False).run()
            t1 = time.perf_counter()
            sent = len(server.received) if server else None
            second = Build(prof, tmp / "run", "rl", limit=limit, progress=False).run()
            t2 = time.perf_counter()
            requests = (len(server.received) - sent) if server else second.generated
        finally:
            if server:
                server.stop()
        print(
            f"re-run ({'embedded model' if embedded else 'loopback server'}, {limit} problems): first "
            f"{t1 - t0:.1f} s ({first.generated} generations), re-run {t2 - t1:.2f} s "
            f"({requests} requests) = {(t2 - t1) / (t1 - t0):.3f} of the first run"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--embedded", action="store_true", help="time the re-run on the embedded model")
    p.add_argument("--limit", type=int, default=4)
    a = p.parse_args()
    if a.kills:
        bench_kills(a.kills, a.seed)
    bench_rerun(a.embedded, a.limit)


if __name__ == "__main__":
    main()
