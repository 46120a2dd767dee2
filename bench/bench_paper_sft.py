"""Paper-shape SFT on one GPU: tokens/s, MFU and peak memory of the `sft` stage with the
`paper` config on a Qwen3-4B-shaped policy (random weights, nothing downloaded) and
synthetic FineProofs-SFT rows packed to 16,384 and 49,152 tokens.

    python bench/bench_paper_sft.py [--seq 16384 49152] [--steps 4] [--attn ...] [--set KEY=VALUE ...]

Everything the stage does runs for real (the paper config's BFD packing, assistant-only
loss, activation checkpointing, bf16, its attention preference list and Liger switch as
resolved on this machine); only the model's weights are random and the proofs synthetic,
so the figures are the real recipe's speed. Prints one ``FIGURES {json}`` line per packed
length: steady tokens/s per GPU (steps 2..N, so the first step's compilation is left
out), MFU by 6N and counting causal attention over the mean document length, peak
allocated memory. ``--size tiny`` runs a 2-layer model of the same family (on CPU too) to
check the script; without a CUDA GPU the 4B size prints ``SKIP`` and exits 0.
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
# the tiny model and the synthetic run are test support (tests/tinykit.py), not part of the wheel
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

QWEN3_4B = dict(
    vocab_size=151936,
    hidden_size=2560,
    intermediate_size=9728,
    num_hidden_layers=36,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=128,
)
TINY = dict(
    vocab_size=1024,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
)


def synthetic_run(out: Path, tok, seq: int, samples: int, seed: int = 0) -> tuple[Path, float]:
    """A build-shaped run directory of SFT rows about a quarter of ``seq`` tokens each;
    returns it with the mean document length in tokens."""
    import datasets
    from tinykit import CORPUS

    from fineproofs.records import SFT_FEATURES, Message, SFTRow, to_row

    rng = random.Random(seed)
    lens = {s: len(tok(s).input_ids) + 1 for s in CORPUS}
    rows, doc_tokens = [], []
    for _ in range(samples):
        target = int(seq / 4 * rng.uniform(0.6, 0.95))
        parts, n = [], 0
        while n < target:
            s = rng.choice(CORPUS)
            parts.append(s)
            n += lens[s]
        half = len(parts) // 2
        thinking, proof = "\n".join(parts[:half]), "\n".join(parts[half:])
        problem = rng.choice(CORPUS)
        msgs = [
            Message(role="user", content=problem),
            Message(role="assistant", content=f"<think>\n{thinking}\n</think>\n\n{proof}"),
        ]
        rows.append(to_row(SFTRow(problem, thinking, proof, "Algebra", "synthetic", 7, 0.5, "synthetic", msgs)))
        doc_tokens.append(n + lens[problem])
    path = out / "data" / "all" / "train-00000-of-00001.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_list(rows, features=SFT_FEATURES).to_parquet(str(path))
    return out, sum(doc_tokens) / len(doc_tokens)


def run_one(seq: int, steps: int, size: str, attn, sets: list[str], work: Path) -> dict:
    import torch
    from tinykit import make_tiny_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen3Config, TrainerCallback

    from fineproofs.train.common import load_with_attention
    from fineproofs.train.config import load_stage_config
    from fineproofs.train.fastpath import check_fast_paths
    from fineproofs.train.flops import count_params, flops_per_token, mfu, peak_flops
    from fineproofs.train.sft import run_sft

    cuda = torch.cuda.is_available()
    tok = AutoTokenizer.from_pretrained(make_tiny_model(work / "tok", vocab_size=512))
    overrides = [f"trainer.max_length={seq}", f"trainer.max_steps={steps}", "trainer.save_steps=100000"]
    overrides += ["trainer.logging_steps=1", "trainer.dataloader_num_workers=0"]
    if attn:
        overrides.append(f"model.attn_implementation=[{', '.join(attn)}]")
    if not cuda:
        overrides.append("trainer.bf16=false")
    cfg = load_stage_config("sft", "paper", overrides + list(sets))
    shape = QWEN3_4B if size == "4b" else TINY
    mcfg = Qwen3Config(
        **shape,
        tie_word_embeddings=True,
        max_position_embeddings=262144,
        rope_theta=5e6,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    fast = check_fast_paths(cfg.model.attn_implementation, cfg.trainer)
    t0 = time.perf_counter()
    with torch.device("cuda" if cuda else "cpu"):
        model = load_with_attention(
            lambda **k: AutoModelForCausalLM.from_config(mcfg, dtype=torch.bfloat16 if cuda else torch.float32, **k),
            cfg.model,
        )
    attention = model.config._attn_implementation
    n_params = count_params(model)
    per_step = cfg.trainer.get("gradient_accumulation_steps", 1) * cfg.trainer.get("per_device_train_batch_size", 1)
    samples = int((steps + 1) * per_step * 4 * 1.3) + 8
    run, doc_len = synthetic_run(work / f"run-{seq}", tok, seq, samples)
    print(
        f"policy {n_params / 1e9:.3f} B params ({size}), attention {attention}, liger {fast.liger}, "
        f"packing {seq}, mean document {doc_len:.0f} tokens, built in {time.perf_counter() - t0:.1f} s",
        flush=True,
    )

    class Steady(TrainerCallback):
        def __init__(self):
            self.points: list[tuple[float, float]] = []

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "num_tokens" in logs:
                self.points.append((time.perf_counter(), float(logs["num_tokens"])))

    steady = Steady()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    res = run_sft(
        cfg,
        work / f"sft-{seq}",
        data=str(run),
        resume=False,
        check_hardware=False,
        callbacks=[steady],
        policy=(model, tok),
    )
    wall = time.perf_counter() - t0
    pts = steady.points
    tps = (pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0]) if len(pts) >= 3 else res.tokens_per_s
    peak = peak_flops(torch.cuda.get_device_name(0)) if cuda else None
    fig = dict(
        gpu=torch.cuda.get_device_name(0) if cuda else "cpu",
        params_b=round(n_params / 1e9, 3),
        seq=seq,
        attention=attention,
        liger=fast.liger,
        steps=res.steps_this_run,
        s_per_step=round(res.seconds_per_step, 2),
        tokens_per_s_per_gpu=round(tps, 1),
        mfu_6n=_round(mfu(tps, flops_per_token(mcfg, n_params, doc_len, attention=False), peak)),
        mfu_with_attention=_round(mfu(tps, flops_per_token(mcfg, n_params, doc_len), peak)),
        mean_doc_tokens=round(doc_len),
        peak_gib=round(torch.cuda.max_memory_allocated() / 2**30, 1) if cuda else None,
        wall_s=round(wall, 1),
    )
    print("FIGURES " + json.dumps(fig), flush=True)
    del model
    if cuda:
        torch.cuda.empty_cache()
    return fig


def _round(x):
    return None if x is None else round(x, 3)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq", type=int, nargs="+", default=[16384, 49152])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--size", choices=["4b", "tiny"], default="4b")
    ap.add_argument("--attn", nargs="+", default=None, help="attention preference list (default: the config's)")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    import torch  # a fineproofs dependency

    if args.size == "4b" and not torch.cuda.is_available():
        print("SKIP: no CUDA GPU visible (the 4B policy needs one; --size tiny checks the script on CPU)")
        return 0
    work = Path(args.out or tempfile.mkdtemp(prefix="fineproofs-paper-sft-"))
    figs = [run_one(seq, args.steps, args.size, args.attn, args.sets, work) for seq in args.seq]
    print(f"\n{'seq':>6} {'attention':>16} {'tok/s/GPU':>10} {'MFU 6N':>7} {'MFU+attn':>8} {'peak GiB':>8}")
    for f in figs:
        print(
            f"{f['seq']:>6} {f['attention']:>16} {f['tokens_per_s_per_gpu']:>10.0f} "
            f"{f['mfu_6n'] or 0:>7.3f} {f['mfu_with_attention'] or 0:>8.3f} {f['peak_gib'] or 0:>8}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
