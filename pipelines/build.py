"""``fineproofs build``: problems → rubrics → proofs → grades → split.

The build is an ordered list of :mod:`stages <fineproofs.pipelines.stage>` through
which every problem streams as a :class:`~fineproofs.pipelines.stage.Work` item, and
one :class:`~fineproofs.pipelines.stage.Recorder` that keeps counts, stage files and
quarantine for all of them. Run directory layout (``--output``)::

    README.md, profile.yaml        dataset card (written by fineproofs.cards) and the exact profile used
    data/<config>/train-*.parquet  the split, in the Hub layout
    store.sqlite                   every LLM completion (durable; re-runs reuse it)
    problems/problems.jsonl        the ingested problem set
    quarantine/*.jsonl             everything dropped, with its reason
    stages/*.jsonl                 intermediate records of each LLM stage
    build.json                     counts, timings, generation statistics, what the card needs

Every LLM stage goes through the response store, so a re-run of a finished build
performs zero generations and reproduces the same rows (completions that failed at
the engine, e.g. a server that stayed down, are stored as failures and retried by
the next run; those are the only requests a re-run sends).
"""

from __future__ import annotations

import importlib.util
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from fineproofs import rundir
from fineproofs.config import Profile, public_yaml
from fineproofs.engines import EnginePool
from fineproofs.errors import ConfigError, EngineError
from fineproofs.generation import CachedGenerator
from fineproofs.judging import Grader
from fineproofs.records import sft_column_names
from fineproofs.rubric import rubric_hash
from fineproofs.store import ResponseStore
from fineproofs.pipelines.difficulty import DifficultyStage
from fineproofs.pipelines.distill import ProofGenerator
from fineproofs.pipelines.grade import GradeStage
from fineproofs.pipelines.rubrics import RubricWriter
from fineproofs.pipelines.splits import SplitResult, build_rl, build_sft
from fineproofs.pipelines.stage import Recorder, Stage, Work

log = logging.getLogger(__name__)

SPLITS = ("rl", "sft")


@dataclass
class BuildResult:
    out_dir: Path
    split: str
    counts: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, dict[str, int]] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    generated: int = 0
    cached: int = 0
    seconds: float = 0.0
    card: Path | None = None
    decontaminated: bool = False


def roles_of(split: str) -> list[str]:
    return ["rubric_writer", "student", "judge"] + (["teacher", "grader"] if split == "sft" else [])


def preflight(profile: Profile, split: str) -> None:
    """Fail early, naming the server each role needs, before any work is done."""
    problems = []
    for role in roles_of(split):
        eng = getattr(profile, role).engine
        if eng.kind == "http":
            from fineproofs.engines.http_engine import HTTPEngine

            engine = HTTPEngine.from_config(eng)
            try:
                engine.preflight()
            except EngineError as e:
                problems.append(f"- {role} ({eng.model}): {e}")
            finally:
                engine.close()
        elif eng.kind == "vllm" and importlib.util.find_spec("vllm") is None:  # not imported: slow, GPU-bound
            problems.append(
                f"- {role} ({eng.model}) runs on in-process vLLM, which is not installed: "
                "`pip install 'fineproofs[vllm]'` on a GPU machine, or set "
                f"{role}.engine.kind: http with the endpoints of a running `vllm serve {eng.model}`"
            )
    if problems:
        raise EngineError(f"profile {profile.name!r} cannot run here:\n" + "\n".join(problems))


class Build:
    """One build of one split into one run directory. ``limit`` and ``benchmarks``
    fold into the profile here; everything downstream reads only the profile."""

    def __init__(self, profile: Profile, out_dir: str | Path, split: str = "rl", *,
                 benchmarks: list[str] | None = None, limit: int | None = None, progress: bool = True,
                 executor: str | None = None):
        if split not in SPLITS:
            raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
        self.profile = profile.with_overrides(limit=limit, benchmarks=benchmarks, executor=executor)
        self.out_dir = Path(out_dir)
        self.split = split
        self.progress = progress
        self._gens: dict[str, CachedGenerator] = {}

    def stages(self, gen) -> list[Stage]:
        """The ordered LLM stages of this split; ``gen(role)`` gives a role's generator."""
        p = self.profile
        rl = [
            RubricWriter(p.rubric_writer, p.rubrics, gen("rubric_writer")),
            ProofGenerator("student", p.student, "rollout", gen("student"), p.student_samples),
            GradeStage(Grader("judge", p.judge, p.grading, gen("judge")), "rollouts", zero_no_answer=True),
            DifficultyStage(),
        ]
        if self.split == "rl":
            return rl
        return rl + [
            ProofGenerator("teacher", p.teacher, "distill", gen("teacher"), p.teacher_samples),
            GradeStage(Grader("grader", p.grader, p.grading, gen("grader")), "proofs", zero_no_answer=False),
        ]

    def run(self) -> BuildResult:
        from fineproofs.pipelines.ingest import run_ingest

        t0 = time.time()
        p = self.profile
        preflight(p, self.split)
        rundir.claim(self.out_dir)
        rundir.write_text(self.out_dir / rundir.PROFILE, public_yaml(p))
        res = BuildResult(self.out_dir, self.split)
        ing = run_ingest(p, self.out_dir)
        res.counts.update(ing.counts)
        if p.limit and p.limit < ing.counts.get("decontaminated", len(ing.problems)):
            res.counts["limit"] = len(ing.problems)
        res.dropped.update(ing.dropped)
        res.decontaminated = ing.decontaminated
        pool = EnginePool()
        store = ResponseStore(self.out_dir / rundir.STORE)

        def gen(role: str) -> CachedGenerator:
            return self._gens.setdefault(role, CachedGenerator(pool.get(getattr(p, role).engine), store,
                                                               progress=self.progress))

        try:
            with Recorder(self.out_dir, res.counts, res.dropped) as rec:
                items = (Work(x) for x in ing.problems)
                for stage in self.stages(gen):
                    items = rec.through(stage, items)
                works = list(items)
                split = self._write_split(works)
        finally:
            store.close()
            pool.close()
        res.rows = split.rows
        res.counts["split"] = split.rows["default"]
        res.dropped["split"] = split.dropped
        if not split.rows.get("default"):
            log.warning("!!! the %s split has NO rows: every problem was dropped (see the table below and %s); an "
                        "empty split cannot be loaded with datasets or pushed", self.split, self.out_dir / "quarantine")
        res.generated = sum(g.stats.generated for g in self._gens.values())
        res.cached = sum(g.stats.cached for g in self._gens.values())
        res.seconds = time.time() - t0
        self._write_manifest(res, ing, works)
        return res

    def _write_split(self, works: list[Work]) -> SplitResult:
        p, out = self.profile, self.out_dir
        problems = [w.problem for w in works]
        rubrics = {w.id: w.rubric for w in works if w.rubric is not None}
        difficulty = {w.id: w.difficulty for w in works if w.difficulty is not None}
        if self.split == "rl":
            return build_rl(problems, rubrics, difficulty, p.splits.rl, out)
        proofs = [s for w in works for s in w.proofs]
        grades = [g for w in works for g in w.proof_grades.values()]
        return build_sft(problems, proofs, grades, difficulty, p.splits.sft, out, self.rename)

    @property
    def rename(self) -> dict[str, str]:
        p = self.profile
        if self.split == "rl":
            return {}
        return sft_column_names(p.splits.column_naming, p.grader.engine.model_label, p.student.engine.model_label,
                                p.student_samples)

    def _write_manifest(self, res: BuildResult, ing, works: list[Work]) -> None:
        """``build.json``: the build's counts and everything the card is rendered from."""
        rundir.write_json(self.out_dir / rundir.MANIFEST, {
            "split": self.split, "profile": self.profile.name, "counts": res.counts, "dropped": res.dropped,
            "rows": res.rows, "generated": res.generated, "cached": res.cached, "seconds": round(res.seconds, 2),
            "decontaminated": res.decontaminated, "decontamination": ing.decontam_report,
            "source_licences": {w.problem.source: w.problem.licence or "unknown" for w in works},
            "rename": self.rename, "benchmarks": list(self.profile.decontamination.benchmarks),
            "limit": self.profile.limit,
            "rubric_hash": rubric_hash(w.rubric.render() for w in works if w.rubric is not None),
        })
