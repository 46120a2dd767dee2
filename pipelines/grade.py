"""The grading stages of the build: ``rollout_grades`` (judge, student rollouts) and
``proof_grades`` (grader, teacher proofs). The judge itself (prompt, injection guard,
strict parsing, retries, ensembles) is :class:`fineproofs.judging.Grader`.

A rollout that produced no answer (empty, or reasoning that never closed its
thinking block) is the student's failure and scores 0 by rule, without a judge call.
A proof whose judge never gave a valid score is a :class:`Failed`, never a 0.
"""

from __future__ import annotations

from collections.abc import Iterator

from fineproofs.judging import GradeJob, Grader
from fineproofs.pipelines.stage import Failed, LLMStage, Tally, Work, as_dicts
from fineproofs.records import Grade, ProofSample


def no_answer(sample: ProofSample) -> bool:
    return not sample.proof.strip() or sample.finish_reason == "unterminated"


class GradeStage(LLMStage):
    """Grades the samples in ``Work.<field>`` with one judge role."""

    record = Grade

    def __init__(self, grader: Grader, field: str, *, zero_no_answer: bool):
        self.grader = grader
        self.field = field  # "rollouts" | "proofs"
        self.name = "rollout_grades" if field == "rollouts" else "proof_grades"
        self.zero_no_answer = zero_no_answer
        self.tally = Tally()  # reported beside the stage's counts

    def process(self, chunk: list[Work]) -> Iterator[Work | Failed]:
        jobs: list[tuple[Work, GradeJob]] = []
        for w in chunk:
            if w.dropped or (self.field == "rollouts" and w.rubric is None):
                continue
            for s in getattr(w, self.field):
                if self.zero_no_answer and no_answer(s):
                    self._grades(w)[s.key] = Grade(s.key, 0, "rule", "ok", reason="no_answer")
                    self.tally.add("no_answer_scored_0")
                else:
                    jobs.append((w, GradeJob(w.problem, w.rubric, s)))
        grades = self.grader.run([j for _, j in jobs]) if jobs else []
        for (w, _), g in zip(jobs, grades):
            if g.score is None:
                self._failures(w)[g.sample_key] = g.reason
                yield Failed(g.sample_key, g.reason)
            else:
                self._grades(w)[g.sample_key] = g
        yield from chunk

    def _grades(self, w: Work) -> dict[str, Grade]:
        return w.rollout_grades if self.field == "rollouts" else w.proof_grades

    def _failures(self, w: Work) -> dict[str, str]:
        return w.rollout_failures if self.field == "rollouts" else w.proof_failures

    def records(self, work: Work) -> list[dict]:
        return as_dicts(self._grades(work).values())
