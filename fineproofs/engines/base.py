"""The one LLM engine interface.

An :class:`Engine` turns chat requests into completions. It yields results as they
finish (``(request_index, completions)``) so the caller can commit each to the
response store immediately. Engines never raise for a single failed request:
they return a :class:`Completion` with ``status='failed'`` and a reason.
"""

from __future__ import annotations

import abc
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from fineproofs.config import RoleConfig


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 512
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def sampling_of(role: RoleConfig) -> SamplingParams:
    """A role's configured sampling as the engines' :class:`SamplingParams`."""
    s = role.sampling
    return SamplingParams(s.temperature, s.top_p, s.max_tokens, s.seed)


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
    text: str
    finish_reason: str = "stop"  # stop | length | error
    prompt_tokens: int = 0
    completion_tokens: int = 0
    status: str = "ok"  # ok | failed
    reason: str = ""
    cost: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class Engine(abc.ABC):
    """Generates completions for chat requests."""

    #: identifies the model in store keys and provenance
    model_id: str = ""
    revision: str = ""

    @abc.abstractmethod
    def generate(self, requests: list[GenerationRequest]) -> Iterator[tuple[int, list[Completion]]]:
        """Yield ``(index into requests, completions)`` as each request finishes;
        ``len(completions) == requests[i].n``."""

    def close(self) -> None:  # pragma: no cover - engines override when they hold resources
        pass

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
