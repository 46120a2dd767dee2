"""The RL/RC update is the release's, proven on CPU.

``reference_step_loss`` below is this project's own plain-torch reading of QED-Nano's
policy loss (CMU-AIRe/QED-Nano ``training/pipelinerl/finetune/rl/__init__.py``: ``rl_step``
with ``policy_loss: ppo``, and ``populate_rl_data`` for the advantages; the paper configs'
settings ``divide_advantage_by_std: false``, ``epsilon: 4``, ``kl_coef: 0``,
``entropy_bonus: 1e-4``, ``group_normalization: false``, ``overlong_filtering: false``):

* advantage = reward - mean reward of the rollout's group (no division by the std);
* per completion token: ratio r = exp(logp - logp_actor) against the logprob the token
  had under the weights that generated it (the actor), clipped at 1 +/- eps;
* objective per token: min(r A, clip(r) A) + c H, with H the token's entropy, logprobs
  and entropies both taken from the logits divided by the sampling temperature;
* every token weighs 1 / (sequences of the optimizer step): loss = -sum / N; no KL.

The fineproofs RL and RC trainers (``update.loss: release``) must give the same loss and
the same gradient (1e-5) on random batches, including batches whose actor logprobs
differ from the trainer's so that the clip acts, and in real runs where generation runs
one optimizer step ahead (``update.generation_lag: 1``) and the ratio is not 1.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from fineproofs.train.config import load_stage_config

TOL = 1e-5


# ---------------------------------------------------------------------------
# the reference
# ---------------------------------------------------------------------------


def group_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """reward - mean of its group (consecutive groups of ``group_size``), no std scaling."""
    g = rewards.view(-1, group_size)
    return (g - g.mean(dim=1, keepdim=True)).view(-1)


def token_logps_and_entropy(model, batch, temperature: float):
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    att = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    p, t = batch["prompt_ids"].size(1), batch["completion_ids"].size(1)
    logits = model(input_ids=ids, attention_mask=att).logits[:, p - 1 : p - 1 + t].float() / temperature
    logprobs = torch.log_softmax(logits, dim=-1)
    token_logps = logprobs.gather(2, batch["completion_ids"].unsqueeze(2)).squeeze(2)
    entropy = -(logprobs.exp() * logprobs).sum(dim=-1)
    return token_logps, entropy


def reference_step_loss(model, micro_batches, *, temperature: float, eps: float, entropy_coef: float):
    """The release's loss over one optimizer step (a list of micro-batches); returns the
    loss and how many tokens the clip changed the objective of."""
    n_seq = sum(b["completion_ids"].size(0) for b in micro_batches)
    total, clipped_tokens = 0.0, 0
    for b in micro_batches:
        logp, ent = token_logps_and_entropy(model, b, temperature)
        actor = b.get("actor_logps")
        actor = logp.detach() if actor is None else actor
        ratio = torch.exp(logp - actor)
        clipped = torch.clamp(ratio, 1 - eps, 1 + eps)
        adv = b["advantages"].unsqueeze(1)
        per_token = torch.min(ratio * adv, clipped * adv) + entropy_coef * ent
        weights = b["completion_mask"].float() / n_seq  # each token weighs 1 / N
        total = total - (per_token * weights).sum()
        clipped_tokens += int(((clipped * adv < ratio * adv) & b["completion_mask"].bool()).sum())
    return total, clipped_tokens


# ---------------------------------------------------------------------------
# random batches and the trainers
# ---------------------------------------------------------------------------


def random_micro_batches(vocab: int, n_micro: int, b: int, group: int, *, seed: int, stale: float = 0.0):
    """``n_micro`` micro-batches of ``b`` rows: random prompts and completions (ragged
    completion masks), rewards in sevenths, advantages by the release's rule, and (when
    ``stale``) actor logprobs set apart from the trainer's by up to +/- ``stale`` nats."""
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randint(0, 8, (n_micro * b,), generator=g).float() / 7
    adv = group_advantages(rewards, group)
    out = []
    for i in range(n_micro):
        p_len, c_len = 5, 7
        cmask = torch.ones(b, c_len, dtype=torch.long)
        for r in range(b):
            cmask[r, int(torch.randint(2, c_len + 1, (1,), generator=g)) :] = 0
        batch = {
            "prompt_ids": torch.randint(3, vocab, (b, p_len), generator=g),
            "prompt_mask": torch.ones(b, p_len, dtype=torch.long),
            "completion_ids": torch.randint(3, vocab, (b, c_len), generator=g),
            "completion_mask": cmask,
            "advantages": adv[i * b : (i + 1) * b].clone(),
        }
        if stale:
            batch["shift"] = (torch.rand(b, c_len, generator=g) * 2 - 1) * stale
        out.append(batch)
    return out


def _trainer(stage: str, tiny, tmp_path, run_dir, *extra):
    """The trainer ``fineproofs train rl|rc`` builds (``rc``: with its rollout_func), from the
    embedded config with the paper's objective settings."""
    from fineproofs.engines import EnginePool
    from fineproofs.train.common import load_policy
    from fineproofs.train.data import load_split, rl_dataset
    from fineproofs.train.rc import rc_rollout_builder
    from fineproofs.train.rl import grpo_args, make_trainer

    overrides = [
        f"model.name={tiny}",
        "trainer.epsilon=4.0",
        "trainer.entropy_coef=1.0e-4",
        "trainer.scale_rewards=none",
        "trainer.loss_type=dr_grpo",
        "trainer.gradient_accumulation_steps=2",
        "trainer.max_completion_length=7",
        *extra,
    ]
    if stage == "rc":
        overrides += [f"rc.summarizer.engine.model={tiny}"]
    cfg = load_stage_config(stage, "embedded", overrides)
    assert cfg.update.loss == "release"
    pool = EnginePool()
    policy, tok = load_policy(cfg.model, padding_side="left")
    ds = rl_dataset(load_split(cfg.data, stage, str(run_dir / "rl")))
    rollout = None
    if stage == "rc":
        ds, rollout = rc_rollout_builder(cfg, ds, tok, pool, tmp_path)
    trainer = make_trainer(
        cfg, policy, tok, ds, lambda completions, **kw: [0.0] * len(completions), grpo_args(cfg, tmp_path),
        rollout_func=rollout,
    )  # fmt: skip
    return trainer, cfg, pool


@pytest.mark.parametrize("stage", ["rl", "rc"])
@pytest.mark.parametrize("stale", [0.0, 2.5], ids=["on-policy", "stale-actor"])
def test_loss_and_gradient_equal_the_release_reference(stage, stale, tiny, run_dir, tmp_path):
    trainer, cfg, pool = _trainer(stage, tiny, tmp_path, run_dir)
    try:
        model = trainer.model
        model.train()
        ga = cfg.trainer["gradient_accumulation_steps"]
        trainer.current_gradient_accumulation_steps = ga
        batches = random_micro_batches(model.config.vocab_size, ga, 4, 4, seed=7 + int(stale), stale=stale)
        temp, eps, coef = cfg.trainer["temperature"], cfg.trainer["epsilon"], cfg.trainer["entropy_coef"]
        if stale:  # actor logprobs = the trainer's own, moved by a random shift: ratios up to e^2.5
            with torch.no_grad():
                for b in batches:
                    b["actor_logps"] = token_logps_and_entropy(model, b, temp)[0] + b.pop("shift")
        # the reference: one optimizer step over all micro-batches
        model.zero_grad()
        ref_loss, clipped = reference_step_loss(model, batches, temperature=temp, eps=eps, entropy_coef=coef)
        ref_loss.backward()
        ref_grads = [p.grad.clone() for p in model.parameters()]
        # fineproofs: the trainer's loss, micro-batch by micro-batch, gradients accumulated
        model.zero_grad()
        total = 0.0
        for b in batches:
            inputs = {k: v for k, v in b.items() if k != "actor_logps"}
            if "actor_logps" in b:
                inputs["fp_actor_logps"] = b["actor_logps"]
            loss = trainer.compute_loss(model, inputs)
            loss.backward()
            total += loss.item()
        assert total == pytest.approx(ref_loss.item(), abs=TOL)
        for p, ref in zip(model.parameters(), ref_grads):
            torch.testing.assert_close(p.grad, ref, atol=TOL, rtol=1e-4)
        assert any(r.abs().max() > 0 for r in ref_grads)
        if stale:
            assert clipped > 0, "the clip must act on this batch"
            # the clip matters: without it (eps huge) the gradient is different
            model.zero_grad()
            unclipped, _ = reference_step_loss(model, batches, temperature=temp, eps=1e9, entropy_coef=coef)
            unclipped.backward()
            assert any(not torch.allclose(p.grad, r, atol=TOL) for p, r in zip(model.parameters(), ref_grads))
        else:
            assert clipped == 0
    finally:
        pool.close()


def test_entropy_bonus_weighs_as_the_release(tiny, run_dir, tmp_path):
    """The entropy bonus is summed over tokens and divided by the step's sequences, like the
    policy term: its weight does not depend on completion length or max_completion_length."""
    trainer, cfg, pool = _trainer("rl", tiny, tmp_path, run_dir, "trainer.entropy_coef=1.0")
    try:
        model = trainer.model
        trainer.current_gradient_accumulation_steps = 1
        (b,) = random_micro_batches(model.config.vocab_size, 1, 4, 4, seed=3)
        b["advantages"] = torch.zeros(4)  # only the entropy term is left
        with torch.no_grad():
            _, ent = token_logps_and_entropy(model, b, cfg.trainer["temperature"])
            want = -(ent * b["completion_mask"]).sum() / 4
            got = trainer.compute_loss(model, b)
        assert got.item() == pytest.approx(want.item(), abs=TOL)
        # TRL's own bonus would be the mean token entropy, here a different number
        mean_entropy = (ent * b["completion_mask"]).sum() / b["completion_mask"].sum()
        assert abs(got.item() + mean_entropy.item()) > 1e-3
    finally:
        pool.close()


def test_release_loss_refuses_what_it_would_ignore():
    from fineproofs.errors import ConfigError

    for bad in (
        "trainer.beta=0.04",
        "trainer.scale_rewards=group",
        "trainer.top_entropy_quantile=0.2",
        "trainer.importance_sampling_level=sequence",
    ):
        with pytest.raises(ConfigError, match="update.loss=release"):
            load_stage_config("rl", "embedded", [bad])
    load_stage_config("rl", "embedded", ["trainer.beta=0.04", "update.loss=trl"])  # TRL's loss: fine
    with pytest.raises(ConfigError, match="generation_lag"):
        load_stage_config("rl", "embedded", ["update.generation_lag=1", "trainer.steps_per_generation=4"])
    # the paper configs: the release's objective with TRL's vLLM correction off
    for st in ("rl", "rc"):
        cfg = load_stage_config(st, "paper", [])
        assert cfg.update.loss == "release" and cfg.update.generation_lag >= 1
        assert cfg.trainer["vllm_importance_sampling_correction"] is False
        assert cfg.trainer["max_grad_norm"] == 0.3 and cfg.trainer["epsilon"] == 4.0


def test_check_trl_pins_the_range(monkeypatch):
    import trl

    from fineproofs.errors import ConfigError
    from fineproofs.train.rl import check_trl

    check_trl()
    monkeypatch.setattr(trl, "__version__", "1.17.0")
    with pytest.raises(ConfigError, match="trl>=1.15,<1.17"):
        check_trl()


# ---------------------------------------------------------------------------
# real runs: stale generation, and the gradient of each optimizer step
# ---------------------------------------------------------------------------


def _counting_judge():
    """A judge engine whose n-th reply scores n mod 8 (varied rewards, no failures)."""
    from fineproofs.engines.base import Completion, Engine

    class CountingJudge(Engine):
        model_id = "counting-judge"
        n = 0

        def generate(self, requests):
            for i, r in enumerate(requests):
                self.n += 1
                text = f"<score>{self.n % 8}</score> checkpoints counted"
                yield i, [Completion(text if text.startswith(r.prefill) else r.prefill + text)] * r.n

    return CountingJudge()


class StepGradientCheck:
    """Records every micro-batch the trainer's loss sees, and at each optimizer step (before
    the optimizer moves the weights) compares the accumulated gradient with the reference
    over that step's micro-batches."""

    def __init__(self, temperature, eps, coef):
        self.temperature, self.eps, self.coef = temperature, eps, coef
        self.pending: list[dict] = []
        self.steps: list[dict] = []

    def install(self, trainer_cls, monkeypatch):
        orig = trainer_cls._compute_loss
        check = self

        def spy(self, model, inputs):
            b = {k: inputs[k].detach().clone() for k in ("prompt_ids", "prompt_mask", "completion_ids", "advantages")}
            b["completion_mask"] = inputs["completion_mask"].detach().clone()
            if inputs.get("fp_actor_logps") is not None:
                b["actor_logps"] = inputs["fp_actor_logps"].detach().clone()
            check.pending.append(b)
            return orig(self, model, inputs)

        monkeypatch.setattr(trainer_cls, "_compute_loss", spy)

    def callback(self):
        from transformers import TrainerCallback

        check = self

        class _CB(TrainerCallback):
            def on_pre_optimizer_step(self, args, state, control, model=None, **kw):
                got = [p.grad.clone() for p in model.parameters()]
                saved = [p.grad for p in model.parameters()]
                for p in model.parameters():
                    p.grad = None
                ref, clipped = reference_step_loss(
                    model, check.pending, temperature=check.temperature, eps=check.eps, entropy_coef=check.coef
                )
                ref.backward()
                err = max((g - p.grad).abs().max().item() for g, p in zip(got, model.parameters()))
                with torch.no_grad():
                    ratios = [
                        torch.exp(token_logps_and_entropy(model, b, check.temperature)[0] - b["actor_logps"])[
                            b["completion_mask"].bool()
                        ]
                        for b in check.pending
                        if "actor_logps" in b
                    ]
                dev = max((float((r - 1).abs().max()) for r in ratios), default=0.0)
                check.steps.append({"max_grad_err": err, "clipped": clipped, "ratio_dev": dev})
                for p, g in zip(model.parameters(), saved):
                    p.grad = g
                check.pending = []

        return _CB()


@pytest.mark.parametrize("stage", ["rl", "rc"])
def test_real_run_stale_generation_gradient_is_the_reference(stage, tiny, run_dir, tmp_path, monkeypatch):
    """Two optimizer steps from one generation (generation_lag 1): the second step's rollouts
    come from the weights before the first update, so the ratio is not 1; at every step the
    accumulated gradient equals the reference's. The advantages TRL computes are reward -
    group mean."""
    from fineproofs.engines import EnginePool
    from fineproofs.train import rl
    from fineproofs.train.rc import run_rc

    overrides = [
        f"model.name={tiny}",
        "trainer.max_completion_length=12",
        "trainer.max_steps=2",
        "trainer.gradient_accumulation_steps=1",
        "trainer.learning_rate=0.05",  # large enough that one update moves the logprobs visibly
        "trainer.epsilon=0.2",  # so the moved ratios can reach the clip
        "trainer.entropy_coef=1.0e-4",
        "trainer.max_grad_norm=0.0",  # no clipping: the gradient is compared as accumulated
        "trainer.save_strategy='no'",
        "update.generation_lag=1",
        "grading.max_attempts=1",
    ]
    if stage == "rc":
        overrides += [f"rc.summarizer.engine.model={tiny}", "rc.summarizer.sampling.max_tokens=8", "rc.turns=1"]
    cfg = load_stage_config(stage, "embedded", overrides)
    check = StepGradientCheck(cfg.trainer["temperature"], cfg.trainer["epsilon"], cfg.trainer["entropy_coef"])
    check.install(rl.FineproofsGRPOTrainer, monkeypatch)
    scored = []
    orig = rl.FineproofsGRPOTrainer._generate_and_score_completions

    def spy(self, inputs):
        out = orig(self, inputs)
        scored.append(out)
        return out

    monkeypatch.setattr(rl.FineproofsGRPOTrainer, "_generate_and_score_completions", spy)
    orig_rewards = rl.FineproofsGRPOTrainer._calculate_rewards
    rewards = []

    def spy_rewards(self, *a):
        r = orig_rewards(self, *a)
        rewards.append(r.clone())
        return r

    monkeypatch.setattr(rl.FineproofsGRPOTrainer, "_calculate_rewards", spy_rewards)
    judge = _counting_judge()
    pool = EnginePool()
    try:
        run = run_rc if stage == "rc" else rl.run_rl
        res = run(cfg, tmp_path / stage, data=str(run_dir / "rl"), judge_engine=judge, pool=pool,
                  callbacks=[check.callback()], resume=False)  # fmt: skip
    finally:
        pool.close()
    assert res.global_step == 2
    assert len(scored) == 1, "one generation serves both optimizer steps"
    g = cfg.trainer["num_generations"]
    torch.testing.assert_close(scored[0]["advantages"], group_advantages(rewards[0].sum(dim=1), g))
    assert len(check.steps) == 2
    print(f"\n{stage} steps:", check.steps)
    for st in check.steps:
        assert st["max_grad_err"] < TOL, st
    assert check.steps[0]["ratio_dev"] < 1e-4  # the first step trains on the weights that generated
    assert check.steps[1]["ratio_dev"] > 1e-3  # the second on rollouts one update old
    assert check.steps[1]["clipped"] > 0  # and with epsilon 0.2 the clip acts there
