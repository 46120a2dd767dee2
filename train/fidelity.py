"""Fidelity of the ``paper`` training and evaluation configs to the QED-Nano release:
every objective knob, QED-Nano's value and the file it comes from (the dataset-building
knobs are in :mod:`fineproofs.cards.fidelity`; ``docs/fidelity.md`` shows both).

``key`` is ``<stage>:<dotted path>`` into the stage config (``train/configs/<stage>_paper.yaml``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

UNKNOWN = "not released"
RL = "training/conf/qed_nano_rl.yaml"
RC = "training/conf/qed_nano_rc.yaml"
BASE = "training/conf/finetune/base.yaml"
EVAL = "eval/configs/models/workflows/vllm_agent.yaml"


@dataclass(frozen=True)
class TrainKnob:
    key: str
    release: Any
    source: str
    why: str = ""

    def value(self, configs: dict[str, Any]) -> Any:
        stage, _, path = self.key.partition(":")
        node: Any = configs[stage]
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else getattr(node, part)
        return node


_SCALED = (
    "TRL's dr_grpo loss is the release's (token sum / sequences) divided by max_completion_length "
    "(49,152); clipping and Adam epsilon are divided by the same constant, so updates match"
)

KNOBS: list[TrainKnob] = [
    TrainKnob("sft:model.name", "Qwen/Qwen3-4B-Thinking-2507", f"{RL} (init checkpoint ...-SFT)"),
    TrainKnob("sft:trainer.learning_rate", UNKNOWN, "no SFT config in the release", "ours: 1e-5 cosine, 5 epochs"),
    TrainKnob(
        "sft:trainer.max_length",
        UNKNOWN,
        "no SFT config in the release",
        "ours: 49,152; longer samples are left out and counted, never truncated",
    ),
    TrainKnob("rl:trainer.num_generations", 16, f"{RL} finetune.attempts"),
    TrainKnob("rl:trainer.learning_rate", 1e-6, f"{RL}"),
    TrainKnob("rl:trainer.lr_scheduler_type", "constant", f"{RL} (constant_with_warmup, 0 warmup)"),
    TrainKnob("rl:trainer.beta", 0.0, f"{BASE} kl_coef"),
    TrainKnob("rl:trainer.temperature", 0.8, f"{RL} llm.parameters"),
    TrainKnob("rl:trainer.max_completion_length", 49152, f"{RL} llm.parameters.max_tokens"),
    TrainKnob("rl:trainer.scale_rewards", "none", f"{BASE} divide_advantage_by_std: false"),
    TrainKnob("rl:trainer.epsilon", 4.0, "training/conf/finetune/grpo.yaml (ppo, epsilon 4)"),
    TrainKnob(
        "rl:trainer.entropy_coef",
        1e-4,
        f"{RL}",
        "TRL adds the mean token entropy; the release's aggregation of the bonus may differ",
    ),
    TrainKnob("rl:trainer.weight_decay", 0.01, f"{BASE}"),
    TrainKnob(
        "rl:trainer.loss_type", "token sum / 1,024 sequences", "training/pipelinerl/finetune/rl/__init__.py", _SCALED
    ),
    TrainKnob("rl:trainer.max_grad_norm", 0.3, f"{BASE} gradient_clipping_threshold", _SCALED),
    TrainKnob("rl:judge.sampling.max_tokens", 81920, f"{RL} llm_grader.sampling_kwargs"),
    TrainKnob("rl:grading.with_reference", False, "training/prompts/evaluator_prompts/v1.md"),
    TrainKnob("rc:rc.turns", 3, f"{RC} num_reasoning_steps"),
    TrainKnob("rc:rc.states_per_problem", 2, f"{RC} rc_stream_samples_per_batch"),
    TrainKnob("rc:rc.summarizer.engine.model", "Qwen/Qwen3-4B-Instruct-2507", f"{RC} summarization_model_path"),
    TrainKnob("rc:rc.summarizer.sampling.max_tokens", 2048, f"{RC} summarization_llm"),
    TrainKnob("rc:rc.summarizer.sampling.top_k", 20, f"{RC} summarization_llm"),
    TrainKnob("rc:trainer.scale_rewards", "none", f"{BASE}"),
    TrainKnob("eval:policy.sampling.max_tokens", 229376, EVAL),
    TrainKnob("eval:policy.sampling.temperature", 0.8, EVAL),
    TrainKnob("eval:policy.sampling.top_p", 1.0, EVAL),
    TrainKnob(
        "eval:judge.engine.model",
        "gemini-3-pro",
        "eval/slurm/README.md (--judge default)",
        "the grading prompt is ours (0/1/6/7, <score> tag), in our words",
    ),
    TrainKnob("eval:rc_turns", 3, "eval/configs/agents/reasoning_cache.yaml n_iterations"),
    TrainKnob(
        "eval:samples",
        UNKNOWN,
        "eval/scripts/run.py --n",
        "the number behind the paper's figures is not in the code; ours: 4",
    ),
]

# the release's value as our config writes it, where the two are written differently
_OURS_FOR_RELEASE = {"rl:trainer.loss_type": "dr_grpo", "rl:trainer.max_grad_norm": 0.3 / 49152}


def differs(k: TrainKnob, configs: dict[str, Any]) -> bool:
    if k.release == UNKNOWN:
        return False
    want = _OURS_FOR_RELEASE.get(k.key, k.release)
    got = k.value(configs)
    return not (got == want or (isinstance(got, float) and isinstance(want, float) and abs(got - want) < 1e-12))


def paper_configs() -> dict[str, Any]:
    from fineproofs.train.config import load_stage_config

    return {st: load_stage_config(st, "paper", []) for st in ("sft", "rl", "rc", "eval")}
