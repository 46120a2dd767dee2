"""HTTPEngine throughput against Little's law (run on demand).

A fake OpenAI-compatible server (tests/faultproxy.py) answers every call after a
fixed latency L, in a separate process so it does not share the GIL with the
engine. With C calls in flight the ideal throughput is C / L; this prints the
measured ratio for the engine alone, for the store-backed CachedGenerator path
(every completion committed to SQLite as it arrives), and for the whole distill
stage (prompt rendering, store, reply splitting into reasoning/proof).

    python bench/bench_http.py                     # a few (C, L) settings
    python bench/bench_http.py --c 64 --latency 0.5 --requests 1280
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from fineproofs.config import EngineConfig, RoleConfig, SamplingConfig  # noqa: E402
from fineproofs.engines.base import GenerationRequest  # noqa: E402
from fineproofs.engines.http_engine import HTTPEngine  # noqa: E402
from fineproofs.generation import CachedGenerator  # noqa: E402
from fineproofs.pipelines.distill import ProofGenerator  # noqa: E402
from fineproofs.pipelines.stage import Work  # noqa: E402
from fineproofs.records import Problem  # noqa: E402
from fineproofs.store import ResponseStore  # noqa: E402


def start_fake_server(latency: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "faultproxy.py"), "--latency", str(latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    if not line.startswith("listening on "):
        proc.kill()
        raise RuntimeError(f"fake server did not start: {line!r}")
    return proc, line.split()[-1]


def requests(n: int, tag: str) -> list[GenerationRequest]:
    return [GenerationRequest([{"role": "user", "content": f"{tag} problem {i}"}]) for i in range(n)]


def bench(c: int, latency: float, n: int) -> None:
    proc, url = start_fake_server(latency)
    ideal = c / latency
    try:
        with HTTPEngine("fake-model", [url], max_concurrency=c) as eng:
            list(eng.generate(requests(c, "warmup")))
            t0 = time.perf_counter()
            out = list(eng.generate(requests(n, "engine")))
            wall = time.perf_counter() - t0
            assert len(out) == n and all(cs[0].ok for _, cs in out)
            print(
                f"C={c:4d} L={latency:.3f}s N={n:5d}  engine alone      : {n / wall:8.1f} req/s "
                f"/ C/L {ideal:8.1f} = {n / wall / ideal:.3f}"
            )
            with tempfile.TemporaryDirectory() as d, ResponseStore(Path(d) / "s.sqlite") as store:
                gen = CachedGenerator(eng, store, progress=False)
                t0 = time.perf_counter()
                gen.run(requests(n, "cached"), stage="bench", prompt_version="v0")
                wall = time.perf_counter() - t0
                print(
                    f"{'':26s}  CachedGenerator   : {n / wall:8.1f} req/s / C/L {ideal:8.1f} = {n / wall / ideal:.3f}"
                )
                role = RoleConfig(
                    engine=EngineConfig(kind="http", model="fake-model", endpoints=[url], max_concurrency=c),
                    sampling=SamplingConfig(),
                )
                problems = [Problem(statement=f"Prove that statement {i} holds.", source="bench") for i in range(n)]
                stage = ProofGenerator("teacher", role, "distill", CachedGenerator(eng, store, progress=False), 1)
                t0 = time.perf_counter()
                works = [x for x in stage.run(Work(p) for p in problems) if isinstance(x, Work)]
                wall = time.perf_counter() - t0
                assert sum(len(w.proofs) for w in works) == n
                print(
                    f"{'':26s}  distill stage     : {n / wall:8.1f} req/s / C/L {ideal:8.1f} = {n / wall / ideal:.3f}"
                )
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--c", type=int, default=None, help="max_concurrency")
    p.add_argument("--latency", type=float, default=0.2)
    p.add_argument("--requests", type=int, default=None)
    a = p.parse_args()
    settings = (
        [(a.c, a.latency, a.requests or 10 * a.c)]
        if a.c
        else [(16, 0.2, 160), (64, 0.2, 640), (128, 0.5, 1280), (256, 1.0, 2560)]
    )
    for c, lat, n in settings:
        bench(c, lat, n)


if __name__ == "__main__":
    main()
