"""The LLM verifier of decontamination candidates: is a training problem the same problem
as a benchmark problem, up to rewording?

Retrieval (:mod:`fineproofs.filters.retrieval`) ranks, for each problem, the nearest
benchmark problems; those the offline rule did not already decide
(:meth:`~fineproofs.filters.decontaminate.Decontaminator.paraphrase`) and that score at
least ``floor`` go to a model, at most ``top`` per problem. The ``same_problem`` prompt
shows both statements as data and asks for one JSON object ``{"same": bool, "reason":
str}``; the request carries that JSON schema as structured output (``response_format``
on HTTP servers), and the reply is still parsed strictly (:func:`parse_same`): exactly
the two keys, ``same`` a JSON boolean, ``reason`` a non-empty string (cut to 300
characters), in a bare object or one fenced ``json`` block after any thinking. A reply
that does not parse is asked again under a new sample index, up to ``max_attempts``;
then the pair is *undecided* (:attr:`SameVerdict.failure`, ``kind: detail`` with kind
``engine_failure``, ``no_answer`` or ``unparseable_verdict``), which the caller reports
and never turns into "clean" silently.

Every request goes through the :class:`~fineproofs.generation.CachedGenerator` and so
the response store: a re-run asks nothing again.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from fineproofs import prompts
from fineproofs.engines.base import GenerationRequest, SamplingParams
from fineproofs.generation import CachedGenerator
from fineproofs.replies import answer_or_raise

STAGE = "decontaminate_verify"
SCHEMA = {
    "type": "object",
    "properties": {"same": {"type": "boolean"}, "reason": {"type": "string", "maxLength": 300}},
    "required": ["same", "reason"],
    "additionalProperties": False,
}
_FENCE = re.compile(r"```[ \t]*(?:json)?[ \t]*\n(.*?)```", re.S | re.I)


class SameParseError(ValueError):
    """A verifier reply holding no valid verdict (the message says why)."""


@dataclass(frozen=True)
class SameVerdict:
    """The verdict on one (candidate, benchmark problem) pair: ``same`` None when the model
    gave no valid answer in ``max_attempts`` (``failure`` says why)."""

    same: bool | None
    reason: str = ""
    failure: str = ""
    attempts: int = 0


def parse_same(answer: str) -> tuple[bool, str]:
    """``(same, reason)`` from a reply's final answer (see the module docstring)."""
    blocks = _FENCE.findall(answer)
    if len(blocks) > 1:
        raise SameParseError(f"{len(blocks)} fenced blocks: the verdict must be exactly one")
    text = (blocks[0] if blocks else answer).strip()
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise SameParseError(f"invalid JSON: {e.msg}") from None
    if not isinstance(obj, dict) or set(obj) != {"same", "reason"}:
        raise SameParseError(f"expected an object with keys same and reason, got {text[:80]!r}")
    if type(obj["same"]) is not bool:
        raise SameParseError(f"same must be true or false, got {obj['same']!r}")
    if not isinstance(obj["reason"], str) or not obj["reason"].strip():
        raise SameParseError("reason must be a non-empty string")
    return obj["same"], " ".join(obj["reason"].split())[:300]


class SameProblemVerifier:
    """Asks a model whether candidate pairs are the same problem (see the module docstring)."""

    def __init__(
        self,
        generator: CachedGenerator,
        sampling: SamplingParams | None = None,
        *,
        max_attempts: int = 2,
        prompt_file: str | None = None,
    ):
        self.generator = generator
        base = sampling or SamplingParams(temperature=0.0, max_tokens=256)
        self.sampling = SamplingParams(**{**base.__dict__, "json_schema": SCHEMA})
        self.max_attempts = max_attempts
        self.prompt = prompts.load("same_problem", prompt_file)

    def messages(self, candidate: str, benchmark: str) -> list[dict[str, str]]:
        return self.prompt.render(candidate=candidate.strip(), benchmark=benchmark.strip())

    def verify(self, pairs: list[tuple[str, str]]) -> list[SameVerdict]:
        """A verdict per ``(candidate, benchmark)`` pair, in order; identical pairs are asked once."""
        distinct = list(dict.fromkeys(pairs))
        out: dict[tuple[str, str], SameVerdict] = {}
        failures: dict[tuple[str, str], str] = {}
        pending = distinct
        for attempt in range(self.max_attempts):
            if not pending:
                break
            reqs = [GenerationRequest(self.messages(c, b), 1, self.sampling) for c, b in pending]
            replies = self.generator.run(reqs, stage=STAGE, prompt_version=self.prompt.version, first_sample=attempt)
            still = []
            for pair, (r,) in zip(pending, replies):
                try:
                    answer = answer_or_raise(r, SameParseError)
                    try:
                        same, reason = parse_same(answer)
                    except SameParseError as e:
                        raise SameParseError(f"unparseable_verdict: {e}") from None
                    out[pair] = SameVerdict(same, reason, attempts=attempt + 1)
                except SameParseError as e:
                    failures[pair] = str(e)
                    still.append(pair)
            pending = still
        for pair in pending:
            out[pair] = SameVerdict(
                None, failure=f"{failures[pair]} (after {self.max_attempts} attempts)", attempts=self.max_attempts
            )
        return [out[p] for p in pairs]
