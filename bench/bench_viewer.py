"""Page timings of ``fineproofs view`` on a large synthetic run directory (run on demand).

Writes a run directory of ``--problems`` x ``--samples`` student rollouts (default
12,500 x 8 = 100,000 samples, each graded, each judge request in ``store.sqlite``),
starts the viewer on loopback, and times over HTTP: the start-up (index build), the
problem list (first page, a deep page, a search, combined filters) and problem pages
(random problems). The target is < 300 ms per page.

    python bench/bench_viewer.py                       # 100,000 samples
    python bench/bench_viewer.py --problems 1000 --samples 4 --keep /tmp/view-bench
"""

from __future__ import annotations

import argparse
import http.client
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

# the synthetic run directory is test support (tests/viewkit.py), not part of the wheel
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from viewkit import write_run

from fineproofs.viewer import make_server

TARGET_MS = 300


def fetch(url: str, path: str) -> float:
    u = urlsplit(url)
    con = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    t = time.perf_counter()
    con.request("GET", path)
    resp = con.getresponse()
    resp.read()
    dt = (time.perf_counter() - t) * 1000
    con.close()
    if resp.status != 200:
        raise SystemExit(f"GET {path}: HTTP {resp.status}")
    return dt


def timed(url: str, paths: list[str], repeat: int = 3) -> list[float]:
    return [fetch(url, p) for p in paths for _ in range(repeat)]


def row(name: str, ms: list[float]) -> str:
    ms = sorted(ms)
    p95 = ms[min(len(ms) - 1, int(0.95 * len(ms)))]
    flag = "ok" if ms[-1] < TARGET_MS else "SLOW"
    return f"{name:<34} {len(ms):>4} {statistics.median(ms):>9.1f} {p95:>9.1f} {ms[-1]:>9.1f}  {flag}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", type=int, default=12_500)
    ap.add_argument("--samples", type=int, default=8, help="student rollouts per problem")
    ap.add_argument("--keep", type=Path, help="write the run directory here and keep it (reused if present)")
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory(prefix="bench-viewer-")
    run = args.keep or Path(tmp.name) / "run"
    if not (run / "build.json").exists():
        t = time.perf_counter()
        write_run(run, args.problems, args.samples)
        print(
            f"wrote {args.problems * args.samples:,} samples ({args.problems:,} problems) to {run} "
            f"in {time.perf_counter() - t:.1f} s"
        )
    t = time.perf_counter()
    srv = make_server(run)
    print(f"viewer start-up (index build): {time.perf_counter() - t:.2f} s")
    try:
        con = srv.viewer.index.db()
        pids = [r[0] for r in con.execute("SELECT pid FROM problems WHERE n_samples > 0")]
        n_samples = con.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
        print(f"indexed {len(pids):,} problems with samples, {n_samples:,} samples\n")
        rng = random.Random(0)
        last = -(-len(pids) // 50)
        cases = {
            "problem list, first page": ["/problems"],
            "problem list, deep page": [f"/problems?page={last // 2}", f"/problems?page={last}"],
            "problem list, search": ["/problems?q=Problem+777%3A", "/problems?q=sqrt", "/problems?q=nothing+here"],
            "problem list, filters": [
                "/problems?status=kept&competition=IMO&reward=0.25-0.5",
                "/problems?grade=7&source=olympiads",
                "/problems?status=dropped&grade=failed",
            ],
            "problem page (random problems)": [f"/problem/{p}" for p in rng.sample(pids, min(20, len(pids)))],
            "quarantine": ["/quarantine", "/quarantine?stage=rollout_grades&page=3"],
            "overview": ["/"],
        }
        fetch(srv.url, "/problems")  # warm-up
        print(f"{'page':<34} {'n':>4} {'p50 ms':>9} {'p95 ms':>9} {'max ms':>9}  (target < {TARGET_MS} ms)")
        for name, paths in cases.items():
            print(row(name, timed(srv.url, paths)))
    finally:
        srv.shutdown()
        tmp.cleanup()


if __name__ == "__main__":
    main()
