"""A split is a recipe: its LLM stages, judging roles, inputs, writer and card.

:data:`RECIPES` holds one :class:`Recipe` per split (``rl``, ``sft``). The build
(:class:`~fineproofs.pipelines.build.Build`), the shard merge, the command line and
the card ask the recipe of their split what to run, which judges to calibrate, which
stage files to read back, how to write the rows and which card to write; nothing else
branches on the split's name. A new split is a new entry here (and its card in
:data:`fineproofs.cards.spec.CARDS`).

FineProofs-SFT extends FineProofs-RL: its stages are the RL stages (the difficulty of
a problem is the SFT ``reward`` column) followed by category, teacher distillation
and grading by the ``grader`` role.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fineproofs.cards.spec import CARDS, CardSpec
from fineproofs.config import Profile
from fineproofs.errors import ConfigError
from fineproofs.judging import Grader
from fineproofs.pipelines.calibration import calibrate_roles
from fineproofs.pipelines.category import CategoryStage
from fineproofs.pipelines.difficulty import DifficultyStage
from fineproofs.pipelines.distill import ProofGenerator
from fineproofs.pipelines.grade import GradeStage
from fineproofs.pipelines.problem_filter import ProblemFilter, filter_roles
from fineproofs.pipelines.rubrics import RubricWriter
from fineproofs.pipelines.splits import RL_INPUTS, SFT_INPUTS, SplitInputs, SplitResult, build_rl, build_sft
from fineproofs.pipelines.stage import Stage
from fineproofs.records import sft_column_names

# gen(role) -> the role's CachedGenerator (one per stage; engines shared)
Gen = Callable[[str], Any]


@dataclass(frozen=True)
class Recipe:
    """What makes one split. ``stages(profile, gen)``: its LLM stages in order;
    ``steps(profile)``: the response-store stage names of those that ask a model, in
    the same order (known before any generator exists, for the progress lines);
    ``roles``: the model roles the stages talk to (the problem filter's added when it
    is on); ``judging``: the roles calibrated against human grades before the build;
    ``inputs``: the stage files the writer reads back; ``write(inputs, profile,
    out_dir)``: the rows, as parquet in the Hub layout; ``rename(profile)``: the
    column names the rows carry; ``card``: what the dataset card says of the split."""

    name: str
    stages: Callable[[Profile, Gen], list[Stage]]
    steps: Callable[[Profile], list[str]]
    roles: tuple[str, ...]
    judging: tuple[str, ...]
    inputs: tuple[str, ...]
    write: Callable[[SplitInputs, Profile, Path], SplitResult]
    rename: Callable[[Profile], dict[str, str]] = field(default=lambda profile: {})
    card: CardSpec | None = None

    def roles_of(self, profile: Profile) -> list[str]:
        """The roles a build of this split with ``profile`` talks to."""
        return [*self.roles, *filter_roles(profile)]

    def calibrate(self, profile: Profile, out_dir: str | Path, **kw) -> dict:
        """Measure this split's judging roles against human grades (a judge that misses its
        thresholds stops the build here, before the expensive stages)."""
        return calibrate_roles(profile, out_dir, roles=self.judging, **kw)


def recipe(split: str | Recipe) -> Recipe:
    """The recipe of ``split`` (a recipe given is its own), or a :class:`ConfigError`
    naming the splits there are."""
    if isinstance(split, Recipe):
        return split
    try:
        return RECIPES[split]
    except KeyError:
        raise ConfigError(f"split must be one of {tuple(RECIPES)}, got {split!r}") from None


# ---------------------------------------------------------------------------
# FineProofs-RL: rubrics, k student rollouts graded by the judge, difficulty
# ---------------------------------------------------------------------------


def rl_stages(p: Profile, gen: Gen) -> list[Stage]:
    files = p.prompts
    return [
        *([ProblemFilter.from_profile(p, gen)] if p.problem_filter.enabled else []),
        RubricWriter(p.rubric_writer, p.rubrics, gen("rubric_writer"), files),
        ProofGenerator("student", p.student, "rollout", gen("student"), p.student_samples,
                       think_opened=p.grading.require_thinking_close, prompt_files=files),
        GradeStage(Grader("judge", p.judge, p.grading, gen("judge"), prompt_files=files), "rollouts",
                   zero_no_answer=True),
        DifficultyStage(),
    ]  # fmt: skip


def rl_steps(p: Profile) -> list[str]:
    return [*(["problem_filter"] if p.problem_filter.enabled else []), "rubrics", "rollouts", "grade_judge"]


def write_rl(inputs: SplitInputs, p: Profile, out_dir: Path) -> SplitResult:
    return build_rl(inputs.problems, inputs.rubrics, inputs.difficulty, p.splits.rl, out_dir, inputs.screened)


# ---------------------------------------------------------------------------
# FineProofs-SFT: the RL stages, then category, teacher distillation and grading
# ---------------------------------------------------------------------------


def sft_stages(p: Profile, gen: Gen) -> list[Stage]:
    files = p.prompts
    return [
        *rl_stages(p, gen),
        CategoryStage.from_profile(p, gen),
        ProofGenerator("teacher", p.teacher, "distill", gen("teacher"), p.teacher_samples, prompt_files=files),
        GradeStage(Grader("grader", p.grader, p.grading, gen("grader"), prompt_files=files), "proofs",
                   zero_no_answer=False),
    ]  # fmt: skip


def sft_steps(p: Profile) -> list[str]:
    return [*rl_steps(p), *(["category"] if p.category.classifier == "llm" else []), "distill", "grade_grader"]


def sft_rename(p: Profile) -> dict[str, str]:
    return sft_column_names(
        p.splits.column_naming, p.grader.engine.model_label, p.student.engine.model_label, p.student_samples
    )


def write_sft(inputs: SplitInputs, p: Profile, out_dir: Path) -> SplitResult:
    return build_sft(
        inputs.problems,
        inputs.proofs,
        inputs.grades,
        inputs.difficulty,
        p.splits.sft,
        out_dir,
        sft_rename(p),
        inputs.texts,
        inputs.categories,
        inputs.uncategorised,
    )


RECIPES: dict[str, Recipe] = {
    "rl": Recipe(
        name="rl",
        stages=rl_stages,
        steps=rl_steps,
        roles=("rubric_writer", "student", "judge"),
        judging=("judge",),
        inputs=RL_INPUTS,
        write=write_rl,
        card=CARDS["rl"],
    ),
    "sft": Recipe(
        name="sft",
        stages=sft_stages,
        steps=sft_steps,
        roles=("rubric_writer", "student", "judge", "teacher", "grader"),
        judging=("judge", "grader"),
        inputs=SFT_INPUTS,
        write=write_sft,
        rename=sft_rename,
        card=CARDS["sft"],
    ),
}
