"""Stage 2, RL with rubric rewards: TRL's ``GRPOTrainer``.

* Prompt: fineproofs' ``rollout`` template, "Generate a rigorous proof to the
  following question:" + the problem (the FineProofs-RL ``problem`` column).
* Reward: :class:`fineproofs.train.reward.RubricReward` (judge grade / 7 on the text
  after the thinking block; unterminated = 0; judge failure = masked).
* :class:`FineproofsGRPOTrainer` is TRL's trainer plus one guarantee: a completion
  every reward function returned ``None`` for is removed from the loss (its
  completion mask is zeroed and the token normaliser recomputed). TRL 1.16 already
  excludes it from the group baseline (``nanmean``/``nanstd``) and zeroes its
  advantage; without the mask its tokens would still count in the loss
  normaliser (``loss_type`` dapo/bnpo/grpo) and in any KL term. The fraction masked
  is logged as ``judge/masked_frac``.
* Generation: ``trainer.use_vllm: true`` (paper config) uses TRL's vLLM
  integration (``vllm_mode: server`` against ``trl vllm-serve``, or ``colocate``);
  on CPU the policy generates with ``model.generate``.
* Resume: the last ``checkpoint-*`` in the output directory; judge replies come
  from the response store, so regrading costs nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from trl import GRPOTrainer

from fineproofs.engines import EnginePool
from fineproofs.train.common import StepTimer, finish, load_policy, pick_resume
from fineproofs.train.config import RLRunConfig, build_trl_args, prepare_run
from fineproofs.train.data import load_rows, rl_dataset
from fineproofs.train.reward import RubricReward

log = logging.getLogger(__name__)


class FineproofsGRPOTrainer(GRPOTrainer):
    """GRPO where a sample with no reward (judge failure) is masked out of the update."""

    _fp_unscorable: torch.Tensor | None = None

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        n = len(prompts)
        i = self.accelerator.process_index
        self._fp_unscorable = torch.isnan(rewards).all(dim=1)[i * n : (i + 1) * n].clone()
        return rewards

    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        mask = self._fp_unscorable
        self._fp_unscorable = None
        if mask is None:
            return out
        mask = mask.to(out["completion_mask"].device)
        mode = "train" if self.model.training else "eval"
        masked = self.accelerator.gather(mask.sum()).sum().item()
        total = self.accelerator.gather(torch.tensor(mask.numel(), device=mask.device)).sum().item()
        self._metrics[mode]["judge/masked_frac"].append(masked / max(total, 1))
        if mask.any():
            keep = (~mask).to(out["completion_mask"].dtype).unsqueeze(1)
            out["completion_mask"] = out["completion_mask"] * keep
            loss_mask = out["completion_mask"]
            if "tool_mask" in out:
                out["tool_mask"] = out["tool_mask"] * keep
                loss_mask = loss_mask * out["tool_mask"]
            out["num_items_in_batch"] = self.accelerator.gather(loss_mask.sum()).sum()
            # TRL zeroed these advantages already (NaN reward); keep that explicit
            out["advantages"] = out["advantages"].masked_fill(mask, 0.0)
        return out


def build_reward(cfg: RLRunConfig, out: Path, pool: EnginePool, policy_label: str, engine=None) -> RubricReward:
    engine = engine or pool.get(cfg.judge.engine)
    return RubricReward(
        cfg.judge,
        cfg.grading,
        out / "judge_store.sqlite",
        require_eos=cfg.reward.require_eos,
        engine=engine,
        policy_label=policy_label,
    )


def run_grpo(
    cfg: RLRunConfig,
    output_dir: str | Path,
    *,
    stage: str = "rl",
    data: str | None = None,
    model: str | None = None,
    resume: bool | str = True,
    callbacks: list | None = None,
    check_hardware: bool = True,
    rollout_builder=None,
    pool: EnginePool | None = None,
    judge_engine=None,
):
    """Shared by ``rl`` and ``rc`` (``rollout_builder(cfg, dataset, tokenizer, pool, out)`` ->
    (dataset, rollout_func)). ``judge_engine`` replaces the engine built from ``cfg.judge``."""
    cfg, out = prepare_run(cfg, output_dir, model, check_hardware)
    args = build_trl_args("rl", cfg.trainer, out)
    ds = rl_dataset(load_rows(cfg.data, stage, data))
    own_pool = pool is None
    pool = pool or EnginePool()
    try:
        policy, tok = load_policy(cfg.model, padding_side="left")
        reward = build_reward(cfg, out, pool, cfg.model.name, judge_engine)
        rollout_func = None
        if rollout_builder is not None:
            ds, rollout_func = rollout_builder(cfg, ds, tok, pool, out)
        resume_from = pick_resume(out, resume)
        timer = StepTimer()
        trainer = FineproofsGRPOTrainer(
            model=policy,
            reward_funcs=[reward],
            args=args,
            train_dataset=ds,
            processing_class=tok,
            callbacks=[timer, *(callbacks or [])],
            rollout_func=rollout_func,
        )
        reward.eos_token_ids = set(trainer.eos_token_ids) | {tok.pad_token_id}
        start = 0
        if resume_from:
            from transformers import TrainerState

            start = TrainerState.load_from_json(str(Path(resume_from) / "trainer_state.json")).global_step
        trainer.train(resume_from_checkpoint=resume_from)
        extra = {"judge": dict(reward.totals)}
        if rollout_func is not None and hasattr(rollout_func, "figures"):
            extra["rc"] = rollout_func.figures()
        return finish(stage, trainer, out, resume_from, timer, cfg.model_dump(), start, extra=extra)
    finally:
        if own_pool:
            pool.close()


def run_rl(cfg: RLRunConfig, output_dir: str | Path, **kw):
    return run_grpo(cfg, output_dir, stage="rl", **kw)
