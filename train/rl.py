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
* Update (``update.loss: release``, the paper configs): :func:`release_policy_loss`,
  QED-Nano's objective as its PipelineRL trainer computes it
  (``training/pipelinerl/finetune/rl/__init__.py``, ``rl_step``): for every completion
  token, ratio r = exp(logp - logp_actor) against the logprob the *generating* weights
  gave the token (vLLM's sampling logprobs; the trainer's own pass at generation time on
  CPU), objective min(r A, clip(r, 1 - eps, 1 + eps) A) + c H (A = reward - group mean,
  H the token's entropy at the sampling temperature, c = ``trainer.entropy_coef``),
  summed over the tokens of the step and divided by the number of sequences of the
  optimizer step; no KL. TRL's own loss types cannot weight the entropy bonus that way
  (TRL adds the *mean* token entropy) and take the ratio against the trainer's
  recomputed logprobs, so :class:`FineproofsGRPOTrainer` computes this loss itself
  (``_compute_loss``, the method TRL's ``compute_loss`` calls; :func:`check_trl` pins the
  TRL range whose batch layout it reads). ``update.loss: trl`` leaves TRL's loss alone.
* Stale rollouts (``update.generation_lag``): one generation feeds ``lag + 1`` optimizer
  steps (TRL's ``steps_per_generation``), so later steps learn from rollouts of older
  weights and the ratio's clip can act, as with the release's asynchronous actors.
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
from fineproofs.errors import ConfigError
from fineproofs.train.common import StepTimer, load_policy, pick_resume, save_final
from fineproofs.train.config import RLRunConfig, UpdateSpec, build_trl_args, prepare_run
from fineproofs.train.data import load_split, rl_dataset
from fineproofs.train.reward import RubricReward

log = logging.getLogger(__name__)


def release_policy_loss(
    logps: torch.Tensor,
    actor_logps: torch.Tensor,
    advantages: torch.Tensor,
    entropies: torch.Tensor,
    mask: torch.Tensor,
    *,
    eps_low: float,
    eps_high: float,
    entropy_coef: float,
    sequences_per_step: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The release's policy loss on one micro-batch (B sequences x T completion tokens).

    ``logps``: the trainer's logprobs of the completion tokens (with grad); ``actor_logps``:
    those of the weights that generated them; ``advantages``: (B,) reward - group mean;
    ``entropies``: the trainer's per-token entropies (with grad); ``mask``: 1 on the tokens
    that count. Returns ``-sum_tokens[min(r A, clip(r) A) + c H] / sequences_per_step`` and
    per-token statistics (ratio, where the clip changed the objective)."""
    mask = mask.to(logps.dtype)
    adv = advantages.to(logps.dtype).unsqueeze(1)
    ratio = torch.exp(logps - actor_logps)
    clipped = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high)
    surrogate = torch.minimum(ratio * adv, clipped * adv)
    objective = surrogate + entropy_coef * entropies
    loss = -(objective * mask).sum() / sequences_per_step
    clip_acted = (clipped * adv < ratio * adv) & mask.bool()
    return loss, {"ratio": ratio.detach(), "clip_acted": clip_acted}


# TRL versions whose GRPO batch layout the release loss reads (prompt/completion ids and
# masks, advantages, old/sampling logprobs) and whose _get_per_token_logps_and_entropies
# it calls; keep in step with pyproject.toml (trl>=1.15,<1.17)
TRL_TESTED = ("1.15", "1.17")
_LOGPS_PARAMS = ["model", "input_ids", "attention_mask", "logits_to_keep", "batch_size", "compute_entropy"]


def check_trl() -> None:
    """Refuse, with one clear line, a TRL outside the range the release loss is tested on."""
    import inspect

    import trl
    from packaging.version import Version

    lo, hi = TRL_TESTED
    fn = getattr(GRPOTrainer, "_get_per_token_logps_and_entropies", None)
    params = list(inspect.signature(fn).parameters)[1:7] if fn else []
    hooks = all(callable(getattr(GRPOTrainer, n, None)) for n in ("_compute_loss", "_generate_and_score_completions"))
    if not Version(lo) <= Version(trl.__version__) < Version(hi) or params != _LOGPS_PARAMS or not hooks:
        raise ConfigError(
            f"update.loss=release is tested with trl>={lo},<{hi} (installed: {trl.__version__}): "
            f"pip install 'trl>={lo},<{hi}', or set update.loss=trl"
        )


class FineproofsGRPOTrainer(GRPOTrainer):
    """GRPO where a sample with no reward (judge failure) is masked out of the update, and
    (``update.loss: release``) the loss is the release's (:func:`release_policy_loss`)."""

    _fp_unscorable: torch.Tensor | None = None

    def __init__(self, *args, update: UpdateSpec | None = None, **kwargs):
        self.fp_update = update or UpdateSpec()
        if self.fp_update.loss == "release":
            check_trl()
        super().__init__(*args, **kwargs)

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        n = len(prompts)
        i = self.accelerator.process_index
        self._fp_unscorable = torch.isnan(rewards).all(dim=1)[i * n : (i + 1) * n].clone()
        return rewards

    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        if self.fp_update.loss == "release":
            # the actor's logprobs: what the generating backend reported (vLLM, a rollout_func),
            # else the trainer's own pass over the rollouts at generation time (TRL computes it
            # when the rollouts will be used after an update); absent both, they are the
            # current weights' (synchronous generation: ratio 1)
            actor = out.get("sampling_per_token_logps")
            old = out.get("old_per_token_logps")
            if actor is None:
                actor = old
            elif old is not None:
                actor = torch.where(torch.isnan(actor), old, actor)
            if actor is not None:
                out["fp_actor_logps"] = actor
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

    def _compute_loss(self, model, inputs):
        if self.fp_update.loss != "release":
            return super()._compute_loss(model, inputs)
        return self._release_loss(model, inputs)

    def _release_loss(self, model, inputs):
        """:func:`release_policy_loss` on one micro-batch, scaled so that the micro-batches of
        an optimizer step (``gradient_accumulation_steps`` per process, averaged over
        processes by data parallelism) add up to the sum over the step's tokens divided by
        the step's sequences."""
        prompt_ids, prompt_mask = inputs["prompt_ids"], inputs["prompt_mask"]
        completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]
        mask = completion_mask if "tool_mask" not in inputs else completion_mask * inputs["tool_mask"]
        logps, entropies, _ = self._get_per_token_logps_and_entropies(
            model,
            torch.cat([prompt_ids, completion_ids], dim=1),
            torch.cat([prompt_mask, completion_mask], dim=1),
            completion_ids.size(1),
            compute_entropy=True,
        )
        actor = inputs.get("fp_actor_logps")
        actor = logps.detach() if actor is None else torch.where(torch.isnan(actor), logps.detach(), actor)
        mode = "train" if self.model.training else "eval"
        accumulation = self.current_gradient_accumulation_steps if mode == "train" else 1
        advantages = inputs["advantages"]
        if advantages.dim() == 2:
            advantages = advantages.squeeze(1)
        loss, st = release_policy_loss(
            logps,
            actor,
            advantages,
            entropies,
            mask,
            eps_low=self.epsilon_low,
            eps_high=self.epsilon_high,
            entropy_coef=self.args.entropy_coef,
            sequences_per_step=completion_ids.size(0) * accumulation,
        )
        m = mask.bool()
        n = self.accelerator.reduce(m.sum().float(), reduction="sum").clamp(min=1.0)

        def mean_over_tokens(x):
            return (self.accelerator.reduce((x.float() * m).sum(), reduction="sum") / n).item()

        self._metrics[mode]["entropy"].append(mean_over_tokens(entropies.detach()))
        self._metrics[mode]["clip_ratio/region_mean"].append(mean_over_tokens(st["clip_acted"]))
        self._metrics[mode]["ratio/mean"].append(mean_over_tokens(st["ratio"]))
        self._metrics[mode]["policy_loss"].append(self.accelerator.gather(loss.detach()).mean().item())
        return loss


def build_reward(cfg: RLRunConfig, out: Path, pool: EnginePool, policy_label: str, engine=None) -> RubricReward:
    engine = engine or pool.get(cfg.judge.engine)
    return RubricReward(
        cfg.judge,
        cfg.grading,
        out / "judge_store.sqlite",
        require_eos=cfg.reward.require_eos,
        engine=engine,
        policy_label=policy_label,
        prompt_files=cfg.prompts,
    )


def grpo_args(cfg: RLRunConfig, out: Path):
    """TRL's ``GRPOConfig`` for a run: the ``trainer:`` mapping, plus
    ``steps_per_generation = (update.generation_lag + 1) x gradient_accumulation_steps``
    when the config asks for stale rollouts."""
    extra = {}
    lag = cfg.update.generation_lag
    if lag:
        extra["steps_per_generation"] = (lag + 1) * int(cfg.trainer.get("gradient_accumulation_steps", 1))
    return build_trl_args("rl", cfg.trainer, out, **extra)


def make_trainer(
    cfg: RLRunConfig, policy, tok, ds, reward, args, *, rollout_func=None, callbacks=None
) -> FineproofsGRPOTrainer:
    """The trainer ``fineproofs train rl`` and ``train rc`` run (``rc``: with its rollout_func)."""
    trainer = FineproofsGRPOTrainer(
        model=policy,
        reward_funcs=[reward],
        args=args,
        train_dataset=ds,
        processing_class=tok,
        callbacks=callbacks,
        rollout_func=rollout_func,
        update=cfg.update,
    )
    if hasattr(reward, "eos_token_ids"):
        reward.eos_token_ids = set(trainer.eos_token_ids) | {tok.pad_token_id}
    return trainer


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
    args = grpo_args(cfg, out)
    ds = rl_dataset(load_split(cfg.data, stage, data))
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
        trainer = make_trainer(
            cfg, policy, tok, ds, reward, args, rollout_func=rollout_func, callbacks=[timer, *(callbacks or [])]
        )
        start = 0
        if resume_from:
            from transformers import TrainerState

            start = TrainerState.load_from_json(str(Path(resume_from) / "trainer_state.json")).global_step
        trainer.train(resume_from_checkpoint=resume_from)
        from fineproofs.train.fidelity import run_differences

        extra = {"judge": dict(reward.totals), "fidelity": run_differences(stage, cfg)}
        if rollout_func is not None and hasattr(rollout_func, "figures"):
            extra["rc"] = rollout_func.figures()
        return save_final(stage, trainer, out, resume_from, timer, cfg.model_dump(), start, extra=extra)
    finally:
        if own_pool:
            pool.close()


def run_rl(cfg: RLRunConfig, output_dir: str | Path, **kw):
    return run_grpo(cfg, output_dir, stage="rl", **kw)
