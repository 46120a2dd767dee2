"""Fidelity to the QED-Nano release: every dataset-building knob, the release's value and
the file it comes from, so a card can list where a build differs and the docs can show
the whole table (``docs/fidelity.md``, written by ``fineproofs profiles fidelity``).

A :class:`Knob` names a profile setting by its dotted path. ``release`` is QED-Nano's
value (:data:`UNKNOWN` where the release does not say); ``source`` the file of
github CMU-AIRe/QED-Nano (or the dataset card) it comes from; ``why`` what we do and
why, where it matters. :data:`BEHAVIOURS` are differences that are not a knob: they
hold for every profile. The training knobs are in :mod:`fineproofs.train.fidelity`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fineproofs.config import Profile
from fineproofs.fieldpath import dig

UNKNOWN = "not released"


@dataclass(frozen=True)
class Knob:
    key: str  # dotted path into the profile
    release: Any  # QED-Nano's value, or UNKNOWN
    source: str
    why: str = ""
    extract: Callable[[Profile], Any] | None = None  # when the value is not one setting

    def value(self, profile: Profile) -> Any:
        if self.extract is not None:
            return self.extract(profile)
        return dig(profile, self.key)

    def differs(self, profile: Profile) -> bool:
        return self.release != UNKNOWN and _norm(self.value(profile)) != _norm(self.release)


def _norm(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return sorted(_norm(x) for x in v)
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


CARD_SFT = "lm-provers/FineProofs-SFT card"
CARD_RL = "lm-provers/FineProofs-RL card"
RL_CONF = "training/conf/qed_nano_rl.yaml"
GEMINI = "eval/configs/models/google/gemini-3-pro.yaml"
VERIFIER = "training/pipelinerl/domains/math/verifier_api.py"

KNOBS: list[Knob] = [
    # sources and problems
    Knob(
        "sources.paths (source labels)",
        ["aops", "olympiads"],
        f"{CARD_RL}, {CARD_SFT}",
        "`source` labelled `aops` / `olympiads` as published; the release read internal copies "
        "(hf-imo-colab/aops-v2-data, olympiads-proof-schema), we stream AI-MO/aops and AI-MO/olympiads "
        "(presets; olympiads' columns are assumed NuminaMath-style)",
        extract=lambda p: [getattr(e, "source_label", "") or str(e) for e in p.sources.paths],
    ),
    Knob(
        "decontamination.benchmarks",
        ["hf:lm-provers/IMOProofBench", "hf:wenjiema02/ProofBench"],
        f"{CARD_RL} (Benchmark Decontaminated)",
        "the method was not released; ours: n-gram, shingle, "
        "IDF-weighted prose and formula overlap after confusable folding, retrieval by canonical formula terms",
    ),
    Knob(
        "decontamination.verify_with",
        UNKNOWN,
        f"{CARD_RL} (Benchmark Decontaminated)",
        "ours: the judge's model answers whether each retrieved candidate (at most `neighbours` per problem) "
        "is the same problem as a benchmark problem up to rewording",
    ),
    Knob("decontamination.required", True, f"{CARD_RL}", "a paper build without benchmarks is refused"),
    Knob(
        "filters.keep_question_types",
        ["proof", "answer"],
        "FineProofs-RL rows (e.g. '... Compute DC')",
        "answer-type problems are in the published RL set",
    ),
    Knob(
        "problem_filter.enabled",
        True,
        "eval/scripts/filtering.py, eval/configs/prompts/filtering.txt",
        "the screening prompt was released; its keep rule and model were not (ours: see problem_filter)",
    ),
    Knob(
        "sources.paths (forum posts to the problem filter)",
        ["candidates", "metadata.path"],
        "eval/scripts/filtering.py (row['candidates'] as comments, row['path'])",
        "the aops preset maps the thread's other posts and its path; the screener sees them beside the solution",
        extract=lambda p: sorted(
            {c for e in p.sources.paths for k, c in getattr(e, "columns", {}).items() if k in ("candidates", "path")}
        ),
    ),
    Knob(
        "problem_filter.drop_computational",
        UNKNOWN,
        "eval/configs/prompts/filtering.txt",
        "the prompt calls computational problems excluded, yet the published set keeps answer-type rows: off in paper",
    ),
    # rubrics
    Knob(
        "rubric_writer.engine.model",
        "gemini-3-pro-preview",
        "eval/scripts/scheme_generation.py (--model-config gemini-3-pro), eval/configs/models/google/gemini-3-pro.yaml",
    ),
    Knob(
        "rubrics.keep_lead_in",
        False,
        "eval/scripts/scheme_generation.py (the scheme is kept from 'Checkpoints' on)",
        "the release cuts at the word, we at the start of its line, so a heading such as '1. **Checkpoints' stays "
        "whole; keep_lead_in: true keeps what the writer wrote before it",
    ),
    Knob("rubric_writer.sampling.max_tokens", 130000, "eval/configs/models/google/gemini-3-pro.yaml"),
    Knob(
        "rubric_writer.sampling.temperature",
        UNKNOWN,
        "eval/configs/models/google/gemini-3-pro.yaml",
        "null there (the API default, 1.0 for Gemini 3): we send 1.0",
    ),
    # judge (student rollouts)
    Knob("judge.engine.model", "openai/gpt-oss-20b", f"{RL_CONF} llm_grader"),
    Knob("judge.sampling.temperature", 1.0, f"{RL_CONF} llm_grader.sampling_kwargs"),
    Knob("judge.sampling.max_tokens", 81920, f"{RL_CONF} llm_grader.sampling_kwargs"),
    Knob("judge.sampling.reasoning_effort", "medium", f"{RL_CONF} llm_grader.sampling_kwargs"),
    Knob(
        "grading.with_reference",
        False,
        "training/prompts/evaluator_prompts/v1.md",
        "judge prompt v1 shows the rubric and the proof, no reference solution",
    ),
    Knob(
        "grading.score_parse",
        "first",
        VERIFIER,
        "paper-plus: strict (exactly one tag; an injected second tag makes the reply unparseable)",
    ),
    Knob(
        "grading.require_thinking_close",
        True,
        "training/pipelinerl/domains/math/rollouts.py remove_reasoning",
        "a rollout without </think> has no answer: 0 without a judge call (counted in the build summary)",
    ),
    Knob("grading.judges", 1, f"{RL_CONF}"),
    Knob(
        "grading.max_attempts",
        3,
        VERIFIER,
        "the release retries API errors 3 times and scores a reply without a tag 0 at once; we retry every "
        "failure with a fresh sample and quarantine it after the last attempt (never a 0)",
    ),
    # teacher and SFT grading
    Knob("teacher.engine.model", "deepseek-ai/DeepSeek-Math-V2", "data/README.md"),
    Knob("teacher.engine.chat_template_kwargs.enable_thinking", True, "data/scripts/generate_sglang.py"),
    Knob("teacher.sampling.temperature", 1.0, "data/scripts/generate_sglang.py"),
    Knob("teacher.sampling.max_tokens", 124928, "data/slurm/data_gen/sglang_generate.slurm"),
    Knob(
        "teacher_samples",
        UNKNOWN,
        "data/slurm/data_gen/sglang_generate.slurm (requests-per-prompt 1); FineProofs-SFT `all` 7,777 rows, "
        "`default` 4,281",
        "the released script sends 1 request per prompt, yet `all` holds 1.82 samples a problem and how the rest "
        "came about was not released; paper: 2 samples, truncated ones left out (splits.sft.keep_truncated), "
        "which gives 1.82 when about 9 % are cut (tests/test_sft_shape.py, stand-in teacher)",
    ),
    Knob("grader.engine.model", "gemini-3-pro-preview", f"{CARD_SFT} (Gemini-3-Pro); API id: {GEMINI}"),
    Knob(
        "grading.grader_scale",
        "proofbench",
        f"{CARD_SFT} (grade 'based on IMOProofBench rubric')",
        "the grader's prompt was not released; ours grades on the 0/1/6/7 scale with the reference and rubric",
    ),
    Knob("splits.sft.min_grade", 0, f"{CARD_SFT} (unfiltered teacher distillation)"),
    Knob("splits.sft.keep_incomplete", True, f"{CARD_SFT}"),
    Knob("splits.sft.keep_truncated", UNKNOWN, f"{CARD_SFT}", "not said: truncated proofs are left out"),
    Knob(
        "splits.sft.default_pick",
        UNKNOWN,
        f"{CARD_SFT} (`default`: one row per problem)",
        "which sample `default` keeps was not released; ours: the best-graded one (ties: untruncated, then the "
        "lowest sample index); `first` keeps the lowest sample index",
    ),
    Knob(
        "category.classifier",
        UNKNOWN,
        f"{CARD_SFT} (category: problem type)",
        "how `category` was set was not released; paper: the source's own tag where it has one (olympiads' "
        "problem_type), else the rubric writer classifies the statement (structured output, 3 attempts, then "
        "the keyword rule: category.on_failure); `rule`: tags, then keywords, no model",
    ),
    Knob(
        "category.labels",
        UNKNOWN,
        f"{CARD_SFT} ('e.g., Algebra, Combinatorics, Number Theory, Geometry')",
        "the card names these four as examples and publishes no full list; ours: exactly these four",
    ),
    # student rollouts and difficulty
    Knob("student.engine.model", "Qwen/Qwen3-4B-Thinking-2507", f"{CARD_RL}"),
    Knob("student_samples", 128, f"{CARD_RL} (num_rewards 62-256 in the data)"),
    Knob(
        "student.sampling.temperature",
        0.8,
        f"{RL_CONF} (training rollouts)",
        "the difficulty pass's settings were not released: the RL rollout settings are used",
    ),
    Knob("student.sampling.max_tokens", 49152, f"{RL_CONF} (training rollouts)"),
    Knob(
        "splits.rl.drop_never_solved",
        False,
        f"{CARD_RL} (reward_mean spans 0..1)",
        "paper-plus drops them: a group of equal rewards has zero advantage",
    ),
    Knob("splits.rl.drop_always_solved", False, f"{CARD_RL}", "paper-plus drops them"),
    Knob("splits.rl.drop_all_same", False, f"{CARD_RL} (reward_std 0 rows present)", "paper-plus drops them"),
    Knob("splits.rl.reward_std_ddof", 1, "FineProofs-RL rows (sample std matches, population std does not)"),
    Knob("splits.column_naming", "published", f"{CARD_SFT} schema"),
]

BEHAVIOURS: list[tuple[str, str, str]] = [
    ("a judge call that fails, or a reply without a valid score", "scored 0", "retried, then quarantined: never a 0"),
    (
        "a judge's reasoning (inline or returned apart)",
        "ignored (text after </think>)",
        "ignored: the score is read from the final answer only",
    ),
    ("SFT `messages` struct", "{content, role}", "{content, role}"),
    (
        "a self-evaluation section after the proof",
        "cut from a '# ... Evaluation' heading on (# Evaluation, ## Self Evaluation, ### Final Evaluation; "
        "eval/src/imobench/evaluation.py)",
        "cut from the same headings (any case, 'Self-Evaluation' too) and from an unheaded 'Here is my evaluation "
        "of the solution' line, before grading and in `proof`",
    ),
    (
        "prompts (filter, rubric, judge, teacher, student)",
        "the release's files (eval/configs/prompts, training/prompts)",
        "this project's own words carrying the same rules; `prompts:` in a profile plugs in any file, the release's too",
    ),
]


def differences(profile: Profile) -> list[dict[str, Any]]:
    """The knobs whose value in ``profile`` is not QED-Nano's, for the card."""
    out = []
    for k in KNOBS:
        try:
            ours = k.value(profile)
        except (AttributeError, KeyError):
            continue
        if k.differs(profile):
            out.append({"key": k.key, "ours": ours, "release": k.release, "source": k.source, "why": k.why})
    return out


def table(profiles: dict[str, Profile]) -> list[list[str]]:
    """Rows of the fidelity table: knob, QED-Nano, source, one column per profile, why."""
    rows = []
    for k in KNOBS:
        vals = []
        for p in profiles.values():
            try:
                vals.append(_cell(k.value(p)) + ("" if not k.differs(p) else " ≠"))
            except (AttributeError, KeyError):
                vals.append("(not set)")
        rows.append([f"`{k.key}`", _cell(k.release), k.source, *vals, k.why])
    return rows


def _cell(v: Any) -> str:
    if isinstance(v, list):
        return ", ".join(str(x) for x in v) or "[]"
    return str(v)
