"""Judging primitives shared by the build, RL rewards and evaluation: a judge scores a proof.

Contract:

- The proof is fenced as data between ``<<<PROOF>>>`` markers; before it is sent,
  anything in it that could pose as the judge's output (score tags, the fence
  markers) is neutralised, so injected text cannot become the parsed score.
- The score is parsed **only from the judge's final answer**, strictly: exactly one
  ``<score>N</score>`` with N a whole number 0..7, otherwise the reply is
  unparseable. Reasoning, inline (``<think>``) or returned apart by the server, is
  never read; a reply that ends inside its reasoning has no answer (retried).
- An unparseable reply or an engine failure is retried (a new sample index, so
  the store keeps every attempt) up to ``max_attempts``; after that the sample is
  quarantined with the reason. It is never scored 0.
- Ensembles: ``judges`` independent judge samples per proof, aggregated by
  mean (rounded half up), median (rounded half up) or majority (ties to the lower).
- Proofs that contain score tags, grading instructions or "award full marks"
  style text are flagged (:func:`injection_flags`); flags travel with the grade.
"""

from __future__ import annotations

import functools
import math
import re
import statistics
from collections import Counter
from dataclasses import dataclass

from fineproofs import prompts
from fineproofs.config import GradingConfig, RoleConfig
from fineproofs.engines.base import GenerationRequest, sampling_of
from fineproofs.generation import CachedGenerator
from fineproofs.engines.base import sampling_of
from fineproofs.records import Grade, Problem, ProofSample, Rubric
from fineproofs.replies import answer_of

# judge j's attempt a uses sample index j * JUDGE_STRIDE + a: keys stay put when max_attempts changes
JUDGE_STRIDE = 100

SCORE_TAG = re.compile(r"<score>\s*(-?\d+(?:\.\d+)?)\s*</score>", re.I)
_ANY_SCORE_TAG = re.compile(r"</?\s*score\s*>", re.I)
_FENCE = re.compile(r"<<<\s*(END\s+)?PROOF\s*>>>", re.I)

NO_RUBRIC = (
    "No marking scheme is available: grade against the reference solution on the usual "
    "7-point olympiad scale (7 complete and rigorous, 0 no substantial progress)."
)

_INJECTION_PATTERNS = {
    "score_tag": re.compile(r"</?\s*score\s*>|\bscore\s*[:=]\s*[0-7]\s*(?:/\s*7)?\b", re.I),
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
    """The proof as sent to the judge: score tags and fence markers defanged."""
    proof = _FENCE.sub("[proof marker removed]", proof)
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
    problem: Problem
    rubric: Rubric | None
    sample: ProofSample


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
    prefill = "<score>" if cfg.prefill_score_tag else ""
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
            replies = generator.run(reqs, stage=stage, prompt_version=prompt_version, first_sample=sample_index)
            for slot, (r,) in zip(slots, replies):
                if not r.ok:
                    reasons[slot] = f"judge_failure: {r.reason}"
                    still.append(slot)
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
    maps it back onto a scale), or ``(None, reason)`` when no judge gave one."""
    out: list[tuple[int | None, str]] = []
    for i in range(n):
        valid = [scores[(i, j)] for j in range(cfg.judges) if (i, j) in scores]
        if valid:
            agg = aggregate(valid, cfg.aggregate)
            out.append((snap(agg) if snap else agg, ""))
        else:
            why = reasons.get((i, 0), "no judge reply")
            out.append((None, f"{why} (after {cfg.max_attempts} attempts)"))
    return out


class Grader:
    """Grades proof samples with one judge role (``judge`` for rollouts,
    ``grader`` for teacher proofs)."""

    def __init__(self, role_name: str, role: RoleConfig, cfg: GradingConfig, generator: CachedGenerator):
        self.role_name = role_name
        self.role = role
        self.cfg = cfg
        self.generator = generator
        self.prompt = prompts.load("grade")

    @property
    def stage(self) -> str:
        return f"grade_{self.role_name}"

    def messages(self, job: GradeJob) -> list[dict[str, str]]:
        ref = ""
        if self.cfg.with_reference or job.rubric is None:
            ref = f"\nReference solution:\n{job.problem.reference_solution or '(none available)'}\n"
        return self.prompt.render(
            problem=job.problem.statement,
            reference=ref,
            rubric=job.rubric.render() if job.rubric else NO_RUBRIC,
            proof=neutralise(job.sample.proof),
        )

    def run(self, jobs: list[GradeJob]) -> list[Grade]:
        scores, reasons = judge_with_retries(
            self.generator, [self.messages(job) for job in jobs], self.cfg, sampling_of(self.role),
            functools.partial(parse_score, mode=self.cfg.score_parse), stage=self.stage,
            prompt_version=self.prompt.version,
        )
        grades = []
        for i, (score, why) in enumerate(collect(scores, reasons, len(jobs), self.cfg)):
            job = jobs[i]
            status = "ok" if score is not None else "failed"
            grades.append(Grade(job.sample.key, score, self.role.engine.model, status, reason=why,
                                flags=injection_flags(job.sample.proof)))
        return grades
