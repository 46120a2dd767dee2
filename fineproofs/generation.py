"""Store-backed generation: what every LLM stage calls.

:class:`CachedGenerator` looks each (request, sample index) up in the
:class:`~fineproofs.store.ResponseStore`, sends only the missing samples to the
engine, and commits each completion the moment the engine yields it. A re-run of a
finished stage therefore performs zero generations, and a crashed one resumes
paying only for what was in flight.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from fineproofs import progress
from fineproofs.engines.base import Completion, Engine, GenerationRequest
from fineproofs.errors import EngineError
from fineproofs.store import ResponseStore, StoredResponse, request_key

log = logging.getLogger(__name__)


@dataclass
class GenerationStats:
    requested: int = 0
    cached: int = 0
    generated: int = 0
    failed: int = 0
    completion_tokens: int = 0


class CachedGenerator:
    def __init__(
        self,
        engine: Engine,
        store: ResponseStore,
        *,
        retry_failed: bool = True,
        progress: bool = True,
        role: str = "",
    ):
        self.engine = engine
        self.role = role  # named in an engine error (a tripped breaker, a server that is gone)
        self.store = store
        self.retry_failed = retry_failed
        self.progress = progress
        self.stats = GenerationStats()
        self._revision: str | None = None

    @property
    def revision(self) -> str:
        """The configured revision, else a fingerprint of the weights (local dirs, embedded)."""
        if self._revision is None:
            from fineproofs.models import model_fingerprint

            self._revision = self.engine.revision or model_fingerprint(self.engine.model_id)
        return self._revision

    def key(self, req: GenerationRequest, prompt_version: str, sample_index: int) -> str:
        return request_key(
            model=self.engine.model_id,
            revision=self.revision,
            template_kwargs=getattr(self.engine, "chat_template_kwargs", None) or {},
            prompt_version=prompt_version,
            sampling=req.sampling.to_dict(),
            messages=req.messages,
            prefill=req.prefill,
            sample_index=sample_index,
        )

    def run(
        self,
        requests: list[GenerationRequest],
        *,
        stage: str,
        prompt_version: str,
        first_sample: int = 0,
        attempt: int = 0,
    ) -> list[list[StoredResponse]]:
        """Samples ``first_sample .. first_sample+n-1`` of every request, from the
        store where present, generated otherwise; same order as ``requests``. Each
        response carries the answer (``text``) and any separately returned ``reasoning``.
        ``attempt`` > 0 marks a retry round of the stage (shown as such in the log and
        the progress bar, :mod:`fineproofs.progress`)."""
        keys = [[self.key(r, prompt_version, first_sample + j) for j in range(r.n)] for r in requests]
        self.store.plan(stage, (k for ks in keys for k in ks))
        have = self.store.get_many(k for ks in keys for k in ks)
        todo, owners = self._missing(requests, keys, have, prompt_version, first_sample)
        total = sum(len(k) for k in keys)
        n_missing = sum(len(m) for _, m in owners)  # distinct samples to generate
        self.stats.requested += total
        self.stats.cached += total - n_missing
        progress.asked(stage, total, n_missing, attempt)  # the build's ETA: cached samples cost nothing
        what = progress.where(stage, attempt)
        if n_missing == 0:
            log.info("%s: all %d samples already in the store, nothing to generate", what, total)
            return [[have[k] for k in ks] for ks in keys]
        if attempt:
            log.info("%s: asking again for %d sample(s) whose replies were rejected", what, n_missing)
        else:
            log.info("%s: %d of %d samples in the store, generating %d", what, total - n_missing, total, n_missing)
        bar = progress.StepBar(n_missing, stage, attempt, disable=not self.progress)
        try:
            for t, completions in self._generate(todo, stage):
                self._commit(t, completions, owners, keys, requests, have, prompt_version, first_sample, stage)
                bar.update(len(completions))
        except EngineError as e:
            raise EngineError(f"{self.role or stage}: {e}") from None
        finally:
            bar.close()
        return [[have[k] for k in ks] for ks in keys]

    def _generate(self, todo: list[GenerationRequest], stage: str) -> Iterator[tuple[int, list[Completion]]]:
        """``self.engine.generate(todo)``, the engine told who calls (an HTTP engine names the
        role, else the stage, in its watchdog and breaker lines)."""
        calling = getattr(self.engine, "calling", None)
        with calling(self.role or stage) if calling else contextlib.nullcontext():
            yield from self.engine.generate(todo)

    def _commit(self, t, completions, owners, keys, requests, have, prompt_version, first_sample, stage) -> None:
        """Store the completions of engine request ``t`` (one transaction) and note them in ``have``."""
        i, missing = owners[t]
        batch = []
        for j, c in zip(missing, completions):
            resp = StoredResponse.from_completion(c, key=keys[i][j], stage=stage, model=self.engine.model_id)
            audit = {
                "messages": requests[i].messages,
                "prefill": requests[i].prefill,
                "sampling": requests[i].sampling.to_dict(),
                "prompt_version": prompt_version,
                "sample_index": first_sample + j,
            }
            batch.append((resp, audit))
            have[resp.key] = resp
            self.stats.generated += 1
            self.stats.completion_tokens += c.completion_tokens
            self.stats.failed += not c.ok
        self.store.put_many(batch)  # the samples of one request: all stored or none

    def _missing(
        self,
        requests: list[GenerationRequest],
        keys: list[list[str]],
        have: dict[str, StoredResponse],
        prompt_version: str,
        first_sample: int,
    ) -> tuple[list[GenerationRequest], list[tuple[int, list[int]]]]:
        """The requests to send and, for each, (index into ``requests``, sample indices it
        fills). Only missing samples are sent, one request per run of consecutive sample
        indices, seeded by :func:`sample_seed`: a sample's seed is a function of its
        request and its sample index alone, so a batch-invariant server draws it the same
        whether it is sent with its siblings, alone after a failure, or in another chunk
        (vLLM on a GPU is not batch-invariant: there only the store replays it exactly)."""
        todo: list[GenerationRequest] = []
        owners: list[tuple[int, list[int]]] = []
        scheduled: set[str] = set()  # identical requests in one call are generated once
        for i, (req, ks) in enumerate(zip(requests, keys)):
            missing = [
                j
                for j, k in enumerate(ks)
                if (k not in have or (self.retry_failed and not have[k].ok)) and k not in scheduled
            ]
            scheduled.update(ks[j] for j in missing)
            if not missing:
                continue
            base = ks[0] if first_sample == 0 else self.key(req, prompt_version, 0)
            for run in consecutive_runs(missing):
                seeds = [sample_seed(base, first_sample + j) for j in run]
                todo.append(GenerationRequest(req.messages, len(run), req.sampling, req.prefill, seeds=seeds))
                owners.append((i, run))
        return todo, owners


def sample_seed(base_key: str, sample_index: int) -> int:
    """The seed of sample ``sample_index`` of a request whose sample-0 store key is
    ``base_key``: consecutive indices get consecutive seeds. vLLM draws choice ``i`` of a
    call seeded ``s`` as a call seeded ``s + i`` (its parallel sampling seeds child ``i``
    so; ``tests/test_vllm_serve.py`` checks it), so a call for samples ``a..b`` seeded
    ``sample_seed(base, a)`` draws what separate calls for each sample would, as far as
    the server's sampling is batch-invariant. Below 2**31 (every server accepts it)."""
    return int(base_key[:7], 16) + sample_index % (2**31 - 2**28)


def consecutive_runs(indices: list[int]) -> list[list[int]]:
    """``[0, 1, 2, 5, 6]`` -> ``[[0, 1, 2], [5, 6]]`` (sorted input)."""
    runs: list[list[int]] = []
    for j in indices:
        if runs and j == runs[-1][-1] + 1:
            runs[-1].append(j)
        else:
            runs.append([j])
    return runs
