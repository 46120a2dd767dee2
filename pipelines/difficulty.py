"""Difficulty: k student rollouts per problem, graded against the rubric.

Produces FineProofs-RL's ``scores``, ``rewards``, ``num_rewards``,
``reward_mean`` and ``reward_std`` for each problem. Only valid grades count:
a rollout whose judge failed is left out (``num_rewards`` says how many
counted), never counted as 0. A rollout that produced no answer (empty, or
reasoning that never closed its thinking block) is the student's failure and
scores 0 without a judge call.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from fineproofs.records import Grade, Problem, ProofSample, Rubric
from fineproofs.pipelines.grade import GradeJob, Grader


@dataclass
class Difficulty:
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
        return statistics.fmean(self.rewards) if self.scores else float("nan")

    @property
    def reward_std(self) -> float:
        return statistics.pstdev(self.rewards) if self.scores else float("nan")


@dataclass
class DifficultyResult:
    by_problem: dict[str, Difficulty] = field(default_factory=dict)
    grades: list[Grade] = field(default_factory=list)


def no_answer(sample: ProofSample) -> bool:
    return not sample.proof.strip() or sample.finish_reason == "unterminated"


def estimate_difficulty(
    problems: list[Problem], rubrics: dict[str, Rubric], rollouts: list[ProofSample], judge: Grader
) -> DifficultyResult:
    by_id = {p.id: p for p in problems}
    jobs, zero = [], []
    for s in rollouts:
        if s.problem_id not in rubrics:
            continue
        if no_answer(s):
            zero.append(Grade(s.key, 0, "rule", "ok", reason="no_answer"))
        else:
            jobs.append(GradeJob(by_id[s.problem_id], rubrics[s.problem_id], s))
    grades = judge.run(jobs) + zero
    res = DifficultyResult(grades=grades)
    by_key = {g.sample_key: g for g in grades}
    for s in sorted(rollouts, key=lambda s: (s.problem_id, s.sample_index)):
        g = by_key.get(s.key)
        if g is None:
            continue
        d = res.by_problem.setdefault(s.problem_id, Difficulty(s.problem_id, []))
        if g.score is None:
            d.failed += 1
        else:
            d.scores.append(g.score)
    return res
