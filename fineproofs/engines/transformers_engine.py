"""In-process generation with transformers (CPU or GPU): the embedded default.

Completions carry the raw decoded output in ``text`` (a ``<think>`` block, if the
model writes one, stays inline; ``reasoning`` is empty). On CPU the thread count and
OpenMP wait policy come from :mod:`fineproofs.engines.threads`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

from fineproofs.engines.base import Completion, Engine, GenerationRequest, SamplingParams
from fineproofs.engines.threads import configure_torch
from fineproofs.errors import EngineError

log = logging.getLogger(__name__)


class TransformersEngine(Engine):
    """Batched sampling with ``model.generate``.

    Requests are sorted by prompt length and packed into batches of ``batch_size``
    rows (a request with ``n`` samples contributes ``n`` rows), left-padded. Each batch
    is seeded from its first request, so a sample's text depends on its batch-mates:
    an uninterrupted build and its re-runs are identical (the store replays it), but
    samples regenerated after a crash are new draws rather than the lost ones.
    """

    def __init__(
        self,
        model: str = "embedded",
        revision: str = "",
        batch_size: int = 8,
        dtype: str = "auto",
        chat_template_kwargs: dict | None = None,
        threads: int | None = None,
        omp_wait_policy: str = "passive",
    ):
        try:
            self.threads = configure_torch(threads, omp_wait_policy)  # before torch is first imported
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as e:
            raise EngineError(
                f"the 'transformers' engine needs torch and transformers: pip install torch transformers ({e})"
            ) from e

        from fineproofs.models import resolve_model

        self.model_id = model
        self.revision = revision
        self.batch_size = batch_size
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        path = resolve_model(model)
        kw = {"revision": revision} if revision else {}
        self.tokenizer = AutoTokenizer.from_pretrained(path, **kw)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, **kw)
        self.model.eval()
        self._torch = torch
        self._warned_extra = False

    def _prompt(self, req: GenerationRequest) -> str:
        msgs = list(req.messages)
        kw = dict(self.chat_template_kwargs)
        if req.sampling.reasoning_effort is not None:  # gpt-oss templates read it; others ignore it
            kw.setdefault("reasoning_effort", req.sampling.reasoning_effort)
        if req.prefill:
            msgs = msgs + [{"role": "assistant", "content": req.prefill}]
            return self.tokenizer.apply_chat_template(msgs, tokenize=False, continue_final_message=True, **kw)
        return self.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True, **kw)

    def generate(self, requests: list[GenerationRequest]) -> Iterator[tuple[int, list[Completion]]]:
        prompts = [self._prompt(r) for r in requests]
        lengths = [len(self.tokenizer(p, add_special_tokens=False).input_ids) for p in prompts]
        order = sorted(range(len(requests)), key=lambda i: (_sort_key(requests[i].sampling), lengths[i]))
        # group consecutive requests with identical sampling params into row batches
        batch: list[int] = []
        rows = 0
        for i in order:
            req = requests[i]
            if batch and (rows + req.n > self.batch_size or requests[batch[0]].sampling != req.sampling):
                yield from self._run(batch, requests, prompts)
                batch, rows = [], 0
            batch.append(i)
            rows += req.n
        if batch:
            yield from self._run(batch, requests, prompts)

    def _run(self, idx: list[int], requests, prompts) -> Iterator[tuple[int, list[Completion]]]:
        torch = self._torch
        sp = requests[idx[0]].sampling
        texts, owners = [], []
        for i in idx:
            texts += [prompts[i]] * requests[i].n
            owners += [i] * requests[i].n
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        seed = requests[idx[0]].seeds[0] if requests[idx[0]].seeds else sp.seed
        torch.manual_seed(seed)
        gen_kw = self._generate_kwargs(sp)
        try:
            with torch.inference_mode():
                out = self.model.generate(**enc, **gen_kw)
        except Exception as e:  # one bad batch must not kill the run
            log.exception("generation failed for a batch of %d rows", len(texts))
            for i in idx:
                yield i, [Completion("", "error", status="failed", reason=f"engine_error: {e}")] * requests[i].n
            return
        new = out[:, enc["input_ids"].shape[1] :]
        eos_ids = self._eos_ids()
        results: dict[int, list[Completion]] = {i: [] for i in idx}
        prompt_tokens = enc["attention_mask"].sum(dim=1).tolist()
        for row, owner in enumerate(owners):
            ids = new[row].tolist()
            stop = next((j for j, t in enumerate(ids) if t in eos_ids), None)
            gen = ids if stop is None else ids[:stop]
            text = self.tokenizer.decode(gen, skip_special_tokens=True)
            prefill = requests[owner].prefill
            results[owner].append(
                Completion(
                    text=prefill + text,
                    finish_reason="length" if stop is None else "stop",
                    prompt_tokens=int(prompt_tokens[row]),
                    completion_tokens=len(gen),
                )
            )
        for i in idx:
            yield i, results[i]

    def _generate_kwargs(self, sp: SamplingParams) -> dict:
        gen_kw: dict = dict(max_new_tokens=sp.max_tokens, pad_token_id=self.tokenizer.pad_token_id)
        if sp.temperature > 0:
            gen_kw.update(do_sample=True, temperature=sp.temperature, top_p=sp.top_p)
            if sp.top_k is not None:
                gen_kw["top_k"] = max(0, sp.top_k)  # -1 / 0: off
        else:
            gen_kw.update(do_sample=False)
        if sp.extra_body and not self._warned_extra:
            log.warning(
                "the transformers engine ignores sampling.extra_body %s (HTTP servers only)", sorted(sp.extra_body)
            )
            self._warned_extra = True
        return gen_kw

    def _eos_ids(self) -> set[int]:
        ids = {self.tokenizer.eos_token_id}
        gen_eos = getattr(self.model.generation_config, "eos_token_id", None)
        if isinstance(gen_eos, int):
            ids.add(gen_eos)
        elif gen_eos:
            ids.update(gen_eos)
        return {i for i in ids if i is not None}


def _sort_key(sp: SamplingParams) -> str:
    """A total order on sampling params (None, dicts) that groups identical ones."""
    return json.dumps(sp.to_dict(), sort_keys=True, default=str)
