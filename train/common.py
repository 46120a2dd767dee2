"""What every stage runner shares: model loading, resume, timing, the run record."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

log = logging.getLogger(__name__)

RUN_RECORD = "fineproofs_train.json"


@dataclass
class TrainResult:
    stage: str
    output_dir: str
    final_dir: str
    global_step: int
    resumed_from: str | None
    steps_this_run: int
    seconds_per_step: float
    tokens_this_run: int
    tokens_per_s: float
    metrics: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        res = f", resumed from {self.resumed_from}" if self.resumed_from else ""
        return (
            f"{self.stage}: step {self.global_step} ({self.steps_this_run} this run{res}), "
            f"{self.seconds_per_step:.2f} s/step, {self.tokens_per_s:.0f} tokens/s; model saved to {self.final_dir}"
        )


class StepTimer(TrainerCallback):
    """Wall time of each optimizer step (generation + scoring + update for GRPO)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._t0 = 0.0

    def on_step_begin(self, args, state, control, **kw):
        self._t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        self.times.append(time.perf_counter() - self._t0)


def resolve_dtype(name: str):
    import torch

    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    return getattr(torch, name)


def load_policy(spec, padding_side: str = "right"):
    """(model, tokenizer) for a :class:`~fineproofs.train.config.ModelSpec`."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from fineproofs.models import resolve_model

    path = resolve_model(spec.name)
    kw = {"revision": spec.revision} if spec.revision else {}
    tok = AutoTokenizer.from_pretrained(path, **kw)
    tok.padding_side = padding_side
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    mkw = dict(kw, dtype=resolve_dtype(spec.dtype))
    config = AutoConfig.from_pretrained(path, **kw)
    qc = getattr(config, "quantization_config", None)
    method = qc.get("quant_method") if isinstance(qc, dict) else getattr(qc, "quant_method", None)
    if method == "gguf":
        # a plain-weights copy converted from GGUF (the embedded model) still names its GGUF
        # origin; the weights are dense, so it trains as a normal model
        delattr(config, "quantization_config")
        mkw["config"] = config
    return load_with_attention(lambda **k: AutoModelForCausalLM.from_pretrained(path, **mkw, **k), spec), tok


def load_with_attention(load, spec):
    """``load(attn_implementation=...)`` with the first attention of ``spec`` this machine
    runs; one that fails at load time (a flash-attn built for another torch, a Hub kernel
    that cannot be fetched) is logged with the reason and the next one is tried, ending
    with sdpa. Never a crash for want of a fast path."""
    from fineproofs.train.fastpath import attention_missing, check_fast_paths

    rep = check_fast_paths(spec.attn_implementation, {}, warn=True)
    if rep.attention is None:
        return load()
    # the runnable ones in order of preference (the first is rep.attention), then sdpa
    order = list(dict.fromkeys([a for a in rep.attention_wanted if attention_missing(a) is None] + ["sdpa"]))
    if "sdpa_packed" in order:
        from fineproofs.train.packed_attention import register

        register()
    for name, then in zip(order, order[1:]):
        try:
            model = load(attn_implementation=name)
        except (ImportError, ValueError, OSError, RuntimeError) as e:
            log.warning("attention %s failed to load (%s); trying %s", name, str(e).splitlines()[0], then)
            continue
        log.info("attention: %s", name)
        return model
    log.info("attention: %s", order[-1])
    return load(attn_implementation=order[-1])


def last_checkpoint(output_dir: str | Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    p = Path(output_dir)
    if not p.is_dir():
        return None
    return get_last_checkpoint(str(p))


def pick_resume(output_dir: str | Path, resume: bool | str) -> str | None:
    """``True``: the last checkpoint in ``output_dir`` if any; ``False``: none; a path: that one."""
    if resume is False:
        return None
    if isinstance(resume, str) and resume not in ("auto", "true", "True"):
        if not Path(resume).is_dir():
            from fineproofs.config import ConfigError

            raise ConfigError(f"--resume {resume}: no such checkpoint directory")
        return resume
    ckpt = last_checkpoint(output_dir)
    if ckpt:
        log.info("resuming from %s", ckpt)
    return ckpt


def save_final(
    stage: str,
    trainer,
    output_dir: Path,
    resumed_from: str | None,
    timer: StepTimer,
    cfg_dump: dict,
    start_step: int,
    tokens: int | None = None,
    extra: dict | None = None,
) -> TrainResult:
    """Save the final model + tokenizer and the run record; return the figures."""
    final = output_dir / "final"
    trainer.save_model(str(final))
    proc = getattr(trainer, "processing_class", None)
    if proc is not None:
        proc.save_pretrained(str(final))
    steps = trainer.state.global_step - start_step
    wall = sum(timer.times)
    if tokens is None:
        tokens = int(getattr(trainer, "_total_train_tokens", 0) or trainer.state.num_input_tokens_seen or 0)
    res = TrainResult(
        stage=stage,
        output_dir=str(output_dir),
        final_dir=str(final),
        global_step=trainer.state.global_step,
        resumed_from=resumed_from,
        steps_this_run=steps,
        seconds_per_step=wall / max(len(timer.times), 1),
        tokens_this_run=int(tokens),
        tokens_per_s=float(tokens) / wall if wall > 0 else 0.0,
        metrics=dict(extra or {}),
    )
    record = {"result": asdict(res), "config": cfg_dump, "log_history": trainer.state.log_history[-20:]}
    (output_dir / RUN_RECORD).write_text(json.dumps(record, indent=2, default=str))
    return res
