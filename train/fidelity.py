"""Fidelity of the ``paper`` training and evaluation configs to the QED-Nano release:
every objective knob, QED-Nano's value and the file it comes from (the dataset-building
knobs are in :mod:`fineproofs.cards.fidelity`; ``docs/fidelity.md`` shows both).

``key`` is ``<stage>:<dotted path>`` into the stage config (``train/configs/<stage>_paper.yaml``);
``extract`` reads a value that is not one setting. :data:`BEHAVIOURS` are the differences
that are not a knob of ours; :data:`EVAL_NOTE` says which evaluation figures are
comparable with the paper's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fineproofs.fieldpath import dig

UNKNOWN = "not released"
RL = "training/conf/qed_nano_rl.yaml"
RC = "training/conf/qed_nano_rc.yaml"
BASE = "training/conf/finetune/base.yaml"
GRPO = "training/conf/finetune/grpo.yaml"
LOSS = "training/pipelinerl/finetune/rl/__init__.py rl_step"
LOOP = "training/pipelinerl/finetune_loop.py"
ROLLOUTS = "training/pipelinerl/domains/math/rollouts.py"
VERIFIER = "training/pipelinerl/domains/math/verifier_api.py"
RC_ACTOR = "training/pipelinerl/rc_actor.py"
EVAL = "eval/configs/models/workflows/vllm_agent.yaml"
EVAL_RC = "eval/configs/agents/reasoning_cache.yaml, eval/src/imobench/agents/reasoning_cache.py"
TRAIN_GPUS = 8  # the paper configs train on 8 of their 32 GPUs


@dataclass(frozen=True)
class TrainKnob:
    key: str
    release: Any
    source: str
    why: str = ""
    extract: Callable[[dict[str, Any]], Any] | None = None
    ours_for_release: Any = None  # the release's value as our config writes it, where they differ in form

    def value(self, configs: dict[str, Any]) -> Any:
        stage, _, path = self.key.partition(":")
        if self.extract is not None:
            return self.extract(configs[stage])
        if path.startswith("trainer.") and path[8:] not in configs[stage].trainer:
            return _trl_default(stage, path[8:])  # unset: what TRL runs with
        return dig(configs[stage], path)


def _trl_default(stage: str, key: str) -> Any:
    import dataclasses

    from fineproofs.train.config import trl_args_class

    field = {f.name: f for f in dataclasses.fields(trl_args_class(stage))}[key]
    return field.default_factory() if field.default is dataclasses.MISSING else field.default


def _prompt(name: str) -> Callable[[Any], str]:
    def get(cfg) -> str:
        from fineproofs import prompts

        given = cfg.prompts.get(name)
        return given or f"packaged {name} ({prompts.load(name).version})"

    return get


def _sequences_per_step(cfg) -> int:
    t = cfg.trainer
    return int(t["per_device_train_batch_size"]) * int(t["gradient_accumulation_steps"]) * TRAIN_GPUS


_LAG = (
    "TRL generates synchronously; with lag L one generation feeds L + 1 optimizer steps, so a step's "
    "rollouts are 0..L updates old (L/2 on average) and the ratio and its clip act. The release's actors "
    "run beside the trainer and take new weights after every step, with no bound (max_lag: null): its lag "
    "follows generation throughput and is not a number of the release. 0 = on-policy (ratio 1, the clip "
    "never acts)"
)
_PROMPT_WHY = (
    "this project's own words carrying the release's structure and every rule; `prompts: {{{name}: FILE}}` in "
    "the config plugs in the release's file ({placeholders} are filled)"
)

KNOBS: list[TrainKnob] = [
    # SFT
    TrainKnob("sft:model.name", "Qwen/Qwen3-4B-Thinking-2507", f"{RL} (init checkpoint ...-SFT)"),
    TrainKnob("sft:trainer.learning_rate", UNKNOWN, "no SFT config in the release", "ours: 1e-5 cosine, 5 epochs"),
    TrainKnob(
        "sft:trainer.max_length",
        UNKNOWN,
        "no SFT config in the release",
        "ours: 49,152; longer samples are left out and counted, never truncated",
    ),
    # RL: start, data, sampling
    TrainKnob(
        "rl:model.name",
        "hf-imo-colab/Qwen3-4B-Thinking-2507-SFT@v08.00-step-000000372",
        f"{RL} model_path, model_revision",
        "the release's SFT checkpoint is internal; ours starts from the published SFT model "
        "(or --model runs/sft/final)",
    ),
    TrainKnob("rl:data.source", "lm-provers/FineProofs-RL", f"{RL} train_dataset_names"),
    TrainKnob("rl:trainer.num_generations", 16, f"{RL} finetune.attempts"),
    TrainKnob(
        "rl:sequences per optimizer step",
        1024,
        f"{LOOP} (samples_per_step: train_batch_size 32 x 32 passes / 4 lead trainers)",
        "ours: per_device_train_batch_size x gradient_accumulation_steps x 8 training GPUs",
        extract=_sequences_per_step,
    ),
    TrainKnob("rl:model.dtype", "bfloat16", f"{BASE} load_as_bf16, {RL} vllm_config dtype"),
    TrainKnob("rl:trainer.temperature", 0.8, f"{RL} llm.parameters"),
    TrainKnob("rl:trainer.top_p", 1.0, f"{RL} llm.parameters (none set)"),
    TrainKnob("rl:trainer.max_completion_length", 49152, f"{RL} llm.parameters.max_tokens"),
    # RL: the update
    TrainKnob(
        "rl:update.loss",
        "PPO clip on the ratio to the actor's logprobs; token sum / sequences of the step; entropy per token",
        f"{LOSS}, {GRPO} (policy_loss: ppo)",
        "fineproofs.train.rl.release_policy_loss, equal to a plain-torch reference of rl_step in loss and "
        "gradient (tests/test_train_loss_reference.py); `trl` uses TRL's loss_type instead",
        ours_for_release="release",
    ),
    TrainKnob("rl:trainer.scale_rewards", "none", f"{BASE} divide_advantage_by_std: false"),
    TrainKnob("rl:trainer.epsilon", 4.0, f"{BASE} epsilon: 4"),
    TrainKnob("rl:trainer.beta", 0.0, f"{BASE} kl_coef"),
    TrainKnob(
        "rl:trainer.entropy_coef",
        1e-4,
        f"{RL} finetune.rl.entropy_bonus",
        "per token, weighted 1 / (sequences of the step) like the policy term (update.loss: release)",
    ),
    TrainKnob(
        "rl:trainer.vllm_importance_sampling_correction",
        "none: the ratio to the actor's (vLLM's) logprobs is the correction, clipped at 1 ± 4",
        LOSS,
        "TRL's correction would multiply a second ratio in",
        ours_for_release=False,
    ),
    TrainKnob(
        "rl:update.generation_lag",
        "asynchronous actors, max_lag: null",
        f"training/conf/base.yaml max_lag, {LOOP}",
        _LAG,
    ),
    TrainKnob("rl:trainer.num_iterations", 1, f"{LOOP} (each rollout trained on once)"),
    TrainKnob("rl:trainer.learning_rate", 1e-6, f"{RL}"),
    TrainKnob("rl:trainer.lr_scheduler_type", "constant", f"{RL} (constant_with_warmup, 0 warmup)"),
    TrainKnob("rl:trainer.warmup_steps", 0, f"{RL} num_warmup_steps"),
    TrainKnob("rl:trainer.weight_decay", 0.01, f"{BASE}"),
    TrainKnob(
        "rl:trainer.max_grad_norm",
        0.3,
        f"{BASE} gradient_clipping_threshold",
        "same number on the same objective (token sum / sequences of the step). The release hands it to "
        "DeepSpeed, whose backward by default also divides each micro-batch by its accumulation steps "
        "(8 per GPU here) and averages over the 8 ranks: if so, the release clips a gradient 1/64 of ours "
        "(RC: 1/256) and clips less often; trainer.max_grad_norm=19.2 (RC: 76.8) reproduces that",
    ),
    TrainKnob("rl:trainer.adam_epsilon", 1e-8, f"{BASE} optim: adamw_torch (default eps)"),
    TrainKnob("rl:trainer.mask_truncated_completions", False, f"{RL} finetune.rl.overlong_filtering: false"),
    # RL: the reward
    TrainKnob(
        "rl:reward.require_eos",
        False,
        f"{ROLLOUTS} (the proof branch grades finished and cut rollouts alike)",
        "true: a completion cut at the length limit gets 0 without a judge call",
    ),
    TrainKnob(
        "rl:grading.require_thinking_close",
        True,
        f"{ROLLOUTS} remove_reasoning (no </think>: empty answer, score 0)",
    ),
    TrainKnob("rl:grading.score_parse", "first", f"{VERIFIER} (first <score>N</score>)", "strict is the default"),
    TrainKnob("rl:judge.engine.model", "openai/gpt-oss-20b", f"{RL} llm_grader.name"),
    TrainKnob("rl:judge.sampling.temperature", 1.0, f"{RL} llm_grader.sampling_kwargs"),
    TrainKnob("rl:judge.sampling.max_tokens", 81920, f"{RL} llm_grader.sampling_kwargs"),
    TrainKnob("rl:judge.sampling.top_p", 1.0, f"{RL} llm_grader.sampling_kwargs (none set)"),
    TrainKnob("rl:grading.judges", 1, f"{RL} (one grader call per rollout)"),
    TrainKnob("rl:grading.prefill_score_tag", False, f"{VERIFIER} (the prompt is sent as is)"),
    TrainKnob("rl:judge.sampling.reasoning_effort", "medium", f"{RL} llm_grader.sampling_kwargs.reasoning.effort"),
    TrainKnob("rl:grading.with_reference", False, "training/prompts/evaluator_prompts/v1.md"),
    TrainKnob(
        "rl:grading.max_attempts",
        3,
        VERIFIER,
        "the release retries API errors 3 times and scores a reply without a tag 0 at once; ours retries every "
        "failure with a fresh sample, then masks the rollout out of the update (never a 0)",
    ),
    TrainKnob(
        "rl:prompts.grade",
        "training/prompts/evaluator_prompts/v1.md",
        f"{RL} llm_grader.prompt_name: v1",
        _PROMPT_WHY.format(name="grade", placeholders="{problem}, {marking_scheme}, {solution}"),
        extract=_prompt("grade"),
    ),
    # RC
    TrainKnob("rc:model.name", "Qwen/Qwen3-4B-Thinking-2507", f"{RC} model_path"),
    TrainKnob("rc:rc.turns", 3, f"{RC} num_reasoning_steps"),
    TrainKnob("rc:rc.states_per_problem", 2, f"{RC} rc_stream_samples_per_batch"),
    TrainKnob(
        "rc:sequences per optimizer step",
        1024,
        f"{LOOP} (train_batch_size 16 x 64 passes / 2 lead trainers)",
        "32 problems x 2 states x 16 attempts",
        extract=_sequences_per_step,
    ),
    TrainKnob("rc:update.loss", "as RL", f"{RC} finetune: grpo", ours_for_release="release"),
    TrainKnob("rc:update.generation_lag", "asynchronous actors, max_lag: null", f"{RC} max_lag", _LAG),
    TrainKnob("rc:reward.require_eos", False, ROLLOUTS),
    TrainKnob("rc:grading.score_parse", "first", VERIFIER),
    TrainKnob("rc:judge.sampling.reasoning_effort", "medium", f"{RC} llm_grader.sampling_kwargs"),
    TrainKnob("rc:rc.summarizer.engine.model", "Qwen/Qwen3-4B-Instruct-2507", f"{RC} summarization_model_path"),
    TrainKnob("rc:rc.summarizer.sampling.max_tokens", 2048, f"{RC} summarization_llm"),
    TrainKnob("rc:rc.summarizer.sampling.temperature", 0.7, f"{RC} summarization_llm"),
    TrainKnob("rc:rc.summarizer.sampling.top_p", 0.8, f"{RC} summarization_llm"),
    TrainKnob("rc:rc.summarizer.sampling.top_k", 20, f"{RC} summarization_llm"),
    TrainKnob("rc:rc.summary_max_words", None, "training/prompts/sum_e2e_complete_summarization_prompt.txt"),
    TrainKnob(
        "rc:prompts.rc_reason",
        "training/prompts/sum_e2e_complete_reasoning_prompt.txt",
        f"{RC} rc_actor.reasoning_prompt_file",
        _PROMPT_WHY.format(name="rc_reason", placeholders="{problem}, {curr_summary}"),
        extract=_prompt("rc_reason"),
    ),
    TrainKnob(
        "rc:prompts.rc_summarize",
        "training/prompts/sum_e2e_complete_summarization_prompt.txt",
        f"{RC} rc_actor.summarization_prompt_file",
        _PROMPT_WHY.format(name="rc_summarize", placeholders="{problem}, {existing_summary}, {reasoning}"),
        extract=_prompt("rc_summarize"),
    ),
    TrainKnob("rc:trainer.scale_rewards", "none", f"{BASE}"),
    TrainKnob("rc:trainer.epsilon", 4.0, f"{BASE}"),
    TrainKnob("rc:trainer.entropy_coef", 1e-4, f"{RC} finetune.rl.entropy_bonus"),
    # evaluation
    TrainKnob("eval:policy.sampling.max_tokens", 229376, EVAL),
    TrainKnob("eval:policy.sampling.temperature", 0.8, EVAL),
    TrainKnob("eval:policy.sampling.top_p", 1.0, EVAL),
    TrainKnob(
        "eval:benchmark",
        "lm-provers/IMOProofBench",
        "eval/scripts/run.py (--data-path default)",
        "ours reads a local copy of the benchmark CSV (offline); `benchmark: hf:lm-provers/IMOProofBench` reads the Hub",
    ),
    TrainKnob("eval:policy.engine.model", "lm-provers/QED-Nano", EVAL, "replaced by --model"),
    TrainKnob(
        "eval:judge.engine.model",
        "gemini-3-pro-preview",
        "eval/slurm/README.md (--judge google/gemini-3-pro), eval/configs/models/google/gemini-3-pro.yaml model",
        "the grading prompt is ours (0/1/6/7, <score> tag), in our words",
    ),
    TrainKnob("eval:judge.sampling.max_tokens", 130000, "eval/configs/models/google/gemini-3-pro.yaml"),
    TrainKnob(
        "eval:judge.sampling.temperature",
        UNKNOWN,
        "eval/configs/models/google/gemini-3-pro.yaml",
        "null there (the API's default, 1.0 for Gemini 3): we send 1.0",
    ),
    TrainKnob(
        "eval:judge.sampling.top_p", UNKNOWN, "eval/configs/models/google/gemini-3-pro.yaml", "null there: we send 1.0"
    ),
    TrainKnob("eval:grading.judges", 1, "eval/scripts/grading.py (one judge call per proof)"),
    TrainKnob(
        "eval:grading.max_attempts",
        UNKNOWN,
        "eval/scripts/grading.py",
        "ours: an unparseable reply is retried up to 3 times, then reported and excluded (never a 0)",
    ),
    TrainKnob("eval:rc_turns", 3, f"{EVAL_RC} n_iterations"),
    TrainKnob(
        "eval:summarizer.engine.model",
        "the policy itself",
        f"{EVAL_RC} (no summarizer_model: the model config's)",
        extract=lambda cfg: (
            "the policy itself"
            if (cfg.summarizer.engine.model, cfg.summarizer.sampling) == (cfg.policy.engine.model, cfg.policy.sampling)
            else cfg.summarizer.engine.model
        ),
    ),
    TrainKnob("eval:summarizer.sampling.max_tokens", 229376, f"{EVAL_RC} (the policy's sampling)"),
    TrainKnob("eval:summarizer.sampling.temperature", 0.8, f"{EVAL_RC} (the policy's sampling)"),
    TrainKnob("eval:summarizer.sampling.top_p", 1.0, f"{EVAL_RC} (the policy's sampling)"),
    TrainKnob("eval:summary_max_words", None, f"{EVAL_RC} summarization_prompt (two paragraphs)"),
    TrainKnob(
        "eval:prompts.rc_reason",
        "eval/configs/agents/reasoning_cache.yaml solve_prompt",
        EVAL_RC,
        "the training prompt's words are used at test time too: the harness's solve prompt is the training "
        "one without its last line ('reason step by step') and writes '[No previous summary]' into the empty "
        "section (ours: '(no earlier attempt)'); `prompts: {rc_reason: FILE}` in the eval config restores it",
        extract=_prompt("rc_reason"),
    ),
    TrainKnob("eval:samples", 1, "eval/scripts/run.py --n (default 1)", "more samples lower the variance only"),
]


def _mirror_into_rc() -> list[TrainKnob]:
    """The release's RC config shares the RL objective, sampling and judge: every RL knob
    not listed for RC on its own holds for RC with the same value."""
    listed = {k.key for k in KNOBS}
    out = []
    for k in KNOBS:
        stage, _, path = k.key.partition(":")
        if stage != "rl" or f"rc:{path}" in listed or path in _RL_ONLY:
            continue
        out.append(TrainKnob(f"rc:{path}", k.release, f"{RC} (as RL)", k.why, k.extract, k.ours_for_release))
    return out


_RL_ONLY = {"model.name", "sequences per optimizer step", "update.loss", "update.generation_lag"}
KNOBS += _mirror_into_rc()

# settings of the paper configs that do not change what is learned or how it is scored:
# (key pattern, fnmatch style over `<stage>:<path>`; what it is)
OPERATIONAL: list[tuple[str, str]] = [
    ("*:name", "recipe metadata"),
    ("*:description", "recipe metadata"),
    ("*:gpus", "GPUs the recipe assumes (the release: 4 nodes x 8 H100 for RL and RC)"),
    ("*:accelerate_config", "launcher file (the release: DeepSpeed ZeRO-3, bf16)"),
    ("*:model.attn_implementation", "attention kernel (the release: flash_attention_2); numerics only"),
    ("*:model.chat_template", "how the training template is built (checked to render like the model's own)"),
    ("*:data.config", "dataset config of the source"),
    ("sft:*", "the release ships no SFT config: every SFT setting is ours (the model above is the paper's)"),
    ("*.engine.kind", "where a role runs (http, transformers, vllm)"),
    ("*.engine.endpoints", "where a role runs"),
    ("*.engine.max_concurrency", "request fan-out"),
    ("*.engine.request_timeout_s", "request timeout"),
    ("*.engine.label", "a short label for logs"),
    ("*.engine.api_key_env", "where the API key is read from"),
    ("*:trainer.loss_type", "unused under update.loss: release (TRL's loss when update.loss: trl)"),
    ("*:trainer.per_device_train_batch_size", "see `sequences per optimizer step`"),
    ("*:trainer.gradient_accumulation_steps", "see `sequences per optimizer step`"),
    ("*:trainer.use_vllm", "generation backend (the release: vLLM actors)"),
    ("*:trainer.vllm_*", "generation backend"),
    ("*:trainer.activation_checkpointing", "memory (the release: gradient_checkpointing true)"),
    ("*:trainer.bf16", "mixed precision (the release: DeepSpeed bf16)"),
    ("*:trainer.logging_steps", "logging"),
    ("*:trainer.log_completions", "logging"),
    ("*:trainer.report_to", "logging"),
    ("*:trainer.save_*", "checkpoints (the release: every 5 steps)"),
    ("*:trainer.seed", "seed (the release: 42)"),
    ("eval:modes", "which of the harness's two runs (direct, RC) to do"),
]


def operational(key: str) -> str | None:
    from fnmatch import fnmatchcase

    return next((why for pat, why in OPERATIONAL if fnmatchcase(key, pat)), None)


def differs(k: TrainKnob, configs: dict[str, Any]) -> bool:
    if k.release == UNKNOWN:
        return False
    want = k.ours_for_release if k.ours_for_release is not None else k.release
    got = k.value(configs)
    return not (got == want or (isinstance(got, float) and isinstance(want, float) and abs(got - want) < 1e-12))


# training and evaluation behaviour that is not a knob: (what, QED-Nano, fineproofs, knob or "-")
BEHAVIOURS: list[tuple[str, str, str, str]] = [
    (
        "a judge call that fails, or a reply without a valid score (RL/RC reward)",
        "reward 0",
        "retried (grading.max_attempts), then the rollout is masked out of the update: out of the group "
        "baseline, advantage 0, no tokens in the loss",
        "-",
    ),
    (
        "a judge score outside 0..7 (e.g. <score>9</score>)",
        "taken as read (reward 9/7)",
        "unparseable: retried, then masked",
        "-",
    ),
    (
        "how the judge is called",
        "OpenAI Responses API, the filled prompt as one input",
        "chat completions (system + user turn), the proof fenced as data and score tags in it neutralised",
        "judge.engine (any OpenAI-compatible server)",
    ),
    (
        "what the judge sees of a rollout",
        "the text after the last </think>",
        "the same, as written",
        "-",
    ),
    (
        "loss normaliser under data parallelism",
        "each rank divides its token sum by the step's sequences; DeepSpeed then scales (see max_grad_norm)",
        "the step's token sum / its sequences exactly, whatever the ranks and accumulation",
        "trainer.max_grad_norm",
    ),
    (
        "evaluation during training",
        "FineProofs-RL-test every 12,800 samples (eval_every_n_versions)",
        "none inside the run: `fineproofs eval` on a checkpoint",
        "-",
    ),
    (
        "RC evaluation turn 1",
        "the RC solve prompt (so rc@1 is not the single pass)",
        "the same: `single` uses the rollout prompt, `rc@1` the rc_reason prompt",
        "-",
    ),
]

EVAL_NOTE = """## Which evaluation numbers are comparable with the paper's

`fineproofs eval --config paper` samples as the released harness does (229,376 tokens,
temperature 0.8, top-p 1.0; one sample per problem, its `--n` default), runs the single
pass from the rollout prompt and RC with 3 turns from the RC prompt with the policy as its
own summariser at the policy's own sampling (the harness's reasoning_cache agent, no
2,048-token cap there), and grades with gemini-3-pro on IMO-ProofBench's 0/1/6/7 scale.
Its means are comparable with the paper's IMO-ProofBench figures up to three things,
each named in the table above: the grading prompt is this project's (same scale, same
inputs: problem, reference solution, guidelines, proof), the RC prompts are this project's
words for the harness's (`prompts:` takes the harness's files), and a judge failure is
excluded and reported instead of counted as 0 (the harness counts it 0, so our mean is
higher by at most the reported failure share × the mean). `--config embedded` and any run
with another budget, judge or summariser are not comparable.
"""


def run_differences(stage: str, cfg) -> list[dict[str, Any]]:
    """The knobs of ``stage`` where a run's config is not the release's (what QED-Nano does,
    ours, why): written into the run's ``fineproofs_train.json`` as its fidelity list."""
    out = []
    for k in KNOBS:
        if not k.key.startswith(f"{stage}:"):
            continue
        try:
            if differs(k, {stage: cfg}):
                out.append({"key": k.key, "release": k.release, "ours": k.value({stage: cfg}), "why": k.why})
        except (AttributeError, KeyError, TypeError, ValueError):
            continue  # a knob this config does not have
    return out


def paper_configs() -> dict[str, Any]:
    from fineproofs.train.config import load_stage_config

    return {st: load_stage_config(st, "paper", []) for st in ("sft", "rl", "rc", "eval")}
