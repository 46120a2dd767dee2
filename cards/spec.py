"""What the dataset card says of each split: :data:`CARDS`, one :class:`CardSpec` per split.

A split's recipe (:data:`fineproofs.pipelines.recipes.RECIPES`) names its card here;
the card writer (:mod:`fineproofs.cards.card`) and the statistics
(:mod:`fineproofs.cards.stats`) ask the spec instead of branching on the split's
name: its configs and their features, Hub tags, the model roles and prompts listed,
the profile section with its thresholds, how its rows are recognised and where its
grades and rewards are read from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fineproofs import rundir
from fineproofs.config import Profile
from fineproofs.errors import DataError
from fineproofs.records import RL_FEATURES, SFTRow, features_of

ROLES = ("teacher", "grader", "rubric_writer", "student", "judge")


@dataclass(frozen=True)
class Series:
    """The columns the statistics are computed from (polars): every grade, the reward
    per problem, and (source, category, problem) per problem and per row."""

    grades: Any
    rewards: Any
    per_problem: Any
    samples: Any


@dataclass(frozen=True)
class CardSpec:
    """The card of one split. ``features(rename)``: its rows' ``datasets.Features``;
    ``prompts(profile, pick)``: the prompts its stages use beyond the common ones;
    ``marker``: a column only its rows have (None: rows no other spec claims);
    ``series(frames, run_dir)``: the columns its statistics read; ``unit``: what a grade
    is given to; ``grades_note`` / ``reward_note``: what the two histograms count;
    ``grade_labels``: whether grades are labelled correct / incomplete."""

    split: str
    configs: tuple[str, ...]
    features: Callable[[dict[str, str]], Any]
    tags: tuple[str, ...]
    roles: tuple[str, ...]
    series: Callable[[dict[str, Any], Path], Series]
    unit: str
    grades_note: str
    reward_note: str
    marker: str | None = None
    grade_labels: bool = False
    prompts: Callable[[Profile, Callable[[str], str]], dict[str, str]] = lambda profile, pick: {}

    def thresholds(self, profile: Profile):
        """The profile's selection thresholds of this split (``splits.<split>``)."""
        return getattr(profile.splits, self.split)


def card_spec(split: str | CardSpec) -> CardSpec:
    """The card of the split named (a card given is its own)."""
    if isinstance(split, CardSpec):
        return split
    try:
        return CARDS[split]
    except KeyError:
        raise DataError(f"no card for a split named {split!r} (there are {', '.join(CARDS)})") from None


def detect_split(frames: dict[str, Any]) -> str:
    """The split whose rows ``frames`` hold (``unknown`` without rows)."""
    for f in frames.values():
        return next(s.split for s in CARDS.values() if s.marker is None or s.marker in f.columns)
    return "unknown"


def grade_column(frame) -> str | None:
    return next((c for c in frame.columns if c.endswith("-grade")), None)


def reward_column(frame) -> str | None:
    return next((c for c in frame.columns if "-reward@" in c), None)


def problem_categories(run_dir: Path):
    """statement -> category from the run's problem set (RL rows have no category)."""
    import polars as pl

    path = Path(run_dir) / rundir.PROBLEMS
    rows = []
    for i, (_, _, d) in enumerate(rundir.read_records(path, offsets=True), 1):
        if not (isinstance(d.get("statement", ""), str) and isinstance(d.get("category") or "", str)):
            raise DataError(f"{path}: record {i} is damaged (not a problem record); re-run the build to rewrite it")
        rows.append({"problem": d.get("statement", ""), "category": d.get("category") or "unknown"})
    return pl.DataFrame(rows, schema={"problem": pl.String, "category": pl.String}).unique("problem", keep="first")


def _sft_series(frames: dict[str, Any], run_dir: Path) -> Series:
    import polars as pl

    default = frames.get("default")
    every = frames.get("all", default)
    gcol, rcol = grade_column(every), reward_column(default)
    return Series(
        grades=every[gcol] if gcol else pl.Series([], dtype=pl.Int64),
        rewards=default[rcol] if rcol else pl.Series([], dtype=pl.Float64),
        per_problem=default.select("source", "category", "problem"),
        samples=every.select("source", "category", "problem"),
    )


def _rl_series(frames: dict[str, Any], run_dir: Path) -> Series:
    import polars as pl

    default = frames.get("default")
    per_problem = (
        default.select("source", "problem")
        .join(problem_categories(run_dir), on="problem", how="left")
        .with_columns(pl.col("category").fill_null("unknown"))
    )
    return Series(default["scores"].explode().drop_nulls(), default["reward_mean"], per_problem, per_problem)


def _distill_prompts(profile: Profile, pick: Callable[[str], str]) -> dict[str, str]:
    """The prompts of the SFT stages beyond the RL ones (category, distillation, grading)."""
    out = {"category": pick("category")} if profile.category.classifier == "llm" else {}
    out["distill"] = pick("distill")
    if profile.grading.grader_scale != "rubric":
        out["eval_grade"] = pick("eval_grade")
    return out


CARDS: dict[str, CardSpec] = {
    "rl": CardSpec(
        split="rl",
        configs=("default",),
        features=lambda rename: RL_FEATURES,
        tags=("rubrics", "reinforcement-learning", "grpo"),
        roles=("rubric_writer", "student", "judge"),
        series=_rl_series,
        unit="rollouts",
        grades_note="judge grades of every graded student rollout",
        reward_note="`reward_mean` per problem",
        marker="rubrics",
    ),
    "sft": CardSpec(
        split="sft",
        configs=("default", "all"),
        features=lambda rename: features_of(SFTRow, rename),
        tags=("distillation", "sft", "reasoning"),
        roles=ROLES,
        series=_sft_series,
        unit="samples",
        grades_note="grader grades of the kept samples (config `all`)",
        reward_note="mean reward (grade/7) of the student over its graded rollouts, per problem (config `default`)",
        grade_labels=True,
        prompts=_distill_prompts,
    ),
}
