"""In-process vLLM engine (GPU): the default at scale.

* ``vllm`` is imported lazily; without it the constructor raises an EngineError
  saying ``pip install 'fineproofs[vllm]'`` on a GPU machine.
* Tensor / pipeline parallelism, dtype and revision come from the
  :class:`~fineproofs.config.EngineConfig`.
* The ``n`` samples of a request go in **one** ``SamplingParams(n=...)`` so vLLM
  shares the prompt's KV cache between them; the request's seed is ``seeds[0]``
  (or ``sampling.seed``). vLLM (v1 parallel sampling) draws child ``i`` with seed
  ``seeds[0] + i``; the generator's seeds are consecutive within a request, so a
  sample is the same draw whether asked for with its siblings or alone.
* Prompts are rendered with the model's chat template
  (``tokenizer.apply_chat_template`` with ``chat_template_kwargs``, e.g. thinking
  switches); a prefill continues the final assistant message
  (``continue_final_message``) and is part of the returned text. Prompts are passed
  as token ids so no second BOS is added.
* Results are yielded as each request finishes: requests are added to vLLM's
  ``LLMEngine`` and stepped to completion (the loop ``LLM.generate`` runs), each
  finished output yielded at once rather than after the whole batch. Where that
  engine API is not available, it falls back to one ``LLM.generate`` call.
* Sampling: ``top_k`` when set; ``reasoning_effort`` is passed to the chat template
  (gpt-oss templates read it); ``extra_body`` entries are passed to
  ``vllm.SamplingParams`` as keyword arguments (as ``vllm serve`` does with extra
  request fields), so only SamplingParams fields are valid there.
* Text is the raw output: a ``<think>`` block stays inline (``reasoning`` empty);
  ``finish_reason`` ``length`` marks truncated samples.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from fineproofs.engines.base import Completion, Engine, GenerationRequest
from fineproofs.errors import ConfigError, EngineError

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "the 'vllm' engine needs vLLM: pip install 'fineproofs[vllm]' on a GPU machine "
    "(or use engine kind 'http' against a `vllm serve` server, or 'transformers')"
)


def _import_vllm():
    try:
        import vllm
    except ImportError as e:
        raise EngineError(f"{INSTALL_HINT} ({e})") from e
    return vllm


def sampling_params_for(req: GenerationRequest):
    """The ``vllm.SamplingParams`` for one request: all ``n`` samples in one group."""
    vllm = _import_vllm()
    sp = req.sampling
    seed = req.seeds[0] if req.seeds else sp.seed
    kw = dict(n=req.n, temperature=sp.temperature, top_p=sp.top_p, max_tokens=sp.max_tokens, seed=seed)
    if sp.top_k is not None:
        kw["top_k"] = sp.top_k
    kw.update(sp.extra_body)
    try:
        return vllm.SamplingParams(**kw)
    except TypeError as e:  # an extra_body key vLLM does not know
        raise ConfigError(
            f"sampling.extra_body {sorted(sp.extra_body)} is not valid for vllm.SamplingParams: {e}"
        ) from e


def _final_only(params) -> None:
    """Ask for the final output only (what ``LLM.generate`` does); no-op on old vLLM."""
    try:
        from vllm.sampling_params import RequestOutputKind

        params.output_kind = RequestOutputKind.FINAL_ONLY
    except (ImportError, AttributeError):
        pass


def _own_id(request_id: str, ids: dict[str, int]) -> str | None:
    """Our id for a vLLM output (some versions decorate the id they were given)."""
    if request_id in ids:
        return request_id
    return next((r for r in ids if request_id.startswith(r + "-") or request_id.endswith("-" + r)), None)


class VLLMEngine(Engine):
    def __init__(
        self,
        model: str,
        revision: str = "",
        *,
        tensor_parallel_size: int = 1,
        pipeline_parallel_size: int = 1,
        dtype: str = "auto",
        chat_template_kwargs: dict | None = None,
        **llm_kwargs,
    ):
        vllm = _import_vllm()
        from fineproofs.models import resolve_model

        self.model_id = model
        self.revision = revision
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        kw = dict(
            model=resolve_model(model),
            tensor_parallel_size=tensor_parallel_size,
            pipeline_parallel_size=pipeline_parallel_size,
            dtype=dtype,
        )
        if revision:
            kw["revision"] = revision
        kw.update(llm_kwargs)
        self.llm = vllm.LLM(**kw)
        self.tokenizer = self.llm.get_tokenizer()
        self._next_id = 0

    @classmethod
    def from_config(cls, cfg) -> VLLMEngine:
        return cls(
            cfg.model,
            cfg.revision,
            tensor_parallel_size=cfg.tensor_parallel_size,
            pipeline_parallel_size=cfg.pipeline_parallel_size,
            dtype=cfg.dtype,
            chat_template_kwargs=cfg.chat_template_kwargs,
        )

    def prompt_ids(self, req: GenerationRequest) -> list[int]:
        msgs = list(req.messages)
        kw = dict(self.chat_template_kwargs)
        if req.sampling.reasoning_effort is not None:  # gpt-oss templates read it; others ignore it
            kw.setdefault("reasoning_effort", req.sampling.reasoning_effort)
        if req.prefill:
            msgs.append({"role": "assistant", "content": req.prefill})
            text = self.tokenizer.apply_chat_template(
                msgs, tokenize=False, add_generation_prompt=False, continue_final_message=True, **kw
            )
        else:
            text = self.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True, **kw)
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def generate(self, requests: list[GenerationRequest]) -> Iterator[tuple[int, list[Completion]]]:
        if not requests:
            return
        prompts, params = [], []
        for req in requests:
            prompts.append({"prompt_token_ids": self.prompt_ids(req)})
            p = sampling_params_for(req)
            _final_only(p)
            params.append(p)
        engine = getattr(self.llm, "llm_engine", None)
        if engine is None or not hasattr(engine, "step") or not hasattr(engine, "add_request"):
            outs = self.llm.generate(prompts, params, use_tqdm=False)
            for i, out in enumerate(outs):
                yield i, self._completions(requests[i], out)
            return
        ids: dict[str, int] = {}
        try:
            for i, (prompt, p) in enumerate(zip(prompts, params)):
                rid = f"fineproofs{self._next_id}"
                self._next_id += 1
                ids[rid] = i
                engine.add_request(rid, prompt, p)
            while engine.has_unfinished_requests():
                for out in engine.step():
                    rid = _own_id(out.request_id, ids)
                    if out.finished and rid is not None:
                        i = ids.pop(rid)
                        yield i, self._completions(requests[i], out)
            for rid in list(ids):  # never leave a request unanswered
                i = ids.pop(rid)
                yield i, [Completion("", "error", status="failed", reason="vllm_no_output")] * requests[i].n
        finally:
            if ids:  # the consumer stopped early or something failed: drop what is left
                try:
                    engine.abort_request(list(ids))
                except Exception:
                    log.warning("could not abort %d vLLM requests", len(ids))

    def _completions(self, req: GenerationRequest, out) -> list[Completion]:
        n_prompt = len(out.prompt_token_ids or [])
        comps = []
        for o in sorted(out.outputs, key=lambda o: o.index):
            reason = o.finish_reason or "length"
            comps.append(
                Completion(
                    text=req.prefill + o.text,
                    finish_reason=reason if reason in ("stop", "length") else "error",
                    prompt_tokens=n_prompt,
                    completion_tokens=len(o.token_ids),
                    status="ok" if reason in ("stop", "length") else "failed",
                    reason="" if reason in ("stop", "length") else f"vllm_finish_reason: {reason}",
                )
            )
        while len(comps) < req.n:  # should not happen; never return fewer than asked
            comps.append(Completion("", "error", status="failed", reason="vllm_missing_sample"))
        return comps
