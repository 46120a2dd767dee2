"""LLM engines behind one interface (:class:`~fineproofs.engines.base.Engine`).

``make_engine`` builds one from an :class:`~fineproofs.config.EngineConfig`; the
heavy backends (transformers, vLLM, aiohttp) are imported only when used.
:class:`EnginePool` shares one engine between roles that use the same model (the
embedded profile runs every role on one in-process SmolLM2).

Importing this package sets ``OMP_WAIT_POLICY=PASSIVE`` in the environment unless it
is already set or torch is already loaded (see :mod:`fineproofs.engines.threads`):
OpenMP reads it once, at the first ``import torch``.
"""

from __future__ import annotations

import importlib
import threading

from fineproofs.engines.threads import set_default_wait_policy

set_default_wait_policy()

from fineproofs.config import EngineConfig  # noqa: E402 - after the wait policy, on purpose
from fineproofs.engines.base import (  # noqa: E402
    Completion,
    Engine,
    GenerationRequest,
    SamplingParams,
    sampling_of,
)
from fineproofs.errors import ConfigError  # noqa: E402

__all__ = [
    "Completion",
    "Engine",
    "EnginePool",
    "GenerationRequest",
    "LazyEngine",
    "SamplingParams",
    "make_engine",
    "sampling_of",
]


# engine kind -> (module, class); each class builds itself with ``from_config(cfg)``
KINDS = {
    "transformers": ("fineproofs.engines.transformers_engine", "TransformersEngine"),
    "http": ("fineproofs.engines.http_engine", "HTTPEngine"),
    "vllm": ("fineproofs.engines.vllm_engine", "VLLMEngine"),
}


def make_engine(cfg: EngineConfig) -> Engine:
    """The one way an engine is built from its config (:class:`LazyEngine`, and so
    :class:`EnginePool`, call it too); the backend module is imported only here."""
    if cfg.kind not in KINDS:
        raise ConfigError(f"unknown engine kind {cfg.kind!r}: use one of {', '.join(KINDS)}")
    module, name = KINDS[cfg.kind]
    return getattr(importlib.import_module(module), name).from_config(cfg)


class LazyEngine(Engine):
    """Builds the real engine on the first ``generate``: a stage whose completions are
    all in the response store never loads a model or contacts a server."""

    def __init__(self, cfg: EngineConfig):
        self.cfg = cfg
        self.model_id = cfg.model
        self.revision = cfg.revision
        self.chat_template_kwargs = dict(cfg.chat_template_kwargs)
        self._engine: Engine | None = None
        self._lock = threading.Lock()  # stages in threads of their own share one engine

    @property
    def engine(self) -> Engine:
        with self._lock:
            if self._engine is None:
                self._engine = make_engine(self.cfg)
            return self._engine

    def generate(self, requests):
        return self.engine.generate(requests)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()


class EnginePool:
    """One (lazily built) engine per distinct engine config."""

    def __init__(self) -> None:
        self._engines: dict[str, LazyEngine] = {}

    def get(self, cfg: EngineConfig) -> LazyEngine:
        key = cfg.model_dump_json(exclude={"label"})
        if key not in self._engines:
            self._engines[key] = LazyEngine(cfg)
        return self._engines[key]

    def __enter__(self) -> EnginePool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for e in self._engines.values():
            e.close()
        self._engines.clear()
