"""Typed configs for the training stages and evaluation, validated at the edge.

Each stage reads one YAML file. The bundled ones live in ``fineproofs/train/configs/``
as ``<stage>_<name>.yaml`` (``paper`` = the QED-Nano recipe on GPUs, ``embedded`` =
the same pipeline shrunk to run on 2 CPU cores with SmolLM2-135M); any other path is
read as a file. ``--set key.sub=value`` overrides single keys from the command line
(the value is parsed as YAML, so ``--set trainer.max_steps=3`` gives an int).

A file has our own typed sections (``model``, ``data``, ``judge``, ``rc``...) and a
``trainer:`` mapping that is passed, key for key, to TRL's own dataclass
(``trl.SFTConfig`` or ``trl.GRPOConfig``): unknown keys are rejected with the closest
valid name, and TRL's own ``__post_init__`` checks run before any model is loaded.
Every problem is raised as :class:`fineproofs.config.ConfigError` with a message that
says which key is wrong.
"""

from __future__ import annotations

import dataclasses
import difflib
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from fineproofs.config import ConfigError, GradingConfig, RoleConfig, Section, invalid, load_yaml, parse_override
from fineproofs.fieldpath import set_dotted

STAGES = ("sft", "rl", "rc", "eval")


class ModelSpec(Section):
    """The policy being trained: a Hub id, a local directory, or ``embedded``."""

    name: str = Field(
        "embedded", description="The policy: a Hub id, a local directory, or embedded (SmolLM2-135M-Instruct)."
    )
    revision: str = Field(
        "", description="Hub revision (branch, tag or commit) of the policy; empty: the default branch."
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="The weights' dtype while training (auto: the checkpoint's)."
    )
    attn_implementation: str | list[str] | None = Field(
        None,
        description="Attention kernel: a name or a preference list, the first this machine runs wins (e.g. [flash_attention_2, sdpa_packed, sdpa]); see fineproofs.train.fastpath.",
    )
    chat_template: str = Field(
        "auto",
        description="Chat template for training: auto keeps the model's template when it has {% generation %} markers, else TRL's patched template for known families, else fineproofs' ChatML training template (checked to render exactly like the model's own); a path to a .jinja file forces that template.",
    )


class DataSpec(Section):
    """Where the training rows come from (``--data`` on the command line overrides ``source``).

    ``source``: a ``fineproofs build`` run directory (reads
    ``<dir>/data/<config>/train-*.parquet``), a parquet file or directory, or a Hub
    dataset id (``lm-provers/FineProofs-SFT``). ``config``: the dataset config
    (SFT: ``all`` = every kept sample, ``default`` = one per problem; RL: ``default``).
    """

    source: str = Field(
        "",
        description="A fineproofs build run directory (<dir>/data/<config>/train-*.parquet), a parquet file or directory, or a Hub dataset id (lm-provers/FineProofs-SFT); --data overrides it.",
    )
    config: str | None = Field(
        None,
        description="The dataset config (SFT: all = every kept sample, default = one per problem; RL: default); unset: the stage's.",
    )
    split: str = Field("train", description="The dataset split.")
    revision: str | None = Field(None, description="Hub revision of the dataset; unset: the default branch.")
    limit: int | None = Field(None, ge=1, description="Train on the first N rows; unset: all.")
    seed: int = Field(42, description="Shuffle seed of the rows.")


class RewardSpec(Section):
    """How a rollout becomes a reward (see :mod:`fineproofs.train.reward`).

    The judge's reply is read with ``grading.score_parse`` (``strict`` by default; ``first``
    = the first ``<score>`` tag, the release's reading); the judge is sampled with
    ``judge.sampling`` (``reasoning_effort`` included); the judge prompt is ``prompts.grade``
    when a config names one. The judge grades the text after the thinking block; a reply
    with an unclosed ``<think>`` is unterminated (0). Models without thinking tags
    (SmolLM2) have their whole reply graded.
    """

    require_eos: bool = Field(
        True,
        description="true: a completion that hit the length limit (no EOS) is unterminated, reward 0 without a judge call; false (the release): graded like any other, on the text after the </think> it reached (nothing after </think> = 0 without a judge call).",
    )


class UpdateSpec(Section):
    """How graded rollouts become a gradient (see :mod:`fineproofs.train.rl`).

    ``loss``: ``release`` = QED-Nano's objective (:func:`fineproofs.train.rl.release_policy_loss`):
    advantage = reward - group mean, a per-token ratio against the logprobs of the weights that
    generated the rollout (the actor), clipped at 1 +/- ``trainer.epsilon``, token losses and
    the entropy bonus (``trainer.entropy_coef`` per token) summed and divided by the sequences
    of the optimizer step, no KL. ``trl`` = TRL's loss as ``trainer.loss_type`` defines it.

    ``generation_lag``: optimizer steps a rollout may trail the weights being updated. One
    generation serves ``generation_lag + 1`` optimizer steps (TRL's ``steps_per_generation``
    = (lag + 1) x ``gradient_accumulation_steps``), so the rollouts of the later steps come
    from weights 1..lag updates old and the ratio (and its clip) acts, as with the release's
    asynchronous actors. 0 = synchronous.
    """

    loss: Literal["release", "trl"] = Field(
        "trl",
        description="release: QED-Nano's objective (advantage = reward - group mean, per-token ratio against the generating weights clipped at 1 +/- trainer.epsilon, entropy bonus, no KL); trl: TRL's loss as trainer.loss_type defines it.",
    )
    generation_lag: int = Field(
        0,
        ge=0,
        description="Optimizer steps a rollout may trail the weights being updated: one generation serves lag + 1 optimizer steps, as with the release's asynchronous actors; 0 = synchronous.",
    )


# trl.GRPOConfig settings the release objective does not have: refused rather than ignored
# under `update.loss: release` (key, the value it must have, TRL's default, why)
_RELEASE_LOSS_FIXED = (
    ("scale_rewards", "none", "group", "the release's advantage is reward - group mean, not divided by the std"),
    ("beta", 0.0, 0.0, "the release has no KL term (kl_coef 0)"),
    ("top_entropy_quantile", 1.0, 1.0, "the release trains on every token"),
    ("importance_sampling_level", "token", "token", "the release's ratio is per token"),
    ("off_policy_mask_threshold", None, None, "the release masks no sequence"),
    ("delta", None, None, "the release clips the ratio only at 1 +/- epsilon"),
    ("use_adaptive_entropy", False, False, "the release's entropy bonus is a constant"),
)


def release_loss_conflicts(update: UpdateSpec, trainer: dict[str, Any]) -> list[str]:
    """Why ``trainer`` cannot run with ``update`` (empty when it can)."""
    out = []
    if update.generation_lag and ({"steps_per_generation", "generation_batch_size"} & set(trainer)):
        out.append(
            "update.generation_lag sets trainer.steps_per_generation itself: drop "
            "trainer.steps_per_generation / trainer.generation_batch_size"
        )
    if update.loss != "release":
        return out
    for key, want, default, why in _RELEASE_LOSS_FIXED:
        got = trainer.get(key, default)
        if got != want:
            out.append(f"update.loss=release needs trainer.{key}={want!r} ({why}); got {got!r}")
    if trainer.get("use_vllm") and trainer.get("vllm_importance_sampling_correction", True):
        out.append(
            "update.loss=release takes its ratio against the generating (vLLM) logprobs itself: set "
            "trainer.vllm_importance_sampling_correction=false (TRL's correction would apply a second ratio)"
        )
    return out


class RCSpec(Section):
    """The reasoning cache (see :mod:`fineproofs.train.rc`)."""

    turns: int = Field(3, ge=1, description="Reasoning/summarisation cycles per rollout chain.")
    states_per_problem: int = Field(2, ge=1, description="States trained per problem (of turns + 1).")
    summary_max_words: int | None = Field(
        None,
        ge=10,
        description="A word cap written into the summariser's prompt; unset: none (the release asks for at most two paragraphs and bounds the summary by the summariser's max_tokens only).",
    )
    summarizer: RoleConfig = Field(
        default_factory=RoleConfig, description="The model that summarises each turn's reasoning."
    )


# prompts a stage uses, by stage: `prompts: {name: file or packaged name}` may replace these
STAGE_PROMPTS = {
    "rl": ("grade",),
    "rc": ("grade", "rc_reason", "rc_summarize"),
    "eval": ("eval_grade", "rc_reason", "rc_summarize"),
}


def _check_prompts(stage: str, names) -> None:
    allowed = STAGE_PROMPTS[stage]
    bad = sorted(set(names) - set(allowed))
    if bad:
        raise ValueError(f"prompts: {bad} are not prompts the {stage} stage uses; use names from {list(allowed)}")


class _StageBase(Section):
    stage: str = Field(description="The training stage this file configures (sft, rl, rc).")
    name: str = Field("", description="The config's name (the bundled ones: paper, embedded).")
    description: str = Field("", description="One line on what the config is for.")
    gpus: int = Field(0, ge=0, description="GPUs the recipe assumes (documentation; 0 = CPU).")
    accelerate_config: str | None = Field(
        None, description="Shipped accelerate config the recipe is launched with (documentation)."
    )
    model: ModelSpec = Field(default_factory=ModelSpec, description="The policy being trained.")
    data: DataSpec = Field(default_factory=DataSpec, description="Where the training rows come from.")
    trainer: dict[str, Any] = Field(
        default_factory=dict,
        description="Passed key for key to TRL's own config (trl.SFTConfig or trl.GRPOConfig): unknown keys are refused with the closest valid name.",
    )


class SFTRunConfig(_StageBase):
    stage: Literal["sft"] = Field("sft", description="sft: supervised fine-tuning on FineProofs-SFT.")


class RLRunConfig(_StageBase):
    stage: Literal["rl"] = Field("rl", description="rl: GRPO with rubric rewards on FineProofs-RL.")
    judge: RoleConfig = Field(
        default_factory=RoleConfig,
        description="The model that grades rollouts against the rubric (reward = grade / 7).",
    )
    grading: GradingConfig = Field(
        default_factory=GradingConfig,
        description="How the judge grades (score parsing, attempts, ensemble); a failed judge call is never a reward of 0.",
    )
    reward: RewardSpec = Field(default_factory=RewardSpec, description="How a rollout becomes a reward.")
    update: UpdateSpec = Field(default_factory=UpdateSpec, description="How graded rollouts become a gradient.")
    prompts: dict[str, str] = Field(
        default_factory=dict,
        description="Replace a prompt this stage uses: {name: template file, or another packaged prompt's name} (fineproofs.prompts documents the format; a file with the release's {problem}, {marking_scheme}, {solution} placeholders works as the judge prompt too).",
    )

    @model_validator(mode="after")
    def _check_update(self):
        _check_prompts(self.stage, self.prompts)
        problems = release_loss_conflicts(self.update, self.trainer)
        if problems:
            raise ValueError("; ".join(problems))
        return self


class RCRunConfig(RLRunConfig):
    stage: Literal["rc"] = Field("rc", description="rc: RL with the reasoning cache.")  # type: ignore[assignment]
    rc: RCSpec = Field(
        default_factory=RCSpec, description="The reasoning cache: turns, states trained, the summariser."
    )


class EvalRunConfig(Section):
    """``fineproofs eval``: IMO-ProofBench, single pass and with the reasoning cache."""

    stage: Literal["eval"] = Field("eval", description="eval: IMO-ProofBench.")
    name: str = Field("", description="The config's name (the bundled ones: paper, embedded).")
    description: str = Field("", description="One line on what the config is for.")
    gpus: int = Field(0, ge=0, description="GPUs the recipe assumes (documentation; 0 = CPU).")
    benchmark: str = Field(
        "../shared/data/imobench/proofbench_v2.csv",
        description="The benchmark: a file with the IMO-ProofBench columns (relative to the working directory) or hf:<id>[@split]; --benchmark overrides it.",
    )
    benchmark_split: str = Field("train", description="Split of a Hub benchmark that names none.")
    limit: int | None = Field(
        None, ge=1, description="Evaluate the first N problems (Basic and Advanced interleaved); unset: all."
    )
    levels: list[Literal["Basic", "Advanced"]] = Field(
        default_factory=lambda: ["Basic", "Advanced"], description="Which levels to evaluate (Basic, Advanced)."
    )
    policy: RoleConfig = Field(
        default_factory=RoleConfig, description="The model under evaluation (--model replaces engine.model)."
    )
    judge: RoleConfig = Field(
        default_factory=RoleConfig, description="The model that grades each proof on the 0/1/6/7 scale."
    )
    grading: GradingConfig = Field(
        default_factory=GradingConfig,
        description="How the judge grades (score parsing, structured replies, attempts, ensemble); a failed judge call is excluded from the means, never a 0.",
    )
    summarizer: RoleConfig = Field(
        default_factory=RoleConfig,
        description="The model that summarises each RC turn's reasoning (the release: the policy itself).",
    )
    samples: int = Field(1, ge=1, description="Proofs per problem per mode (scores are averaged).")
    modes: list[Literal["single", "rc"]] = Field(
        default_factory=lambda: ["single", "rc"],
        description="single: one proof from the rollout prompt; rc: the reasoning cache at test time, graded after every turn.",
    )
    rc_turns: int = Field(3, ge=1, description="Turns of the reasoning cache in rc mode.")
    summary_max_words: int | None = Field(
        None, ge=10, description="A word cap written into the summariser's prompt; unset: none (the harness has none)."
    )
    prompts: dict[str, str] = Field(
        default_factory=dict,
        description="Replace a prompt: {eval_grade | rc_reason | rc_summarize: template file or packaged prompt name}.",
    )

    @model_validator(mode="after")
    def _check_prompts(self):
        _check_prompts("eval", self.prompts)
        return self


STAGE_MODELS: dict[str, type[Section]] = {
    "sft": SFTRunConfig,
    "rl": RLRunConfig,
    "rc": RCRunConfig,
    "eval": EvalRunConfig,
}


# ---------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------


def bundled_configs(stage: str | None = None) -> list[str]:
    """Bundled config names, e.g. ``['embedded', 'paper']`` for a stage."""
    names = []
    for p in resources.files("fineproofs.train").joinpath("configs").iterdir():
        if p.name.endswith(".yaml") and "_" in p.name:
            st, _, name = p.name[:-5].partition("_")
            if st in STAGES and (stage is None or st == stage):
                names.append(name if stage else f"{st}_{name}")
    return sorted(names)


def config_text(stage: str, name_or_path: str) -> tuple[str, str]:
    """(YAML text, where it came from) for a bundled name or a file path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        return path.read_text(), str(path)
    res = resources.files("fineproofs.train").joinpath("configs", f"{stage}_{name_or_path}.yaml")
    if not res.is_file():
        raise ConfigError(
            f"unknown {stage} config {name_or_path!r}: use one of {bundled_configs(stage)} or a path to a YAML file"
        )
    return res.read_text(), f"{stage}_{name_or_path}.yaml"


def apply_overrides(data: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    """``--set KEY=VALUE`` items (:func:`fineproofs.config.parse_override`, the profile's
    syntax too) folded into a config's data; sections missing from the file are added."""
    for item in overrides:
        why = set_dotted(data, *parse_override(item), create=True)
        if why:
            raise ConfigError(f"--set {item!r}: {why}")
    return data


def load_stage_config(stage: str, name_or_path: str = "paper", overrides: list[str] | tuple[str, ...] = ()):
    """A validated config for ``stage`` (``sft``/``rl``/``rc``/``eval``)."""
    if stage not in STAGE_MODELS:
        raise ConfigError(f"unknown stage {stage!r}; use one of {list(STAGE_MODELS)}")
    text, origin = config_text(stage, name_or_path)
    try:
        data = load_yaml(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{origin}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: expected a mapping at the top level")
    data.setdefault("stage", stage)
    if data["stage"] != stage:
        raise ConfigError(f"{origin} is a {data['stage']!r} config, not a {stage!r} one")
    data = apply_overrides(data, overrides)
    try:
        cfg = STAGE_MODELS[stage].model_validate(data)
    except ValidationError as e:
        raise invalid(origin, e, STAGE_MODELS[stage]) from e
    if stage != "eval":
        validate_trainer_keys(stage, cfg.trainer, origin)
        from fineproofs.train.fastpath import check_fast_paths

        try:
            check_fast_paths(cfg.model.attn_implementation, cfg.trainer)
        except ConfigError as e:
            raise ConfigError(f"{origin}: {e}") from e
    return cfg


def trl_args_class(stage: str):
    import trl

    return trl.SFTConfig if stage == "sft" else trl.GRPOConfig


# TrainingArguments fields renamed within the transformers range fineproofs admits: a
# config may use either name, and gets the one the installed version has (the new name
# when both exist). transformers 5.0-5.17 know only `gradient_checkpointing*`; later
# versions add `activation_checkpointing*` and keep the old names as deprecated aliases.
TRAINER_KEY_RENAMES = {
    "activation_checkpointing": "gradient_checkpointing",
    "activation_checkpointing_kwargs": "gradient_checkpointing_kwargs",
}


def trainer_fields(stage: str) -> set[str]:
    return {f.name for f in dataclasses.fields(trl_args_class(stage)) if f.init}


def translate_trainer_keys(stage: str, trainer: dict[str, Any]) -> dict[str, Any]:
    """``trainer`` with renamed keys spelled as the installed transformers spells them."""
    valid = trainer_fields(stage)
    out = dict(trainer)
    for new, old in TRAINER_KEY_RENAMES.items():
        target = new if new in valid else old if old in valid else None
        given = {k: out.pop(k) for k in (new, old) if k in out}
        if not given:
            continue
        if len({repr(v) for v in given.values()}) > 1:
            raise ConfigError(f"trainer.{new} and trainer.{old} are the same switch and disagree: {given}")
        out[target or new] = next(iter(given.values()))
    return out


def validate_trainer_keys(stage: str, trainer: dict[str, Any], origin: str = "config") -> None:
    cls = trl_args_class(stage)
    valid = trainer_fields(stage)
    bad = [k for k in translate_trainer_keys(stage, trainer) if k not in valid]
    if bad:
        lines = [f"{origin}: unknown `trainer` key(s) for trl.{cls.__name__}:"]
        for k in bad:
            close = difflib.get_close_matches(k, sorted(valid), n=1)
            lines.append(f"  - trainer.{k}" + (f" (did you mean trainer.{close[0]}?)" if close else ""))
        raise ConfigError("\n".join(lines))


def has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def build_trl_args(stage: str, trainer: dict[str, Any], output_dir: str | Path, *, check_only: bool = False, **extra):
    """The TRL ``SFTConfig`` / ``GRPOConfig`` for a stage, adapted to the machine.

    On a machine without a GPU: ``use_cpu=True`` and ``bf16/fp16=False`` (TRL's own
    advice for CPU runs); a config asking for vLLM there is an error, not a silent
    downgrade, because the paper's throughput assumptions would not hold. With
    ``check_only`` (``fineproofs train check``) a GPU recipe is validated on a CPU
    machine: the same CPU adaptation, and vLLM generation is allowed (nothing runs).
    Renamed keys (:data:`TRAINER_KEY_RENAMES`) are spelled as the installed version
    spells them; a fast path this machine lacks is turned off with a warning.
    """
    cls = trl_args_class(stage)
    kw = dict(trainer)
    kw.update({k: v for k, v in extra.items() if v is not None})
    kw["output_dir"] = str(output_dir)
    kw = translate_trainer_keys(stage, kw)
    if kw.get("use_liger_kernel"):
        from fineproofs.train.fastpath import check_fast_paths

        kw["use_liger_kernel"] = check_fast_paths(None, kw, warn=True).liger
    if not has_gpu():
        if kw.get("use_vllm") and not check_only:
            raise ConfigError(
                "this config generates with vLLM (trainer.use_vllm: true), which needs a GPU; on CPU use "
                "`--config embedded` or `--set trainer.use_vllm=false`"
            )
        kw["use_cpu"] = True
        kw["bf16"] = False
        kw["fp16"] = False
    validate_trainer_keys(stage, kw)
    try:
        return cls(**kw)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"invalid trl.{cls.__name__} settings: {e}") from e


def check_stage_config(stage: str, name_or_path: str, overrides: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Load a config, build its TRL arguments as the installed versions define them, and
    resolve its fast paths for this machine: what ``fineproofs train check`` prints.
    Raises :class:`ConfigError` on the first problem."""
    import tempfile

    from fineproofs.train.fastpath import check_fast_paths

    cfg = load_stage_config(stage, name_or_path, overrides)
    lines = []
    if stage != "eval":
        with tempfile.TemporaryDirectory() as tmp:
            args = build_trl_args(stage, cfg.trainer, tmp, check_only=True)
        lines.append(f"trl.{type(args).__name__}: {len(cfg.trainer)} trainer key(s) valid")
        lines += check_fast_paths(cfg.model.attn_implementation, cfg.trainer).lines()
    return lines


def prepare_run(cfg, output_dir, model: str | None = None, check_hardware: bool = True):
    """What every training stage does first: check the hardware the config assumes,
    create the output directory, and swap in ``--model`` as the starting checkpoint.
    Returns ``(cfg, out)``."""
    if check_hardware:
        require_paper_hardware(cfg)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if model:
        cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"name": model})})
    return cfg, out


def require_paper_hardware(cfg) -> None:
    """A GPU recipe on a machine without GPUs fails early, saying what to run instead."""
    if getattr(cfg, "gpus", 0) and not has_gpu():
        raise ConfigError(
            f"the {cfg.name or cfg.stage} config assumes {cfg.gpus} GPU(s) and none is visible; on CPU run the "
            f"same stage with `--config embedded` (SmolLM2-135M), or pass your own YAML"
        )
