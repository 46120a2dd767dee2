"""Rubric generation: a validated 7-point marking scheme per problem.

Round 0 asks the rubric writer for a scheme from problem + reference solution.
Each reply is parsed and validated in code (:mod:`fineproofs.rubric_format`); a
problem whose reply is invalid goes to the next round, which continues the same
conversation with the validation error (``rubric_retry`` prompt). After
``max_attempts`` rounds the problem is quarantined with the last error. All rounds
of all problems are batched, and every reply is in the response store, so a
re-run replays the same decisions without generating.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from fineproofs import prompts
from fineproofs.config import RoleConfig, RubricConfig
from fineproofs.engines.base import GenerationRequest
from fineproofs.generation import CachedGenerator
from fineproofs.records import Problem, Rubric
from fineproofs.rubric_format import RubricError, parse_rubric
from fineproofs.pipelines.distill import sampling_of

log = logging.getLogger(__name__)


@dataclass
class RubricResult:
    rubrics: dict[str, Rubric] = field(default_factory=dict)  # problem id -> rubric
    failures: dict[str, str] = field(default_factory=dict)  # problem id -> reason
    attempts: dict[str, int] = field(default_factory=dict)


class RubricWriter:
    stage = "rubrics"

    def __init__(self, role: RoleConfig, cfg: RubricConfig, generator: CachedGenerator):
        self.role = role
        self.cfg = cfg
        self.generator = generator
        self.prompt = prompts.load("rubric")
        self.retry = prompts.load("rubric_retry")

    @property
    def prompt_version(self) -> str:
        return f"{self.prompt.version}+{self.retry.version}"

    def run(self, problems: list[Problem]) -> RubricResult:
        res = RubricResult()
        sp = sampling_of(self.role)
        convs = {
            p.id: self.prompt.render(problem=p.statement, solution=p.reference_solution or "(none available)")
            for p in problems
        }
        pending = list(problems)
        for attempt in range(self.cfg.max_attempts):
            if not pending:
                break
            reqs = [GenerationRequest(convs[p.id], 1, sp, self.cfg.prefill) for p in pending]
            replies = self.generator.run(reqs, stage=self.stage, prompt_version=self.prompt_version)
            still = []
            for p, (r,) in zip(pending, replies):
                res.attempts[p.id] = attempt + 1
                if not r.ok:
                    res.failures[p.id] = f"engine_failure: {r.reason}"
                    continue
                try:
                    rubric = parse_rubric(r.text, p.id)
                except RubricError as e:
                    res.failures[p.id] = f"invalid_rubric: {e}"
                    convs[p.id] = convs[p.id] + [
                        {"role": "assistant", "content": r.text},
                        *self.retry.render(error=str(e))[-1:],
                    ]
                    still.append(p)
                    continue
                rubric.model = self.role.engine.model
                rubric.prompt_version = self.prompt_version
                res.rubrics[p.id] = rubric
                res.failures.pop(p.id, None)
            pending = still
        for pid, why in res.failures.items():
            log.info("rubric for %s quarantined after %d attempts: %s", pid, res.attempts.get(pid, 0), why)
        return res
