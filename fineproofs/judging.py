"""Judging primitives shared by the build, RL rewards and evaluation: a judge scores a proof.

Contract:

- The proof is fenced as data between ``<<<PROOF>>>`` markers; before it is sent,
  anything in it that could pose as the judge's output (score tags, the fence
  markers) is neutralised, so injected text cannot become the parsed score.
- The score is parsed **only from the judge's final answer**, strictly: exactly one
  ``<score>N</score>`` with N a whole number 0..7, otherwise the reply is
  unparseable. Reasoning, inline (``<think>``) or returned apart by the server, is
  never read; a reply that ends inside its reasoning has no answer (retried).
- An unparseable reply is retried (a new sample index, so the store keeps every
  attempt) up to ``max_attempts``; after that the sample is quarantined with the
  reason. It is never scored 0. An engine failure (the server never answered within
  the engine's retry budget) is not an attempt: the slot fails with
  ``judge_failure`` for this run, and the next run asks again under the same sample
  index, so a transient fault never changes which reply a grade is read from.
- Ensembles: ``judges`` independent judge samples per proof, aggregated by
  mean (rounded half up), median (rounded half up) or majority (ties to the lower).
- Proofs that contain score tags, grading instructions or "award full marks"
  style text are flagged (:func:`injection_flags`); flags travel with the grade.
- Quorum: a grade needs at least ``quorum`` valid judges; with fewer it is a failure
  (``quorum: 1 of 3 judges gave a valid score``), never a grade from a lone judge.
- Structured outputs (``grading.structured``): the judge is asked for the JSON
  document :func:`score_schema` (``{"score": N, "assessment": "..."}``), enforced by
  the engine (server-side ``response_format`` or a grammar). The score is read from
  that JSON final answer only (:func:`parse_structured`): a JSON object whose
  ``score`` is a whole number on the scale, or, for a reply cut at ``max_tokens``, a
  document that opens with a complete ``{"score": N,``. An answer that is not JSON is
  read as text (``<score>N</score>``), as when a server rejected the schema and the
  engine fell back. A ``"score":`` key inside the proof is defanged like the tags, so
  an echoed proof can never pass as the judge's JSON.
- Scales (:class:`Grader` ``scale``): ``rubric`` (the ``grade`` prompt, 0..7 against
  the rubric) or ``proofbench`` (the ``eval_grade`` prompt, 0/1/6/7 with the reference
  solution and the rubric or guidelines; ensembles snap back onto the scale).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import statistics
from collections import Counter
from dataclasses import dataclass

from fineproofs import prompts
from fineproofs.config import GradingConfig, RoleConfig
from fineproofs.engines.base import GenerationRequest, SamplingParams, sampling_of
from fineproofs.generation import CachedGenerator
from fineproofs.records import Grade, Problem, ProofSample, Rubric
from fineproofs.replies import answer_of

# judge j's attempt a uses sample index j * JUDGE_STRIDE + a: keys stay put when max_attempts changes
JUDGE_STRIDE = 100

SCORE_TAG = re.compile(r"<score>\s*(-?\d+(?:\.\d+)?)\s*</score>", re.I)
_ANY_SCORE_TAG = re.compile(r"</?\s*score\s*>", re.I)
_FENCE = re.compile(r"<<<\s*(END\s+)?PROOF\s*>>>", re.I)
_JSON_SCORE_KEY = re.compile(r'(\\?)"(score)(\\?)"(?=\s*:)', re.I)  # "score": (also escaped \"score\":)
_JSON_SCORE_PREFIX = re.compile(r'\{\s*"score"\s*:\s*(-?\d+(?:\.\d+)?)\s*[,}]')
PROOFBENCH_SCORES = (0, 1, 6, 7)
SCALES = {"rubric": tuple(range(8)), "proofbench": PROOFBENCH_SCORES}
STRUCTURED_VERSION = "json-v1"  # joins the prompt version in store keys when structured outputs are on
STRUCTURED_NOTE = (
    '\n\nIf your reply must be JSON, write {{"score": N, "assessment": "one short paragraph"}} instead, '
    "with N {allowed}."
)

NO_RUBRIC = (
    "No marking scheme is available: grade against the reference solution on the usual "
    "7-point olympiad scale (7 complete and rigorous, 0 no substantial progress)."
)

_INJECTION_PATTERNS = {
    "score_tag": re.compile(r"</?\s*score\s*>|\bscore\\?\"?\s*[:=]\s*[0-7]\s*(?:/\s*7)?\b", re.I),
    "grading_instruction": re.compile(
        r"\b(?:award|give|assign|grant)\b[^.\n]{0,40}\b(?:full|maximum|7|seven)\s*(?:marks|points|score)?|"
        r"\bfull (?:marks|credit|score)\b|"
        r"\bignore (?:all |any |the )?(?:previous|prior|above|earlier)\b|"
        r"\b(?:note|instructions?) (?:to|for) the (?:grader|judge|marker)\b|"
        r"\bas (?:the|a) (?:grader|judge)\b|\bgrading (?:instructions|guidelines)\b",
        re.I,
    ),
    "self_evaluation": re.compile(
        r"\b(?:this|the above|my) (?:proof|solution) is (?:fully |completely )?(?:correct|rigorous|complete)"
        r"(?: and (?:complete|rigorous))?\b[^.\n]{0,30}(?:deserv|merit|score|7)",
        re.I,
    ),
    "fence_marker": _FENCE,
}


def injection_flags(proof: str) -> list[str]:
    return [name for name, pat in _INJECTION_PATTERNS.items() if pat.search(proof)]


def neutralise(proof: str) -> str:
    """The proof as sent to the judge: score tags, ``"score":`` JSON keys and fence markers defanged."""
    proof = _FENCE.sub("[proof marker removed]", proof)
    proof = _JSON_SCORE_KEY.sub(lambda m: f"{m.group(1)}“{m.group(2)}{m.group(3)}”", proof)
    return _ANY_SCORE_TAG.sub(lambda m: m.group(0).replace("<", "‹").replace(">", "›"), proof)


class ScoreParseError(ValueError):
    """A judge reply without exactly one valid score; retried, then quarantined."""


def parse_score(reply: str, mode: str = "strict") -> int:
    """The score of a judge's final answer. ``strict``: exactly one ``<score>N</score>``
    and no other score tag; ``first``: the first well-formed tag (QED-Nano's reading).
    Either way N must be a whole number 0..7, else :class:`ScoreParseError`."""
    tags = SCORE_TAG.findall(reply)
    if mode == "first":
        if not tags:
            raise ScoreParseError("no <score>N</score> in the answer")
    elif len(tags) != 1 or len(_ANY_SCORE_TAG.findall(reply)) != 2:
        raise ScoreParseError(f"expected exactly one <score>N</score>, found {len(tags)}")
    value = float(tags[0])
    if value != int(value) or not 0 <= value <= 7:
        raise ScoreParseError(f"score {tags[0]} is not a whole number from 0 to 7")
    return int(value)


def score_schema(scale: str = "rubric") -> dict:
    """The JSON schema of a structured judge reply: ``score`` first (required), then an
    optional short ``assessment``; nothing else."""
    allowed = SCALES[scale]
    score = {"type": "integer", "minimum": 0, "maximum": 7} if scale == "rubric" else {"enum": list(allowed)}
    return {
        "title": "grade",
        "type": "object",
        "properties": {"score": score, "assessment": {"type": "string"}},
        "required": ["score"],
        "additionalProperties": False,
    }


def parse_structured(answer: str, mode: str = "strict", allowed: tuple[int, ...] = SCALES["rubric"]) -> int:
    """The score of a structured judge answer (see the module docstring); a non-JSON
    answer is read as text by :func:`parse_score`."""
    text = answer.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, re.S)
    text = fenced.group(1) if fenced else text
    if not text.startswith("{"):
        return _on_scale(parse_score(text, mode), allowed)
    try:
        obj, end = json.JSONDecoder().raw_decode(text)
    except ValueError:
        cut = _JSON_SCORE_PREFIX.match(text)  # unfinished (cut at max_tokens) after a complete score
        if cut is None:
            raise ScoreParseError("the answer is not a complete JSON object with a score first") from None
        value = float(cut.group(1))
    else:
        if text[end:].strip():
            raise ScoreParseError("text after the JSON answer")
        if not isinstance(obj, dict) or "score" not in obj:
            raise ScoreParseError('the JSON answer has no "score"')
        value = obj["score"]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ScoreParseError(f"score {value!r} is not a number")
    if value != int(value) or not 0 <= value <= 7:
        raise ScoreParseError(f"score {value} is not a whole number from 0 to 7")
    return _on_scale(int(value), allowed)


def _on_scale(score: int, allowed: tuple[int, ...]) -> int:
    if score not in allowed:
        raise ScoreParseError(f"score {score} is not one of {allowed}")
    return score


def aggregate(scores: list[int], how: str) -> int:
    if how == "mean":
        return int(math.floor(sum(scores) / len(scores) + 0.5))
    if how == "median":
        return int(math.floor(statistics.median(scores) + 0.5))
    if how == "majority":
        counts = Counter(scores)
        best = max(counts.values())
        return min(s for s, c in counts.items() if c == best)
    raise ValueError(f"unknown aggregate {how!r}")


@dataclass
class GradeJob:
    """One proof to grade. ``guidelines``: marking text used when there is no
    :class:`Rubric` (a calibration set's grading guidelines or rubric column)."""

    problem: Problem
    rubric: Rubric | None
    sample: ProofSample
    guidelines: str = ""


def judge_with_retries(
    generator: CachedGenerator,
    msgs: list[list[dict[str, str]]],
    cfg: GradingConfig,
    sp,
    parse,
    *,
    stage: str,
    prompt_version: str,
) -> tuple[dict[tuple[int, int], int], dict[tuple[int, int], str]]:
    """``cfg.judges`` judge samples per conversation, each retried up to
    ``cfg.max_attempts`` times on an engine failure or an unparseable reply.

    Returns the parsed score per (conversation, judge) slot and, for slots that never
    produced one, the last failure reason. Judge j's attempt a is sample index
    ``j * JUDGE_STRIDE + a``, so every attempt is its own store entry."""
    structured = getattr(sp, "json_schema", None) is not None
    prefill = "<score>" if cfg.prefill_score_tag and not structured else ""
    scores: dict[tuple[int, int], int] = {}
    reasons: dict[tuple[int, int], str] = {}
    pending = [(i, j) for i in range(len(msgs)) for j in range(cfg.judges)]
    for a in range(cfg.max_attempts):
        if not pending:
            break
        by_index: dict[int, list[tuple[int, int]]] = {}
        for slot in pending:
            by_index.setdefault(slot[1] * JUDGE_STRIDE + a, []).append(slot)
        still = []
        for sample_index, slots in sorted(by_index.items()):
            reqs = [GenerationRequest(msgs[i], 1, sp, prefill) for i, _ in slots]
            replies = generator.run(reqs, stage=stage, prompt_version=prompt_version, first_sample=sample_index,
                                     attempt=a)  # fmt: skip
            for slot, (r,) in zip(slots, replies):
                if not r.ok:  # no new attempt: the next run asks again under this sample index
                    reasons[slot] = f"judge_failure: {r.reason}"
                    continue
                answer = answer_of(r.text, r.reasoning)
                if answer is None:  # cut inside its reasoning: no verdict at all (retried, never a 0)
                    reasons[slot] = "no_answer: the judge's reply ended inside its reasoning"
                    still.append(slot)
                    continue
                try:
                    scores[slot] = parse(answer)
                except ScoreParseError as e:
                    reasons[slot] = f"unparseable: {e}"
                    still.append(slot)
        pending = still
    return scores, reasons


def collect(
    scores: dict[tuple[int, int], int],
    reasons: dict[tuple[int, int], str],
    n: int,
    cfg: GradingConfig,
    snap=None,
) -> list[tuple[int | None, str]]:
    """Per conversation ``0..n-1``: the aggregate of its valid judge scores (``snap``
    maps it back onto a scale), or ``(None, reason)`` when fewer than ``cfg.quorum``
    judges gave one."""
    out: list[tuple[int | None, str]] = []
    quorum = getattr(cfg, "quorum", 1)
    for i in range(n):
        valid = [scores[(i, j)] for j in range(cfg.judges) if (i, j) in scores]
        engine = next((reasons[(i, j)] for j in range(cfg.judges) if reasons.get((i, j), "").startswith("judge_")), "")
        if valid and len(valid) >= quorum:
            agg = aggregate(valid, cfg.aggregate)
            out.append((snap(agg) if snap else agg, ""))
        elif engine:  # a judge never answered: transient, for the next run to finish (not a quorum verdict)
            out.append((None, engine))
        elif valid:
            why = next((reasons[(i, j)] for j in range(cfg.judges) if (i, j) in reasons), "no judge reply")
            out.append(
                (
                    None,
                    f"quorum: {len(valid)} of {cfg.judges} judges gave a valid score "
                    f"(needs {quorum}; {why}, after {cfg.max_attempts} attempts)",
                )
            )
        else:
            why = reasons.get((i, 0), "no judge reply")
            out.append((None, f"{why} (after {cfg.max_attempts} attempts)"))
    return out


def snap_to(allowed: tuple[int, ...]):
    """Maps an aggregate onto the nearest allowed score (ties to the lower)."""
    return lambda agg: min(allowed, key=lambda s: (abs(s - agg), s))


class Grader:
    """Grades proof samples with one judge role (``judge`` for rollouts, ``grader``
    for teacher proofs). ``scale``: ``rubric`` (0..7, the ``grade`` prompt) or
    ``proofbench`` (0/1/6/7, the ``eval_grade`` prompt); by default the grader role
    follows ``grading.grader_scale`` and the judge grades on the rubric. ``stage``
    names the store stage (default ``grade_<role>``); it is not part of the keys, so
    calibration (``calibrate_<role>``) and the build share identical requests."""

    def __init__(
        self,
        role_name: str,
        role: RoleConfig,
        cfg: GradingConfig,
        generator: CachedGenerator,
        *,
        scale: str | None = None,
        stage: str | None = None,
        prompt_files: dict[str, str] | None = None,
    ):
        self.role_name = role_name
        self.role = role
        self.cfg = cfg
        self.generator = generator
        self.scale = scale or (cfg.grader_scale if role_name == "grader" else "rubric")
        if self.scale not in SCALES:
            raise ValueError(f"unknown grading scale {self.scale!r}: use one of {sorted(SCALES)}")
        self.prompt = prompts.pick("grade" if self.scale == "rubric" else "eval_grade", prompt_files)
        self._stage = stage

    @property
    def stage(self) -> str:
        return self._stage or f"grade_{self.role_name}"

    @property
    def allowed(self) -> tuple[int, ...]:
        return SCALES[self.scale]

    @property
    def structured(self) -> bool:
        return bool(getattr(self.cfg, "structured", False))

    @property
    def prompt_version(self) -> str:
        return f"{self.prompt.version}+{STRUCTURED_VERSION}" if self.structured else self.prompt.version

    def sampling(self) -> SamplingParams:
        sp = sampling_of(self.role)
        return dataclasses.replace(sp, json_schema=score_schema(self.scale)) if self.structured else sp

    def messages(self, job: GradeJob) -> list[dict[str, str]]:
        if self.scale == "proofbench":
            guidelines = job.rubric.render() if job.rubric else job.guidelines
            msgs = self.prompt.render(
                problem=job.problem.statement,
                solution=job.problem.reference_solution or "(none available)",
                guidelines=guidelines or "(none)",
                proof=neutralise(job.sample.proof),
            )
        else:
            ref = ""
            if self.cfg.with_reference or (job.rubric is None and not job.guidelines):
                ref = f"\nReference solution:\n{job.problem.reference_solution or '(none available)'}\n"
            msgs = self.prompt.render(
                problem=job.problem.statement,
                reference=ref,
                rubric=job.rubric.render() if job.rubric else (job.guidelines or NO_RUBRIC),
                proof=neutralise(job.sample.proof),
            )
        if self.structured:
            allowed = "a whole number from 0 to 7" if self.scale == "rubric" else "one of 0, 1, 6, 7"
            last = msgs[-1]
            msgs = [*msgs[:-1], {**last, "content": last["content"] + STRUCTURED_NOTE.format(allowed=allowed)}]
        return msgs

    def parse(self, answer: str) -> int:
        if self.structured:
            return parse_structured(answer, self.cfg.score_parse, self.allowed)
        return _on_scale(parse_score(answer, self.cfg.score_parse), self.allowed)

    def run(self, jobs: list[GradeJob]) -> list[Grade]:
        scores, reasons = judge_with_retries(
            self.generator,
            [self.messages(job) for job in jobs],
            self.cfg,
            self.sampling(),
            self.parse,
            stage=self.stage,
            prompt_version=self.prompt_version,
        )
        snap = snap_to(self.allowed) if self.scale != "rubric" else None
        grades = []
        for i, (score, why) in enumerate(collect(scores, reasons, len(jobs), self.cfg, snap)):
            job = jobs[i]
            status = "ok" if score is not None else "failed"
            grades.append(
                Grade(
                    job.sample.key,
                    score,
                    self.role.engine.model,
                    status,
                    reason=why,
                    flags=injection_flags(job.sample.proof),
                )
            )
        return grades
