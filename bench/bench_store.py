"""The response store at a build's scale (run on demand).

For each (rows, reply bytes) size, a fresh store is filled the way a build fills it
(``plan`` then ``put_many`` in batches of one request's samples), then every call a
build or ``fineproofs status`` makes is timed on the full store:

* ``get_many``: 1,000 random stored keys (the resume check of a chunk), per 1k keys;
* ``put_many``: 1,000 new rows in batches of ``--batch``, per 1k rows;
* ``plan``: 1,000 new keys, per 1k keys;
* ``summary``: one call (running totals), and ``recount``: the full scan the old
  ``summary()`` did, for comparison.

Each size runs in a subprocess of its own, so its peak RSS (``ru_maxrss``) is its own.
Also printed: fill rate, store size, the WAL's peak and final size. The last table
gives each per-op time as a ratio to the smallest size (flat = ~1.0).

    python bench/bench_store.py                         # 100k and 700k x 2 KB, 20k x 24 KB
    python bench/bench_store.py --sizes 10000x2000      # quick look
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _key(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


def _rows(start: int, n: int, nbytes: int, stage: str = "rollouts"):
    from fineproofs.store import StoredResponse

    pad = ("proof line " * (nbytes // 11 + 1))[:nbytes]
    for i in range(start, start + n):
        failed = i % 97 == 0
        resp = StoredResponse(
            _key(i),
            stage,
            "Qwen/Qwen3-4B-Thinking-2507",
            "failed" if failed else "ok",
            "http_503 after 8 retries" if failed else "",
            "" if failed else pad,
            "stop",
            300,
            nbytes // 4,
        )
        yield resp, {"messages": [{"role": "user", "content": f"problem {i // 128}"}], "sample_index": i % 128}


def _timed(fn, repeat: int = 5) -> float:
    """Median wall seconds of ``fn()`` over ``repeat`` runs."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def measure(rows: int, nbytes: int, batch: int, path: Path) -> dict:
    """Fill a store at ``path`` and time each call on it (runs in the child process)."""
    from fineproofs.store import ResponseStore

    wal = Path(str(path) + "-wal")
    wal_peak = 0
    t0 = time.perf_counter()
    with ResponseStore(path) as st:
        for start in range(0, rows, batch):
            n = min(batch, rows - start)
            st.plan("rollouts", (_key(i) for i in range(start, start + n)))
            st.put_many(list(_rows(start, n, nbytes)))
            if start % (batch * 64) == 0 and wal.exists():
                wal_peak = max(wal_peak, wal.stat().st_size)
        fill_s = time.perf_counter() - t0
        wal_peak = max(wal_peak, wal.stat().st_size)
        rng = random.Random(0)
        present = [[_key(rng.randrange(rows)) for _ in range(1000)] for _ in range(5)]
        it = iter(present)
        get_s = _timed(lambda: st.get_many(next(it)))
        assert len(st.get_many(present[0])) == len(set(present[0]))
        nxt = [rows]

        def put_1k():
            for b in range(0, 1000, batch):
                st.put_many(list(_rows(nxt[0] + b, min(batch, 1000 - b), nbytes)))
            nxt[0] += 1000

        put_s = _timed(put_1k)

        def plan_1k():
            st.plan("rollouts", (_key(i) for i in range(nxt[0], nxt[0] + 1000)))
            nxt[0] += 1000

        plan_s = _timed(plan_1k)
        summary_s = _timed(st.summary, repeat=20)
        (summ,) = st.summary()
        recount_s = _timed(st.recount, repeat=1)
        assert st.summary() == [summ]
        wal_final = wal.stat().st_size
    return {
        "rows": rows,
        "bytes": nbytes,
        "fill_rows_per_s": rows / fill_s,
        "get_many_ms_per_1k": get_s * 1e3,
        "put_many_ms_per_1k": put_s * 1e3,
        "plan_ms_per_1k": plan_s * 1e3,
        "summary_ms": summary_s * 1e3,
        "recount_ms": recount_s * 1e3,
        "store_mb": path.stat().st_size / 2**20,
        "wal_peak_mb": wal_peak / 2**20,
        "wal_final_mb": wal_final / 2**20,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "done": summ["done"],
        "failed": summ["failed"],
        "pending": summ["pending"],
    }


def run_child(rows: int, nbytes: int, batch: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_store_") as d:
        cmd = [sys.executable, __file__, "--child", f"{rows}x{nbytes}", "--batch", str(batch), "--dir", d]
        out = subprocess.run(
            cmd, check=True, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
        )
        return json.loads(out.stdout.strip().splitlines()[-1])


COLS = [
    ("rows", "{:>8}"),
    ("bytes", "{:>6}"),
    ("fill_rows_per_s", "{:>10.0f}"),
    ("get_many_ms_per_1k", "{:>9.1f}"),
    ("put_many_ms_per_1k", "{:>9.1f}"),
    ("plan_ms_per_1k", "{:>8.1f}"),
    ("summary_ms", "{:>8.3f}"),
    ("recount_ms", "{:>9.0f}"),
    ("store_mb", "{:>8.0f}"),
    ("wal_peak_mb", "{:>8.1f}"),
    ("wal_final_mb", "{:>8.1f}"),
    ("peak_rss_mb", "{:>8.0f}"),
]
HEAD = [
    "rows",
    "bytes",
    "fill/s",
    "get/1k ms",
    "put/1k ms",
    "plan/1k",
    "summ ms",
    "recount",
    "store MB",
    "WAL pk",
    "WAL end",
    "RSS MB",
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--sizes",
        nargs="+",
        default=["100000x2000", "700000x2000", "20000x24000"],
        help="ROWSxBYTES per size (default: %(default)s)",
    )
    p.add_argument("--batch", type=int, default=128, help="rows per put_many (one request's samples)")
    p.add_argument(
        "--cache-kib", type=int, default=None, help="SQLite page cache per connection (default: the store's)"
    )
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--dir", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.cache_kib:
        os.environ["BENCH_STORE_CACHE_KIB"] = str(a.cache_kib)
    if a.child:
        if os.environ.get("BENCH_STORE_CACHE_KIB"):
            import fineproofs.store

            fineproofs.store.CACHE_KIB = int(os.environ["BENCH_STORE_CACHE_KIB"])
        rows, nbytes = (int(x) for x in a.child.split("x"))
        print(json.dumps(measure(rows, nbytes, a.batch, Path(a.dir) / "store.sqlite")))
        return
    results = []
    print(" ".join(f"{h:>9}" for h in HEAD))
    for size in a.sizes:
        rows, nbytes = (int(x) for x in size.split("x"))
        r = run_child(rows, nbytes, a.batch)
        results.append(r)
        print(" ".join(f"{fmt.format(r[c]):>9}" for c, fmt in COLS), flush=True)
    base = results[0]
    print(f"\nper-op time and RSS as a ratio to the first size ({base['rows']} x {base['bytes']} B); flat = ~1.0")
    for r in results[1:]:
        ratios = {
            k: r[k] / base[k]
            for k in (
                "get_many_ms_per_1k",
                "put_many_ms_per_1k",
                "plan_ms_per_1k",
                "summary_ms",
                "recount_ms",
                "peak_rss_mb",
            )
        }
        print(
            f"  {r['rows']:>7} x {r['bytes']:>5} B ({r['rows'] / base['rows']:.0f}x rows): "
            + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items())
        )


if __name__ == "__main__":
    main()
