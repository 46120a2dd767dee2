"""``fineproofs build``: problems → rubrics → proofs → grades → split → card.

Run directory layout (``--output``)::

    README.md, profile.yaml        dataset card (+ the exact profile used)
    data/<config>/train-*.parquet  the split, in the Hub layout
    store.sqlite                   every LLM completion (durable; re-runs reuse it)
    problems/problems.jsonl        the ingested problem set
    quarantine/*.jsonl             everything dropped, with its reason
    stages/*.jsonl                 intermediate records of each LLM stage
    build.json                     counts, timings, generation statistics

Every LLM stage goes through the response store, so a re-run of a finished
build performs zero generations and reproduces the same rows (completions that
failed at the engine, e.g. a server that stayed down, are stored as failures and
retried by the next run; those are the only requests a re-run sends).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from fineproofs.config import Profile
from fineproofs.engines import EnginePool
from fineproofs.generation import CachedGenerator
from fineproofs.records import Problem, sft_column_names
from fineproofs.store import ResponseStore
from fineproofs.pipelines.card import write_card
from fineproofs.pipelines.difficulty import estimate_difficulty
from fineproofs.pipelines.distill import ProofGenerator
from fineproofs.pipelines.grade import GradeJob, Grader
from fineproofs.pipelines.rubrics import RubricWriter
from fineproofs.pipelines.splits import build_rl, build_sft

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


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".jsonl.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def preflight(profile: Profile, split: str) -> None:
    """Fail early, naming the server each role needs, before any work is done."""
    roles = ["rubric_writer", "student", "judge"] + (["teacher", "grader"] if split == "sft" else [])
    problems = []
    for role in roles:
        eng = getattr(profile, role).engine
        if eng.kind == "http":
            from fineproofs.engines.http_engine import HTTPEngine

            engine = HTTPEngine.from_config(eng)
            try:
                engine.preflight()
            except RuntimeError as e:
                problems.append(f"- {role} ({eng.model}): {e}")
            finally:
                engine.close()
        elif eng.kind == "vllm":
            import importlib.util

            if importlib.util.find_spec("vllm") is None:  # checked without importing it (slow, GPU-bound)
                problems.append(
                    f"- {role} ({eng.model}) runs on in-process vLLM, which is not installed: "
                    "`pip install 'fineproofs[vllm]'` on a GPU machine, or set "
                    f"{role}.engine.kind: http with the endpoints of a running `vllm serve {eng.model}`"
                )
    if problems:
        raise RuntimeError(f"profile {profile.name!r} cannot run here:\n" + "\n".join(problems))


class Build:
    """One build of one split into one run directory."""

    def __init__(
        self,
        profile: Profile,
        out_dir: str | Path,
        split: str = "rl",
        *,
        benchmarks: list[str] | None = None,
        limit: int | None = None,
        progress: bool = True,
        executor: str = "local",
    ):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.profile = profile
        self.out_dir = Path(out_dir)
        self.split = split
        self.benchmarks = benchmarks
        self.limit = limit if limit is not None else profile.limit
        self.progress = progress
        self.executor = executor

    def run(self) -> BuildResult:
        from fineproofs.pipelines.ingest import run_ingest

        t0 = time.time()
        p = self.profile
        preflight(p, self.split)
        res = BuildResult(self.out_dir, self.split)
        ing = run_ingest(p, self.out_dir, benchmarks=self.benchmarks, limit=self.limit, executor=self.executor)
        problems: list[Problem] = ing.problems
        res.counts.update(ing.counts)
        if self.limit and self.limit < ing.counts.get("decontaminated", len(problems)):
            res.counts["limit"] = len(problems)
        res.dropped.update(ing.dropped)
        res.decontaminated = ing.decontaminated
        quarantine: list[dict] = []

        pool = EnginePool()
        store = ResponseStore(self.out_dir / "store.sqlite")
        gens: dict[str, CachedGenerator] = {}

        def failed(stage: str, reasons: dict[str, str], key: str = "sample") -> None:
            """Count a stage's quarantined items by reason and keep each with its reason."""
            res.dropped[stage] = _reasons(reasons.values())
            quarantine.extend({"stage": stage, key: k, "reason": why} for k, why in reasons.items())

        def gen(role: str) -> CachedGenerator:
            eng = pool.get(getattr(p, role).engine)
            return gens.setdefault(role, CachedGenerator(eng, store, progress=self.progress))

        try:
            rub = RubricWriter(p.rubric_writer, p.rubrics, gen("rubric_writer")).run(problems)
            res.counts["rubrics"] = len(rub.rubrics)
            failed("rubrics", rub.failures, "problem_id")
            write_jsonl(self.out_dir / "stages" / "rubrics.jsonl",
                        ({"problem_id": k, "rubric": r.render(), "attempts": rub.attempts[k]} for k, r in sorted(rub.rubrics.items())))
            with_rubric = [x for x in problems if x.id in rub.rubrics]

            student = ProofGenerator("student", p.student, "rollout", gen("student"), p.student_samples)
            rollouts = student.run(with_rubric)
            res.counts["rollouts"] = len(rollouts)
            failed("rollouts", {k: f"engine_failure: {r}" for k, r in student.failures.items()})
            judge = Grader("judge", p.judge, p.grading, gen("judge"))
            diff = estimate_difficulty(problems, rub.rubrics, rollouts, judge)
            res.counts["rollout_grades"] = sum(1 for g in diff.grades if g.score is not None)
            failed("rollout_grades", {g.sample_key: g.reason for g in diff.grades if g.score is None})
            write_jsonl(self.out_dir / "stages" / "rollouts.jsonl", (dataclasses.asdict(s) for s in rollouts))
            write_jsonl(self.out_dir / "stages" / "rollout_grades.jsonl", (dataclasses.asdict(g) for g in diff.grades))

            rename: dict[str, str] = {}
            if self.split == "rl":
                split = build_rl(problems, rub.rubrics, diff.by_problem, p.splits.rl, self.out_dir)
            else:
                teacher = ProofGenerator("teacher", p.teacher, "distill", gen("teacher"), p.teacher_samples)
                proofs = teacher.run(problems)
                res.counts["distilled"] = len(proofs)
                failed("distilled", {k: f"engine_failure: {r}" for k, r in teacher.failures.items()})
                grader = Grader("grader", p.grader, p.grading, gen("grader"))
                by_id = {x.id: x for x in problems}
                grades = grader.run([GradeJob(by_id[s.problem_id], rub.rubrics.get(s.problem_id), s) for s in proofs])
                res.counts["proof_grades"] = sum(1 for g in grades if g.score is not None)
                failed("proof_grades", {g.sample_key: g.reason for g in grades if g.score is None})
                write_jsonl(self.out_dir / "stages" / "distill.jsonl", (dataclasses.asdict(s) for s in proofs))
                write_jsonl(self.out_dir / "stages" / "proof_grades.jsonl", (dataclasses.asdict(g) for g in grades))
                rename = sft_column_names(p.splits.column_naming, p.grader.engine.model_label,
                                          p.student.engine.model_label, p.student_samples)
                split = build_sft(problems, proofs, grades, diff.by_problem, p.splits.sft, self.out_dir, rename)
            res.rows = split.rows
            if not split.rows.get("default"):
                log.warning("!!! the %s split has NO rows: every problem was dropped (see the table below and "
                            "%s); an empty split cannot be loaded with datasets or pushed", self.split,
                            self.out_dir / "quarantine")
            res.counts["split"] = split.rows["default"]
            res.dropped["split"] = split.dropped
            write_jsonl(self.out_dir / "quarantine" / "llm.jsonl", quarantine)
            res.card = write_card(
                self.out_dir, split=self.split, profile=p, rows=split.rows, counts=res.counts, dropped=res.dropped,
                decontaminated=ing.decontaminated, decontam_report=ing.decontam_report,
                rubrics_text=[r.render() for r in rub.rubrics.values()],
                source_licences={x.source: x.licence or "unknown" for x in problems},
                rename=rename, benchmark_args=list(self.benchmarks or p.decontamination.benchmarks),
                limit=self.limit,
            )
        finally:
            store.close()
            pool.close()
        res.generated = sum(g.stats.generated for g in gens.values())
        res.cached = sum(g.stats.cached for g in gens.values())
        res.seconds = time.time() - t0
        manifest = {
            "split": self.split, "profile": p.name, "counts": res.counts, "dropped": res.dropped, "rows": res.rows,
            "generated": res.generated, "cached": res.cached, "seconds": round(res.seconds, 2),
            "decontaminated": res.decontaminated,
        }
        tmp = self.out_dir / "build.json.tmp"
        tmp.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        os.replace(tmp, self.out_dir / "build.json")
        return res


def _kind(reason: str) -> str:
    return reason.split(":", 1)[0] if reason else "unknown"


def _reasons(reasons: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in reasons:
        k = _kind(r)
        out[k] = out.get(k, 0) + 1
    return out
