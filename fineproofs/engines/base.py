"""The one LLM engine interface.

An :class:`Engine` turns chat requests into completions. It yields results as they
finish (``(request_index, completions)``) so the caller can commit each to the
response store immediately. Engines never raise for a single failed request:
they return a :class:`Completion` with ``status='failed'`` and a reason.

A completion's ``text`` is the model's answer; ``reasoning`` is the thinking a
server returned *separately* (``reasoning_content`` / ``reasoning``, as vLLM with a
reasoning parser and gpt-oss do). Engines that see the raw output (transformers,
in-process vLLM) leave ``reasoning`` empty and keep any ``<think>`` block inline in
``text``; :func:`fineproofs.replies.split_reasoning` separates both forms alike.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fineproofs.config import RoleConfig


@dataclass(frozen=True)
class SamplingParams:
    """How to sample one request. ``top_k``, ``reasoning_effort``, ``extra_body``
    (free-form server-side fields) and ``json_schema`` enter :meth:`to_dict`, and so the
    response-store key, only when set: keys of requests that do not use them never change.

    ``json_schema``: structured output. The reply must be a JSON document matching this
    JSON schema: HTTP engines send it as OpenAI-style ``response_format`` (falling back to
    plain text on a server that rejects it), the transformers engine constrains decoding
    with a grammar (llguidance). Callers must still parse the reply strictly: a server
    may ignore the constraint, and a reply cut at ``max_tokens`` is unfinished JSON."""

    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 512
    seed: int = 0
    top_k: int | None = None
    reasoning_effort: str | None = None  # low | medium | high (gpt-oss, OpenAI reasoning models)
    extra_body: dict[str, Any] = field(default_factory=dict, hash=False)
    json_schema: dict[str, Any] | None = field(default=None, hash=False)

    def to_dict(self) -> dict:
        d: dict[str, Any] = {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
        }
        if self.top_k is not None:
            d["top_k"] = self.top_k
        if self.reasoning_effort is not None:
            d["reasoning_effort"] = self.reasoning_effort
        if self.extra_body:
            d["extra_body"] = dict(self.extra_body)
        if self.json_schema is not None:
            d["json_schema"] = self.json_schema
        return d


def sampling_of(role: RoleConfig) -> SamplingParams:
    """A role's configured sampling as the engines' :class:`SamplingParams`."""
    s = role.sampling
    return SamplingParams(
        temperature=s.temperature,
        top_p=s.top_p,
        max_tokens=s.max_tokens,
        seed=s.seed,
        top_k=s.top_k,
        reasoning_effort=s.reasoning_effort,
        extra_body=dict(s.extra_body),
    )


@dataclass
class GenerationRequest:
    """``n`` samples for one conversation. ``prefill`` starts the assistant turn
    (the model continues it; the prefill is part of the returned text)."""

    messages: list[dict[str, str]]
    n: int = 1
    sampling: SamplingParams = field(default_factory=SamplingParams)
    prefill: str = ""
    seeds: list[int] = field(default_factory=list)  # one per sample when given


@dataclass
class Completion:
    """One sample. Its fields (all but ``ok``) are exactly what the response store
    keeps per sample: :meth:`fineproofs.store.StoredResponse.from_completion` copies
    them by name, so a field added here is stored once the store has its column."""

    text: str  # the answer (content); inline <think> blocks stay here when the engine sees raw output
    finish_reason: str = "stop"  # stop | length | error
    prompt_tokens: int = 0
    completion_tokens: int = 0
    status: str = "ok"  # ok | failed
    reason: str = ""
    cost: float = 0.0
    reasoning: str = ""  # reasoning the server returned separately (reasoning_content / reasoning)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def truncated(self) -> bool:
        """Cut at ``max_tokens`` (``finish_reason == 'length'``)."""
        return self.finish_reason == "length"


class Engine(abc.ABC):
    """Generates completions for chat requests."""

    #: identifies the model in store keys and provenance
    model_id: str = ""
    revision: str = ""

    @abc.abstractmethod
    def generate(self, requests: list[GenerationRequest]) -> Iterator[tuple[int, list[Completion]]]:
        """Yield ``(index into requests, completions)`` as each request finishes;
        ``len(completions) == requests[i].n``."""

    def close(self) -> None:  # noqa: B027  # pragma: no cover - engines override when they hold resources
        pass

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
