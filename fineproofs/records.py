"""Records that flow between stages, defined once.

Every record is a dataclass; its ``datasets.Features`` are derived from the type
hints by :func:`features_of`, so the Hub schema and the Python type can never drift
apart. The two published row types, :class:`SFTRow` and :class:`RLRow`, reproduce
lm-provers/FineProofs-SFT and lm-provers/FineProofs-RL column for column.

Column naming rule for the two model-named SFT columns (see :func:`sft_column_names`):
by default the published names are kept (``gemini-3-pro-grade``,
``qwen3-4b-thinking-reward@128``) so existing code reads a rebuilt dataset as is, and
the models actually used go into the card's provenance. With
``column_naming: models`` the names become ``<grader label>-grade`` and
``<student label>-reward@<k>``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import statistics
import types
import typing
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Literal

import datasets

from fineproofs.rubric import Rubric, RubricItem  # noqa: F401  (re-exported: records of every stage)

PUBLISHED_GRADER_LABEL = "gemini-3-pro"
PUBLISHED_STUDENT_LABEL = "qwen3-4b-thinking"
PUBLISHED_K = 128
# FineProofs-SFT's ``category`` values: the problem types its card names ("Algebra,
# Combinatorics, Number Theory, Geometry"). Every SFT row carries one of them.
PUBLISHED_CATEGORIES = ("Algebra", "Combinatorics", "Geometry", "Number Theory")

# ---------------------------------------------------------------------------
# features from type hints
# ---------------------------------------------------------------------------

_SCALARS = {str: "string", int: "int64", float: "float64", bool: "bool"}


def _feature_for(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"unsupported union {tp}")
        return _feature_for(args[0])
    if origin is list:
        (inner,) = typing.get_args(tp)
        return datasets.List(_feature_for(inner))
    if origin is dict:
        raise TypeError("dict fields have no fixed schema; use a dataclass")
    if origin is Literal:
        return datasets.Value("string")
    if dataclasses.is_dataclass(tp):
        return {f.name: _feature_for(h) for f, h in _hints(tp)}
    if tp in _SCALARS:
        return datasets.Value(_SCALARS[tp])
    raise TypeError(f"no feature for {tp!r}")


def _hints(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls)]


def features_of(cls: type, rename: dict[str, str] | None = None) -> datasets.Features:
    """``datasets.Features`` for a record dataclass (field metadata ``column`` renames)."""
    rename = rename or {}
    out = {}
    for f, hint in _hints(cls):
        name = f.metadata.get("column", f.name)
        out[rename.get(name, name)] = _feature_for(hint)
    return datasets.Features(out)


def to_row(record: Any, rename: dict[str, str] | None = None) -> dict[str, Any]:
    """A record as a Hub row (column names from field metadata, then ``rename``)."""
    rename = rename or {}
    row = {}
    for f in dataclasses.fields(record):
        name = f.metadata.get("column", f.name)
        value = getattr(record, f.name)
        if isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
            value = [dataclasses.asdict(v) for v in value]
        row[rename.get(name, name)] = value
    return row


# ---------------------------------------------------------------------------
# identity
# ---------------------------------------------------------------------------

_WS = re.compile(r"\s+")


def normalise_statement(text: str) -> str:
    """Normal form used for ids and exact dedup: NFKC, math delimiters dropped,
    lower case, whitespace collapsed."""
    t = unicodedata.normalize("NFKC", text)
    t = re.sub(r"\\[()\[\]]|\$+", " ", t)
    t = re.sub(r"\\(left|right|displaystyle|textstyle)\b", "", t)
    t = _WS.sub(" ", t).strip().lower()
    return t


def problem_id(statement: str) -> str:
    """Stable id: content hash of the normalised statement."""
    return hashlib.sha256(normalise_statement(statement).encode()).hexdigest()[:16]


def reason_kind(reason: str) -> str:
    """The kind of a drop reason, for counting: reasons are written ``kind: detail``
    (or ``kind (detail)``); a reason without one counts as ``unspecified``."""
    return (reason or "").split(":", 1)[0].split(" (", 1)[0].strip() or "unspecified"


# ---------------------------------------------------------------------------
# internal records
# ---------------------------------------------------------------------------


@dataclass
class FilterDecision:
    step: str
    kept: bool
    reason: str = ""


@dataclass
class Problem:
    """An olympiad problem after ingest: what every LLM stage starts from."""

    statement: str
    source: str  # dataset-level source tag, e.g. "aops_wiki", "demo_booklet"
    id: str = ""
    url: str = ""
    competition: str = ""
    year: int | None = None
    category: str = ""
    solutions: list[str] = field(default_factory=list)
    answer: str = ""
    question_type: str = "proof"  # "proof" | "answer"
    licence: str = ""
    decisions: list[FilterDecision] = field(default_factory=list)
    # what a forum source posts beside the chosen solution (AI-MO/aops ``candidates``: other
    # solutions and comments) and where it was posted (``metadata.path``): the problem
    # filter reads both, as QED-Nano's filtering prompt does
    candidates: list[str] = field(default_factory=list)
    path: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            self.id = problem_id(self.statement)

    @property
    def reference_solution(self) -> str:
        return self.solutions[0] if self.solutions else ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Problem:
        d = dict(d)
        d["decisions"] = [FilterDecision(**x) for x in d.get("decisions", [])]
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class StageRecord:
    """What a stage writes to its file (``stages/<name>.jsonl``), one line per record:
    ``to_dict`` is the line, ``from_dict`` reads it back (keys it does not know are left out,
    so an older or newer file still reads). The registry of stage files is
    :data:`fineproofs.rundir.STAGE_FILES`."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class ProofSample(StageRecord):
    """One generated proof (teacher distillation or student rollout)."""

    problem_id: str
    role: str  # "teacher" | "student"
    sample_index: int
    model: str
    reasoning_content: str
    proof: str
    finish_reason: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    truncated: bool = False

    @property
    def key(self) -> str:
        return sample_key(self.problem_id, self.role, self.sample_index)


def sample_key(problem_id: str, role: str, sample_index: int) -> str:
    """A proof sample's key (what a :class:`Grade`'s ``sample_key`` names)."""
    return f"{problem_id}:{role}:{sample_index}"


@dataclass
class Grade(StageRecord):
    """A judge's verdict on one proof sample. ``score`` is None when no valid score
    could be obtained: that sample is quarantined, never counted as 0."""

    sample_key: str
    score: int | None
    judge: str
    status: str  # "ok" | "failed"
    reason: str = ""
    flags: list[str] = field(default_factory=list)


@dataclass
class RubricRecord(StageRecord):
    """``stages/rubrics.jsonl``: the rubric text the judge saw, and the attempts it took."""

    problem_id: str
    rubric: str
    attempts: int = 0


@dataclass
class ScreenRecord(StageRecord):
    """``stages/problem_filter.jsonl``: the problem filter's verdict and keep decision."""

    problem_id: str
    kept: bool
    reason: str = ""
    question_type: str = ""
    verdict: dict[str, Any] | None = None
    failure: str = ""
    attempts: int = 0
    model: str = ""
    prompt_version: str = ""


@dataclass
class CategoryRecord(StageRecord):
    """``stages/category.jsonl``: a problem's SFT category (empty: quarantined)."""

    problem_id: str
    category: str = ""
    method: str = ""
    attempts: int = 0
    failure: str = ""
    model: str = ""
    prompt_version: str = ""


def reward_std(rewards: list[float], ddof: int) -> float:
    """Standard deviation of a group's rewards: population (``ddof=0``) or sample
    (``ddof=1``, what the published FineProofs-RL holds); a single reward has std 0."""
    if not rewards:
        return float("nan")
    if ddof == 1:
        return statistics.stdev(rewards) if len(rewards) > 1 else 0.0
    return statistics.pstdev(rewards)


@dataclass
class Difficulty(StageRecord):
    """A problem's valid rollout grades (FineProofs-RL's ``scores`` and what follows):
    ``stages/difficulty.jsonl``."""

    problem_id: str
    scores: list[int]
    failed: int = 0  # rollouts whose grade was quarantined

    @property
    def rewards(self) -> list[float]:
        return [s / 7 for s in self.scores]

    @property
    def num_rewards(self) -> int:
        return len(self.scores)

    @property
    def reward_mean(self) -> float:
        return sum(self.rewards) / len(self.scores) if self.scores else float("nan")

    def std(self, ddof: int = 0) -> float:
        """The rewards' std: population (``ddof=0``, the stage file) or sample (``ddof=1``)."""
        return reward_std(self.rewards, ddof)

    @property
    def reward_std(self) -> float:
        """Population std (the split applies the profile's ``reward_std_ddof``)."""
        return self.std(0)

    def to_dict(self) -> dict[str, Any]:
        """The stage file's line: the grades and what follows from them (null without grades)."""
        return {
            "problem_id": self.problem_id,
            "scores": self.scores,
            "num_rewards": self.num_rewards,
            "failed": self.failed,
            "reward_mean": self.reward_mean if self.scores else None,
            "reward_std": self.reward_std if self.scores else None,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Difficulty:
        return cls(d["problem_id"], list(d["scores"]), d.get("failed", 0))


# ---------------------------------------------------------------------------
# published rows
# ---------------------------------------------------------------------------


@dataclass(kw_only=True)
class Message:
    """A chat turn as FineProofs-SFT stores it: the struct is ``{content, role}``, in that
    order (``datasets`` ignores the order, pyarrow and polars do not: a rebuilt shard must
    concatenate with a published one)."""

    content: str
    role: str


@dataclass
class SFTRow:
    problem: str
    reasoning_content: str
    proof: str
    category: str
    competition: str
    grade: int = field(metadata={"column": f"{PUBLISHED_GRADER_LABEL}-grade"})
    reward: float = field(metadata={"column": f"{PUBLISHED_STUDENT_LABEL}-reward@{PUBLISHED_K}"})
    source: str = ""
    messages: list[Message] = field(default_factory=list)


@dataclass
class RLRow:
    problem: str
    source: str
    rubrics: str
    scores: list[int]
    rewards: list[float]
    num_rewards: int
    reward_mean: float
    reward_std: float


def sft_column_names(
    naming: str = "published", grader_label: str = "", student_label: str = "", k: int = PUBLISHED_K
) -> dict[str, str]:
    """Rename map for the two model-named SFT columns (empty for published names)."""
    if naming == "published":
        return {}
    if naming != "models":
        raise ValueError(f"column_naming must be 'published' or 'models', got {naming!r}")
    return {
        f"{PUBLISHED_GRADER_LABEL}-grade": f"{grader_label}-grade",
        f"{PUBLISHED_STUDENT_LABEL}-reward@{PUBLISHED_K}": f"{student_label}-reward@{k}",
    }


SFT_FEATURES = features_of(SFTRow)
RL_FEATURES = features_of(RLRow)
