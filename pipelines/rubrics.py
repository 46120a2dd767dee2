"""Rubric generation: a validated 7-point marking scheme per problem.

Round 0 asks the rubric writer for a scheme from problem + reference solution.
Each reply is parsed and validated in code (:mod:`fineproofs.rubric_format`); a
problem whose reply is invalid goes to the next round, which asks again with the
validation error appended to the request (``rubric_retry`` prompt) under a new
sample index. After
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
from fineproofs.engines.base import sampling_of

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

    def _conversation(self, base: list[dict[str, str]], error: str | None) -> list[dict[str, str]]:
        """The original request; on a retry, the validation error is appended to the
        user turn (the rejected reply itself is not replayed: it primes the same mistake)."""
        if not error:
            return base
        note = self.retry.render(error=error)[-1]["content"]
        return base[:-1] + [{"role": "user", "content": f"{base[-1]['content']}\n\n{note}"}]

    def run(self, problems: list[Problem]) -> RubricResult:
        res = RubricResult()
        sp = sampling_of(self.role)
        convs = {
            p.id: self.prompt.render(problem=p.statement, solution=p.reference_solution or "(none available)")
            for p in problems
        }
        pending = list(problems)
        notes: dict[str, str] = {}
        for attempt in range(self.cfg.max_attempts):
            if not pending:
                break
            reqs = [GenerationRequest(self._conversation(convs[p.id], notes.get(p.id)), 1, sp, self.cfg.prefill)
                    for p in pending]
            # each attempt is its own sample index: a retry never replays an earlier reply
            replies = self.generator.run(reqs, stage=self.stage, prompt_version=self.prompt_version,
                                         first_sample=attempt)
            still = []
            for p, (r,) in zip(pending, replies):
                res.attempts[p.id] = attempt + 1
                if not r.ok:
                    res.failures[p.id] = f"engine_failure: {r.reason}"
                    still.append(p)
                    continue
                try:
                    rubric = parse_rubric(r.text, p.id)
                except RubricError as e:
                    res.failures[p.id] = f"invalid_rubric: {e}"
                    notes[p.id] = str(e)
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
