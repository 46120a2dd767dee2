"""Stage 1, SFT: TRL's ``SFTTrainer`` on FineProofs-SFT ``messages``.

* Data: the ``messages`` column (user = problem, assistant =
  ``<think>reasoning</think>`` + proof) of a build run directory (config ``all`` by
  default: every kept sample) or a Hub dataset.
* Loss on the assistant turn only (``assistant_only_loss``), through a training
  chat template with ``{% generation %}`` markers that renders exactly like the
  model's own (:mod:`fineproofs.train.templates`); the template is saved with the
  checkpoint, so inference sees the same text.
* Samples longer than ``max_length`` tokens are left out and counted (packing would
  cut them, losing the proof and its end token); the rest are packed (best-fit
  decreasing, padding-free) to ``max_length`` tokens.
* Resume: the last ``checkpoint-*`` in the output directory is picked up unless
  ``resume=False``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fineproofs.train.common import StepTimer, load_policy, pick_resume, save_final
from fineproofs.train.config import SFTRunConfig, build_trl_args, prepare_run
from fineproofs.train.data import drop_overlong, load_split, sft_dataset
from fineproofs.train.templates import training_chat_template

log = logging.getLogger(__name__)


def run_sft(
    cfg: SFTRunConfig,
    output_dir: str | Path,
    *,
    data: str | None = None,
    model: str | None = None,
    resume: bool | str = True,
    callbacks: list | None = None,
    check_hardware: bool = True,
    policy=None,
):
    """Train; ``policy`` = ``(model, tokenizer)`` already in memory replaces loading
    ``cfg.model`` (benchmarks on randomly initialised models of a given shape)."""
    from trl import SFTTrainer

    cfg, out = prepare_run(cfg, output_dir, model, check_hardware)
    args = build_trl_args("sft", cfg.trainer, out)  # validate before anything heavy is loaded
    ds = sft_dataset(load_split(cfg.data, "sft", data))
    policy, tok = policy or load_policy(cfg.model)
    if args.assistant_only_loss:
        tok.chat_template = training_chat_template(tok, cfg.model.chat_template)
    ds, overlong = drop_overlong(ds, tok, args.max_length)
    resume_from = pick_resume(out, resume)
    timer = StepTimer()
    trainer = SFTTrainer(
        model=policy, args=args, train_dataset=ds, processing_class=tok, callbacks=[timer, *(callbacks or [])]
    )
    start = 0
    if resume_from:
        from transformers import TrainerState

        start = TrainerState.load_from_json(str(Path(resume_from) / "trainer_state.json")).global_step
    trainer.train(resume_from_checkpoint=resume_from)
    return save_final(
        "sft", trainer, out, resume_from, timer, cfg.model_dump(), start, extra={"samples_dropped_overlong": overlong}
    )
