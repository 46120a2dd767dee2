"""The embedded engine on a busy machine: thread count and OpenMP wait policy.

Generates N requests x T tokens (greedy, so every mode produces the same tokens) with
the embedded SmolLM2 in a fresh subprocess per measurement, on a quiet machine and
with a competing busy process (a spinner pinned to one core), under:

* ``old``: the behaviour before fineproofs chose threads: torch imported first, so
  OpenMP starts with its default wait policy, and every core (``os.cpu_count()``);
* ``active``: every core and ``OMP_WAIT_POLICY=ACTIVE`` (threads spin while waiting);
* ``new``: fineproofs' default: threads = the cores available (affinity, cgroup quota),
  ``OMP_WAIT_POLICY=PASSIVE``, set when ``fineproofs.engines`` is imported.

All figures come from the same run, so the ratios compare like with like:

    python bench/bench_threads.py                  # 4 x 32 tokens, about 2-4 minutes on 2 cores
    python bench/bench_threads.py --n 8 --tokens 128 --timeout 900
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time

MODES = ("old", "active", "new")
PROMPT = "Write a long, detailed story about a mathematician who proves a theorem about prime numbers."


def _spin(core: int | None) -> None:
    if core is not None:
        try:
            os.sched_setaffinity(0, {core})
        except (AttributeError, OSError):
            pass
    while True:
        pass


def child(mode: str, n: int, tokens: int) -> dict:
    """One measurement, in this (fresh) process."""
    import logging

    if mode == "old":
        import torch

        logging.getLogger("fineproofs.engines.threads").setLevel(logging.ERROR)
    from fineproofs.config import EngineConfig
    from fineproofs.engines import GenerationRequest, SamplingParams, make_engine

    threads = None if mode == "new" else os.cpu_count()
    policy = "active" if mode == "active" else "passive"
    engine = make_engine(EngineConfig(threads=threads, omp_wait_policy=policy, batch_size=n))
    sp = SamplingParams(temperature=0.0, max_tokens=tokens)
    reqs = [GenerationRequest([{"role": "user", "content": f"{PROMPT} (#{i})"}], sampling=sp) for i in range(n)]
    list(engine.generate(reqs[:1]))  # warm-up (first-call allocations)
    t0 = time.perf_counter()
    out = dict(engine.generate(reqs))
    wall = time.perf_counter() - t0
    import torch

    return {
        "mode": mode,
        "wall_s": round(wall, 2),
        "tokens": sum(c[0].completion_tokens for c in out.values()),
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)"),
    }


def measure(mode: str, busy: bool, a: argparse.Namespace) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if mode == "active":
        env["OMP_WAIT_POLICY"] = "ACTIVE"
    env.setdefault("HF_HUB_OFFLINE", "1")
    spinner = None
    if busy:
        spinner = mp.get_context("spawn").Process(target=_spin, args=(a.busy_core,), daemon=True)
        spinner.start()
    cmd = [sys.executable, __file__, "--child", mode, "--n", str(a.n), "--tokens", str(a.tokens)]
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=a.timeout)
        if p.returncode != 0:
            return {"mode": mode, "error": p.stderr.strip().splitlines()[-1:] or ["failed"]}
        return json.loads(p.stdout.strip().splitlines()[-1])
    except subprocess.TimeoutExpired:
        return {"mode": mode, "wall_s": None, "timeout": a.timeout}
    finally:
        if spinner is not None:
            spinner.terminate()
            spinner.join()


def _fmt(r: dict) -> str:
    if r.get("wall_s") is None:
        return f"> {r.get('timeout')} s (timed out)" if "timeout" in r else f"error: {r.get('error')}"
    return f"{r['wall_s']:8.2f} s  ({r['tokens']} tokens, {r['threads']} threads, {r['omp_wait_policy']})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=4, help="requests (one batch)")
    ap.add_argument("--tokens", type=int, default=32, help="max new tokens per request")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--busy-core", type=int, default=0, help="core the competing spinner is pinned to (-1: any)")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per measurement")
    ap.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.n, a.tokens)))
        return
    a.busy_core = None if a.busy_core < 0 else a.busy_core
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    print(f"{a.n} x {a.tokens} tokens, {cores} cores available, os.cpu_count() = {os.cpu_count()}")
    res: dict[tuple[str, bool], dict] = {}
    for busy in (False, True):
        for mode in a.modes.split(","):
            res[mode, busy] = r = measure(mode, busy, a)
            print(f"  {'busy ' if busy else 'quiet'} {mode:<7}{_fmt(r)}", flush=True)
    print("ratios (wall time / new's, same condition):")
    for busy in (False, True):
        new = res.get(("new", busy), {}).get("wall_s")
        for mode in a.modes.split(","):
            wall = res[mode, busy].get("wall_s")
            if mode != "new" and new and wall:
                print(f"  {'busy ' if busy else 'quiet'} {mode}/new = {wall / new:.2f}")
            elif mode != "new" and new and "timeout" in res[mode, busy]:
                print(f"  {'busy ' if busy else 'quiet'} {mode}/new > {a.timeout / new:.1f} (timed out)")


if __name__ == "__main__":
    main()
