"""The LLM problem filter: the ``problem_filter`` stage, first of the build's LLM stages.

A screener model reads each problem with its reference solution, where it comes from
and the other solutions or posts it carries, and judges six criteria (those of
QED-Nano's filtering prompt, asked in this project's words by the ``problem_filter``
prompt): ``incomplete``, ``difficulty`` (1 AMC .. 4 national olympiad .. 7 hardest
national / easiest IMO .. 10 hardest IMO), ``gaps``, ``wrong``, ``disagreement`` and
``computational``.

What is parsed (:func:`parse_verdict`): the final answer only (after any thinking
block; reasoning returned apart is never read), which must hold exactly one fenced
JSON block (```json ... ```) or be one bare JSON object; the object has exactly the six
keys, the five flags JSON booleans and ``difficulty`` a JSON integer in 1..10 (no
strings, no 0/1 for booleans, no 5.0, no duplicate keys). Anything else is
unparseable; a reply that ended inside its reasoning has no answer. Both are retried
under a new sample index up to ``max_attempts``; then the problem is a
:class:`Failed` (quarantined with its reason) and is kept or dropped by the profile's
``on_failure`` rule, counted either way.

The keep rule (:func:`causes`) is the profile's :class:`ProblemFilterConfig` (QED-Nano
released the annotations, never a threshold). Every problem passes on, as the Stage
protocol wants; the verdict is a :class:`FilterDecision` with ``step ==
"problem_filter"`` on ``Problem.decisions``, and downstream stages skip a problem for
which :func:`screened_out` is true. The stage file ``stages/problem_filter.jsonl`` holds
one record per problem: the parsed flags and difficulty, kept or not, and why;
:attr:`ProblemFilter.tally` counts the outcomes (kept, dropped, each cause, failed).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from fineproofs import prompts
from fineproofs.config import ProblemFilterConfig, Profile, RoleConfig
from fineproofs.engines.base import GenerationRequest, sampling_of
from fineproofs.generation import CachedGenerator
from fineproofs.pipelines.stage import Failed, LLMStage, Tally, Work
from fineproofs.records import FilterDecision, Problem, ScreenRecord
from fineproofs.replies import answer_or_raise

log = logging.getLogger(__name__)

STEP = "problem_filter"
FLAGS = ("incomplete", "gaps", "wrong", "disagreement", "computational")
KEYS = ("incomplete", "difficulty", "gaps", "wrong", "disagreement", "computational")

_FENCE = re.compile(r"```[ \t]*([\w-]*)[ \t]*\n(.*?)```", re.S)


class VerdictError(ValueError):
    """A screener reply that holds no valid verdict (the message says why)."""


@dataclass(frozen=True)
class Verdict:
    """The screener's judgement of one problem."""

    incomplete: bool
    difficulty: int
    gaps: bool
    wrong: bool
    disagreement: bool
    computational: bool


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise VerdictError(f"duplicate keys {dup}")
    return dict(pairs)


def _json_text(answer: str) -> str:
    blocks = [body for lang, body in _FENCE.findall(answer) if lang.lower() in ("json", "")]
    if len(blocks) > 1:
        raise VerdictError(f"{len(blocks)} fenced JSON blocks: the verdict must be exactly one")
    if blocks:
        return blocks[0]
    text = answer.strip()
    if not (text.startswith("{") and text.endswith("}")):
        raise VerdictError("no fenced ```json block, and the answer is not one JSON object")
    return text


def parse_verdict(answer: str) -> Verdict:
    """The verdict in a reply's final answer, parsed strictly (see the module docstring)."""
    try:
        obj = json.loads(_json_text(answer), object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as e:
        raise VerdictError(f"invalid JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None
    if not isinstance(obj, dict):
        raise VerdictError(f"the JSON is a {type(obj).__name__}, not an object")
    missing, extra = [k for k in KEYS if k not in obj], sorted(set(obj) - set(KEYS))
    if missing or extra:
        raise VerdictError(f"keys must be exactly {list(KEYS)}: missing {missing}, unknown {extra}")
    for k in FLAGS:
        if type(obj[k]) is not bool:
            raise VerdictError(f"{k} must be true or false, got {obj[k]!r}")
    d = obj["difficulty"]
    if type(d) is not int or not 1 <= d <= 10:
        raise VerdictError(f"difficulty must be a whole number from 1 to 10, got {d!r}")
    return Verdict(**obj)


def causes(v: Verdict, problem: Problem, cfg: ProblemFilterConfig) -> list[str]:
    """Why the keep rule drops a problem with verdict ``v`` (empty: it is kept)."""
    out = [f for f in FLAGS[:-1] if f in cfg.drop_flags and getattr(v, f)]
    if v.difficulty < cfg.min_difficulty:
        out.append(f"too_easy (difficulty {v.difficulty} < {cfg.min_difficulty})")
    if v.difficulty > cfg.max_difficulty:
        out.append(f"too_hard (difficulty {v.difficulty} > {cfg.max_difficulty})")
    if v.computational and cfg.drop_computational and not exempt(problem, cfg):
        out.append("computational")
    return out


def exempt(problem: Problem, cfg: ProblemFilterConfig) -> bool:
    """An answer-type problem under ``keep_answer_type``: never dropped as computational."""
    return cfg.keep_answer_type and problem.question_type == "answer"


def screened_out(item: Work | Problem) -> bool:
    """True when the problem filter dropped this problem: the check downstream stages make."""
    problem = item.problem if isinstance(item, Work) else item
    return any(d.step == STEP and not d.kept for d in problem.decisions)


def screener_role(profile: Profile) -> str:
    """The role that screens: ``screener`` when the profile gives one, else ``rubric_writer``."""
    return "screener" if profile.screener is not None else "rubric_writer"


def filter_roles(profile: Profile) -> list[str]:
    """Roles the problem filter adds to a build (the rubric writer is in every build already)."""
    return ["screener"] if profile.problem_filter.enabled and profile.screener is not None else []


def source_of(p: Problem) -> str:
    """Where the problem comes from, as the screener sees it (forum path, contest, URL)."""
    contest = " ".join(x for x in (p.competition, str(p.year or "")) if x)
    parts = [getattr(p, "path", "") or "", contest, p.url]
    return " | ".join(x for x in parts if x) or p.source or "(unknown)"


def others_of(p: Problem) -> str:
    """The other posts (``candidates`` when ingest keeps them) or the other solutions."""
    posts = list(getattr(p, "candidates", None) or p.solutions[1:])
    if not posts:
        return "(none)"
    return "\n\n".join(f"[{i}]\n{x.strip()}" for i, x in enumerate(posts, 1))


@dataclass
class _Outcome:
    verdict: Verdict | None = None
    failure: str = ""
    attempts: int = 0


class ProblemFilter(LLMStage):
    """The ``problem_filter`` stage: a verdict per problem and the profile's keep rule."""

    name = STEP
    record = ScreenRecord
    key_name = "problem_id"

    def __init__(self, role: RoleConfig, cfg: ProblemFilterConfig, generator: CachedGenerator):
        self.role = role
        self.cfg = cfg
        self.generator = generator
        self.prompt = prompts.load(STEP, cfg.prompt_file or None)
        self.tally = Tally()
        self._records: dict[str, ScreenRecord] = {}

    @classmethod
    def from_profile(cls, profile: Profile, gen) -> ProblemFilter:
        """The stage of ``profile``; ``gen(role)`` gives a role's generator (as in ``Build.stages``)."""
        role = screener_role(profile)
        return cls(getattr(profile, role), profile.problem_filter, gen(role))

    def process(self, chunk: list[Work]) -> Iterator[Work | Failed]:
        outcomes = self._screen([w.problem for w in chunk])
        for w in chunk:
            out = outcomes[w.id]
            if out.verdict is None:
                log.info("screening of %s failed after %d attempts: %s", w.id, out.attempts, out.failure)
                yield Failed(w.id, out.failure)
            self._decide(w.problem, out)
            yield w

    def records(self, work: Work) -> list[dict[str, Any]]:
        rec = self._records.pop(work.id, None)
        return [rec.to_dict()] if rec else []

    def _decide(self, p: Problem, out: _Outcome) -> None:
        if out.verdict is None:
            kept = self.cfg.on_failure == "keep"
            why = [f"screening_failed ({'kept' if kept else 'dropped'} by on_failure)"]
            self.tally.add("failed_kept" if kept else "failed_dropped")
        else:
            why = causes(out.verdict, p, self.cfg)
            kept = not why
            for c in why:
                self.tally.add(f"dropped_by_{c.split(' ', 1)[0]}")
            if out.verdict.computational and self.cfg.drop_computational and exempt(p, self.cfg):
                self.tally.add("answer_type_exempt")
        self.tally.add("kept" if kept else "dropped")
        if kept and out.verdict is not None:
            reason = f"kept: difficulty {out.verdict.difficulty}"
        else:
            reason = f"{'kept' if kept else 'dropped'}: {', '.join(why)}"
        p.decisions[:] = [d for d in p.decisions if d.step != STEP]  # screened again: the new verdict stands
        p.decisions.append(FilterDecision(STEP, kept, reason))
        self._records[p.id] = ScreenRecord(
            problem_id=p.id,
            kept=kept,
            reason=reason,
            question_type=p.question_type,
            verdict=asdict(out.verdict) if out.verdict else None,
            failure=out.failure,
            attempts=out.attempts,
            model=self.role.engine.model,
            prompt_version=self.prompt.version,
        )

    def _screen(self, problems: list[Problem]) -> dict[str, _Outcome]:
        """Up to ``max_attempts`` batched rounds; round ``a`` asks for sample index ``a``, so a
        retry is a new sample and a re-run replays every round from the store."""
        sp = sampling_of(self.role)
        outcomes = {p.id: _Outcome() for p in problems}
        pending = list({p.id: p for p in problems}.values())  # one request per distinct problem
        for attempt in range(self.cfg.max_attempts):
            if not pending:
                break
            reqs = [GenerationRequest(self._messages(p), 1, sp) for p in pending]
            replies = self.generator.run(
                reqs, stage=self.name, prompt_version=self.prompt.version, first_sample=attempt
            )
            still = []
            for p, (r,) in zip(pending, replies):
                out = outcomes[p.id]
                out.attempts = attempt + 1
                try:
                    out.verdict, out.failure = self._verdict(r), ""
                except VerdictError as e:
                    out.failure = str(e)
                    if r.ok:  # an engine failure is no new attempt: the next run asks under this index again
                        still.append(p)
            pending = still
        for p in pending:
            outcomes[p.id].failure += f" (after {self.cfg.max_attempts} attempts)"
        return outcomes

    @staticmethod
    def _verdict(r) -> Verdict:
        """A reply's verdict; a :class:`VerdictError` whose message is the failure reason."""
        answer = answer_or_raise(r, VerdictError)
        try:
            return parse_verdict(answer)
        except VerdictError as e:
            raise VerdictError(f"unparseable_verdict: {e}") from None

    def _messages(self, p: Problem) -> list[dict[str, str]]:
        source, others = source_of(p), others_of(p)
        # the aliases let a user's prompt file (prompt_file) name them as QED-Nano's does
        return self.prompt.render(
            problem=p.statement,
            solution=p.reference_solution or "(none available)",
            source=source,
            path=source,
            others=others,
            candidates=others,
        )
