"""Rubric generation: a validated 7-point marking scheme per problem.

Round 0 asks the rubric writer for a scheme from problem + reference solution.
Each reply is parsed and validated in code (:mod:`fineproofs.rubric`); a
problem whose reply is invalid goes to the next round, which asks again with the
validation error appended to the request (``rubric_retry`` prompt) under a new
sample index. After
``max_attempts`` rounds the problem is quarantined with the last error. All rounds
of all problems are batched, and every reply is in the response store, so a
re-run replays the same decisions without generating.

``rubrics.keep_lead_in: false`` (``paper``) stores and shows the judge the rubric from
its "Checkpoints" line on, as QED-Nano stores it (:func:`cut_lead_in`).

Structured (``rubrics.structured``): the request carries the JSON schema of
:func:`fineproofs.rubric.rubric_schema` (the engine constrains decoding to it, so the
checkpoints can only add up to 7) and the ``rubric_json`` note asking for that JSON
is appended to the user turn; the reply is read by
:func:`fineproofs.rubric.parse_rubric_json`, which validates it like a text reply. A
reply that is not JSON (a server that fell back to text) is read as text. Retries
append the ``rubric_json_retry`` note instead of ``rubric_retry``; no prefill is sent.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator

from fineproofs import prompts
from fineproofs.config import RoleConfig, RubricConfig
from fineproofs.engines.base import GenerationRequest, SamplingParams, sampling_of
from fineproofs.generation import CachedGenerator
from fineproofs.pipelines.stage import Failed, LLMStage, Work
from fineproofs.records import Problem, RubricRecord
from fineproofs.replies import answer_of
from fineproofs.rubric import Rubric, RubricError, parse_rubric, parse_rubric_json, rubric_schema

log = logging.getLogger(__name__)


def cut_lead_in(answer: str) -> str:
    """The rubric from the line that opens its "Checkpoints" section on, without what the
    writer wrote before it ("Here is the marking scheme:"). QED-Nano's
    scheme_generation.py keeps the reply from the first "Checkpoints" on (from the word;
    we keep that line whole, so a heading ``1. **Checkpoints (7 pts total)**`` stays
    parseable). A reply without the word, or a JSON reply, is returned unchanged."""
    at = answer.find("Checkpoints")
    if at < 0 or answer.lstrip().startswith(("{", "```")):
        return answer
    return answer[answer.rfind("\n", 0, at) + 1 :]


class RubricWriter(LLMStage):
    """The ``rubrics`` stage: a validated rubric per problem, or a :class:`Failed` with
    the last validation error (the item passes on without a rubric)."""

    name = "rubrics"
    record = RubricRecord
    key_name = "problem_id"

    def __init__(self, role: RoleConfig, cfg: RubricConfig, generator: CachedGenerator,
                 prompt_files: dict[str, str] | None = None):  # fmt: skip
        self.role = role
        self.cfg = cfg
        self.generator = generator
        self.prompt = prompts.pick("rubric", prompt_files)
        self.structured = cfg.structured
        self.retry = prompts.pick("rubric_json_retry" if cfg.structured else "rubric_retry", prompt_files)
        self.json_note = prompts.pick("rubric_json", prompt_files) if cfg.structured else None

    @property
    def prompt_version(self) -> str:
        v = f"{self.prompt.version}+{self.retry.version}"
        return f"{v}+{self.json_note.version}" if self.json_note else v

    def sampling(self) -> SamplingParams:
        """The role's sampling; structured, with the rubric schema attached."""
        sp = sampling_of(self.role)
        if not self.structured:
            return sp
        return dataclasses.replace(
            sp, json_schema=rubric_schema(self.cfg.max_checkpoints, self.cfg.description_chars, self.cfg.max_list_items)
        )

    def _conversation(self, base: list[dict[str, str]], error: str | None) -> list[dict[str, str]]:
        """The original request; on a retry, the validation error is appended to the
        user turn (the rejected reply itself is not replayed: it primes the same mistake)."""
        if not error:
            return base
        note = self.retry.render(error=error)[-1]["content"]
        return base[:-1] + [{"role": "user", "content": f"{base[-1]['content']}\n\n{note}"}]

    def parse(self, answer: str, problem_id: str) -> Rubric:
        """The validated rubric of a reply's final answer (JSON when structured, unless the
        server fell back to text); :class:`RubricError` says why not."""
        if self.structured and answer.lstrip().startswith(("{", "```")):
            return parse_rubric_json(answer, problem_id)
        return parse_rubric(answer, problem_id)

    def process(self, chunk: list[Work]) -> Iterator[Work | Failed]:
        failures: dict[str, str] = {}
        self._rounds([w for w in chunk if not w.dropped], failures)
        for w in chunk:
            if w.id in failures:
                log.info("rubric for %s quarantined after %d attempts: %s", w.id, w.rubric_attempts, failures[w.id])
                yield Failed(w.id, failures[w.id])
            yield w

    def records(self, work: Work) -> list[dict]:
        if work.rubric is None:
            return []
        return [RubricRecord(work.id, work.rubric.render(), work.rubric_attempts).to_dict()]

    def _rounds(self, pending: list[Work], failures: dict[str, str]) -> None:
        """Up to ``max_attempts`` rounds; each round is one batched engine call and its
        own sample index, so a retry never replays an earlier reply."""
        sp = self.sampling()
        prefill = "" if self.structured else self.cfg.prefill
        convs = {w.id: self._base(w.problem) for w in pending}
        notes: dict[str, str] = {}
        for attempt in range(self.cfg.max_attempts):
            if not pending:
                break
            reqs = [
                GenerationRequest(self._conversation(convs[w.id], notes.get(w.id)), 1, sp, prefill) for w in pending
            ]
            replies = self.generator.run(
                reqs, stage=self.name, prompt_version=self.prompt_version, first_sample=attempt, attempt=attempt
            )
            still = []
            for w, (r,) in zip(pending, replies):
                w.rubric_attempts = attempt + 1
                if not r.ok:  # not a new attempt: the next run asks again under this sample index
                    failures[w.id] = f"engine_failure: {r.reason}"
                    continue
                answer = answer_of(r.text, r.reasoning)
                try:
                    if answer is None:
                        raise RubricError("the reply ended inside its reasoning: no rubric was written")
                    rubric = self.parse(answer if self.cfg.keep_lead_in else cut_lead_in(answer), w.id)
                except RubricError as e:
                    failures[w.id] = f"invalid_rubric: {e}"
                    notes[w.id] = str(e)
                    still.append(w)
                    continue
                rubric.model = self.role.engine.model
                rubric.prompt_version = self.prompt_version
                w.rubric = rubric
                failures.pop(w.id, None)
            pending = still

    def _base(self, p: Problem) -> list[dict[str, str]]:
        msgs = self.prompt.render(problem=p.statement, solution=p.reference_solution or "(none available)")
        if self.json_note is None:
            return msgs
        note = self.json_note.render(
            max_checkpoints=str(self.cfg.max_checkpoints), chars=str(self.cfg.description_chars)
        )
        return msgs[:-1] + [{"role": "user", "content": f"{msgs[-1]['content']}\n\n{note[-1]['content']}"}]
