"""The ``category`` stage: FineProofs-SFT's ``category`` column for every problem.

The published rows name the problem type (the card: "Algebra, Combinatorics, Number
Theory, Geometry"; :data:`fineproofs.records.PUBLISHED_CATEGORIES`). A problem gets one
of the profile's ``category.labels`` (those four by default) in this order:

1. **rule from the source's tags** (``category.use_source_tags``): a category the source
   itself gives (AI-MO/olympiads' ``problem_type``, a wiki page's category link, a
   booklet section) is mapped onto the labels by :func:`from_tags` (``Inequalities`` and
   ``Functional Equations`` are Algebra, ``Probability`` and ``Logic and Puzzles``
   Combinatorics, ...). A tag the rule cannot place is not used.
2. **the classifier** (``category.classifier``):

   - ``llm`` (``paper``): the profile's ``category.role`` reads the statement with the
     ``category`` prompt and answers ``{"category": "<label>"}``; with
     ``category.structured`` the request carries that JSON schema (an enum of the labels:
     ``response_format`` on HTTP servers, a grammar on the transformers engine). Every
     request goes through the response store like any LLM stage. The final answer (never
     the reasoning) must be exactly that object, bare or in one fenced block, with a
     label spelled as listed (case and spacing are forgiven); anything else is
     ``unparseable_category`` and is asked again under the next sample index, up to
     ``category.max_attempts``. Then ``category.on_failure`` decides: ``rule`` gives the
     keyword rule's label (recorded as ``method: keywords_after_failure`` with the last
     failure, counted in the build summary), ``quarantine`` quarantines the problem with
     the reason and the SFT split drops its samples (``no_category``).
   - ``rule`` (``embedded``): the keyword rule :func:`from_keywords`, which always answers.

So no row is ever written with an empty category. The stage file
``stages/category.jsonl`` holds one record per problem (category, method, attempts, the
last failure); :func:`fineproofs.pipelines.splits.read_inputs` reads it back, so a merge
of shards gives the same rows. The stage runs in SFT builds only (RL rows carry no
category).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fineproofs import prompts
from fineproofs.config import CategoryConfig, Profile, RoleConfig
from fineproofs.engines.base import GenerationRequest, SamplingParams, sampling_of
from fineproofs.generation import CachedGenerator
from fineproofs.pipelines.stage import Failed, LLMStage, Tally, Work
from fineproofs.records import CategoryRecord, Problem
from fineproofs.replies import answer_of

log = logging.getLogger(__name__)

STEP = "category"

# a source's own subject tag -> the published label (lower-case stems, checked in order)
_TAG_RULES: tuple[tuple[str, str], ...] = (
    ("number theor", "Number Theory"),
    ("divisib", "Number Theory"),
    ("arithmetic", "Number Theory"),
    ("geometr", "Geometry"),
    ("trigonometr", "Geometry"),
    ("combinator", "Combinatorics"),
    ("counting", "Combinatorics"),
    ("probabilit", "Combinatorics"),
    ("graph", "Combinatorics"),
    ("logic", "Combinatorics"),
    ("puzzle", "Combinatorics"),
    ("game", "Combinatorics"),
    ("algebra", "Algebra"),
    ("inequalit", "Algebra"),
    ("functional", "Algebra"),
    ("polynomial", "Algebra"),
    ("sequence", "Algebra"),
    ("calculus", "Algebra"),
    ("analysis", "Algebra"),
)

# words of a statement that point at an area, with their weights (the keyword rule)
_KEYWORDS: dict[str, tuple[tuple[str, float], ...]] = {
    "Geometry": (
        (r"triangle", 2),
        (r"circle|circum|incircle|excircle", 2),
        (r"angle", 1.5),
        (r"quadrilateral", 2),
        (r"tangent", 1.5),
        (r"perpendicular|parallel(?:ogram)?", 1.5),
        (r"midpoint|segment", 1),
        (r"polygon|hexagon|pentagon", 1),
        (r"\\angle|\\triangle|\\odot", 2),
        (r"orthocent|centroid|incent|circumcent", 2),
        (r"collinear|concurrent|concyclic|cyclic", 2),
    ),
    "Number Theory": (
        (r"prime", 2),
        (r"divisib|divides|divisor|\\mid\b", 2),
        (r"integer", 1),
        (r"\\pmod|modulo|\bmod\b", 2),
        (r"gcd|lcm|coprime|relatively prime", 2),
        (r"digit", 1.5),
        (r"perfect (?:square|power|cube)", 1.5),
        (r"congruen", 1.5),
        (r"\\mathbb\{[NZ]\}", 1),
        (r"natural number|positive integer", 1),
    ),
    "Combinatorics": (
        (r"how many|number of ways|count", 1.5),
        (r"colou?r", 2),
        (r"graph|vertex|vertices|edges?\b", 1.5),
        (r"game|player|move|turn\b|strateg", 2),
        (r"board|grid|chessboard|cells?\b|tiling|domino", 2),
        (r"subset|permutation|arrangement|sequence of moves", 1.5),
        (r"tournament|team|people|friends", 1.5),
        (r"cards?\b|coins?\b|boxes|balls", 1.5),
    ),
    "Algebra": (
        (r"inequalit|\\geq?\b|\\leq?\b|\\ge\b|\\le\b", 1.5),
        (r"polynomial", 2),
        (r"functions?\b|f\(", 1.5),
        (r"real numbers|positive reals|\\mathbb\{R\}", 1.5),
        (r"sequence|a_\{?n", 1),
        (r"equation|system", 1),
        (r"\\sum|\\prod", 1),
        (r"maximum|minimum|max|min\b", 0.5),
    ),
}
_COMPILED = {k: tuple((re.compile(p, re.I), w) for p, w in v) for k, v in _KEYWORDS.items()}


def from_tags(tag: str, labels: tuple[str, ...] | list[str]) -> str | None:
    """The label a source's own subject tag names, or ``None`` when the rule cannot tell
    (an empty tag, ``Other``, a tag of no area)."""
    t = " ".join((tag or "").lower().split())
    if not t:
        return None
    for label in labels:  # the tag is already a label (any case)
        if t == label.lower():
            return label
    for stem, label in _TAG_RULES:
        if stem in t and label in labels:
            return label
    return None


def from_keywords(statement: str, labels: tuple[str, ...] | list[str]) -> str:
    """The keyword rule: the label whose words weigh most in the statement; a tie or no
    word at all goes to the label listed first among the tied (Algebra by default).
    Always answers, so a row never has an empty category."""
    scores = dict.fromkeys(labels, 0.0)
    for label, pats in _COMPILED.items():
        if label in scores:
            scores[label] = sum(w * min(3, len(p.findall(statement))) for p, w in pats)
    best = max(scores.values())
    return next(label for label in labels if scores[label] == best)


class CategoryError(ValueError):
    """A classifier reply that names no valid category (the message says why)."""


def category_schema(labels: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """The JSON schema of a classifier reply: ``{"category": <one of labels>}``."""
    return {
        "type": "object",
        "properties": {"category": {"type": "string", "enum": list(labels)}},
        "required": ["category"],
        "additionalProperties": False,
    }


_FENCE = re.compile(r"^```[ \t]*(?:json)?[ \t]*\n(.*?)\n?```$", re.S | re.I)


def parse_category(answer: str, labels: tuple[str, ...] | list[str]) -> str:
    """The label of a classifier's final answer: exactly ``{"category": "<label>"}``, bare
    or in one fenced block; case and inner spacing of the label are forgiven."""
    text = answer.strip()
    if m := _FENCE.match(text):
        text = m.group(1).strip()
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise CategoryError(f"not one JSON object ({str(e).split(':')[0]})") from None
    if not isinstance(obj, dict) or set(obj) != {"category"}:
        raise CategoryError(f"the object must hold exactly the key 'category', got {obj!r:.80}")
    value = obj["category"]
    if not isinstance(value, str):
        raise CategoryError(f"category must be text, got {value!r:.40}")
    norm = " ".join(value.split()).lower()
    for label in labels:
        if norm == label.lower():
            return label
    raise CategoryError(f"{value!r:.40} is not one of {list(labels)}")


@dataclass
class Decision:
    category: str = ""
    method: str = ""  # tags | llm | keywords | keywords_after_failure | "" (quarantined)
    attempts: int = 0
    failure: str = ""


class CategoryStage(LLMStage):
    """The ``category`` stage (see the module docstring): a category per problem, by the
    source's tags, the classifier, or the keyword rule; a :class:`Failed` for a problem
    quarantined under ``on_failure: quarantine``."""

    name = STEP
    record = CategoryRecord
    key_name = "problem_id"

    def __init__(
        self,
        cfg: CategoryConfig,
        role: RoleConfig | None = None,
        generator: CachedGenerator | None = None,
        prompt_files: dict[str, str] | None = None,
    ):
        if cfg.classifier == "llm" and (role is None or generator is None):
            raise ValueError("the llm classifier needs a role and its generator")
        self.cfg = cfg
        self.labels = tuple(cfg.labels)
        self.role = role
        self.generator = generator
        self.prompt = prompts.pick(STEP, prompt_files)
        self.tally = Tally()
        self._records: dict[str, CategoryRecord] = {}

    @classmethod
    def from_profile(cls, profile: Profile, gen) -> CategoryStage:
        """The stage of ``profile``; ``gen(role)`` gives a role's generator (as in ``Build.stages``)."""
        cfg = profile.category
        if cfg.classifier != "llm":
            return cls(cfg, prompt_files=profile.prompts)
        return cls(cfg, getattr(profile, cfg.role), gen(cfg.role), profile.prompts)

    @property
    def prompt_version(self) -> str:
        return f"{self.prompt.version}+json" if self.cfg.structured else self.prompt.version

    def sampling(self) -> SamplingParams:
        sp = sampling_of(self.role)
        return dataclasses.replace(sp, json_schema=category_schema(self.labels)) if self.cfg.structured else sp

    def process(self, chunk: list[Work]) -> Iterator[Work | Failed]:
        todo = [w for w in chunk if not w.dropped]
        decisions: dict[str, Decision] = {}
        ask: list[Problem] = []
        for w in todo:
            label = from_tags(w.problem.category, self.labels) if self.cfg.use_source_tags else None
            if label:
                decisions[w.id] = Decision(label, "tags")
            elif self.cfg.classifier == "llm":
                ask.append(w.problem)
            else:
                decisions[w.id] = Decision(from_keywords(w.problem.statement, self.labels), "keywords")
        if ask:
            decisions.update(self._classify(ask))
        for w in chunk:
            d = decisions.get(w.id)
            if d is None:
                yield w
                continue
            self.tally.add(f"by_{d.method}" if d.method else "quarantined")
            if not d.method or d.failure.startswith("engine_failure"):
                # quarantined, or a server that failed: the next run asks again (the row, if
                # any, carries the fallback category meanwhile)
                yield Failed(w.id, d.failure)
            self._records[w.id] = CategoryRecord(
                problem_id=w.id,
                category=d.category,
                method=d.method or "quarantined",
                attempts=d.attempts,
                failure=d.failure,
                model=self.role.engine.model if d.attempts and self.role else "",
                prompt_version=self.prompt_version if d.attempts else "",
            )
            yield w

    def records(self, work: Work) -> list[dict[str, Any]]:
        rec = self._records.pop(work.id, None)
        return [rec.to_dict()] if rec else []

    def _classify(self, problems: list[Problem]) -> dict[str, Decision]:
        """Up to ``max_attempts`` batched rounds; round ``a`` asks for sample index ``a`` (a
        retry is a new sample; a re-run replays every round from the store). An engine
        failure is no attempt: the next run asks again under the same index."""
        sp = self.sampling()
        out = {p.id: Decision() for p in problems}
        pending = list({p.id: p for p in problems}.values())
        for attempt in range(self.cfg.max_attempts):
            if not pending:
                break
            reqs = [
                GenerationRequest(self.prompt.render(problem=p.statement, labels=", ".join(self.labels)), 1, sp)
                for p in pending
            ]
            replies = self.generator.run(
                reqs, stage=self.name, prompt_version=self.prompt_version, first_sample=attempt
            )
            still = []
            for p, (r,) in zip(pending, replies):
                d = out[p.id]
                d.attempts = attempt + 1
                if not r.ok:
                    d.failure = f"engine_failure: {r.reason}"
                    continue
                answer = answer_of(r.text, r.reasoning)
                try:
                    if answer is None:
                        raise CategoryError("the reply ended inside its reasoning")
                    d.category, d.method, d.failure = parse_category(answer, self.labels), "llm", ""
                except CategoryError as e:
                    d.failure = f"unparseable_category: {e}"
                    still.append(p)
            pending = still
        for p in problems:
            d = out[p.id]
            if d.method:
                continue
            if d.failure.startswith("unparseable_category"):
                d.failure += f" (after {self.cfg.max_attempts} attempts)"
            log.info("category of %s: classifier failed (%s)", p.id, d.failure)
            if self.cfg.on_failure == "rule":
                d.category, d.method = from_keywords(p.statement, self.labels), "keywords_after_failure"
        return out
