"""In-process generation with transformers (CPU or GPU): the embedded default.

Completions carry the raw decoded output in ``text`` (a ``<think>`` block, if the
model writes one, stays inline; ``reasoning`` is empty). On CPU the thread count and
OpenMP wait policy come from :mod:`fineproofs.engines.threads`.

Structured output (``SamplingParams.json_schema``): decoding is constrained by a
grammar compiled from the JSON schema with **llguidance** (optional extra, imported
lazily; ``pip install llguidance``). Why llguidance: a 3 MB wheel with no dependencies
that runs on CPU, works with transformers 5 fast tokenizers, is maintained and is the
engine behind vLLM's, SGLang's and llama.cpp's ``guidance`` backends (xgrammar pulls in
triton; outlines and lm-format-enforcer are heavier and slower per token). Each sample
gets its own matcher; its mask is applied before temperature and top-p, so a sample
can only write what the schema allows and stops when the document is complete. Without
llguidance the engine warns once and decodes unconstrained (the caller's parser reads
the plain-text form too).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

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

    @classmethod
    def from_config(cls, cfg) -> TransformersEngine:
        return cls(
            cfg.model,
            cfg.revision,
            batch_size=cfg.batch_size,
            dtype=cfg.dtype,
            chat_template_kwargs=cfg.chat_template_kwargs,
            threads=cfg.threads,
            omp_wait_policy=cfg.omp_wait_policy,
            device=cfg.device,
        )

    def __init__(
        self,
        model: str = "embedded",
        revision: str = "",
        batch_size: int = 8,
        dtype: str = "auto",
        chat_template_kwargs: dict | None = None,
        threads: int | None = None,
        omp_wait_policy: str = "passive",
        device: str = "auto",
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
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.model.to(self.device)
        self.model.eval()
        self._torch = torch
        self._warned_extra = False
        self._ll_tokenizer: Any = None  # llguidance tokenizer, built on the first structured request
        self._grammar_state = ""  # "" (not tried) | "ok" | "missing"

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
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        seed = requests[idx[0]].seeds[0] if requests[idx[0]].seeds else sp.seed
        torch.manual_seed(seed)
        gen_kw = self._generate_kwargs(sp)
        constraint = self._constraint(sp, len(texts), enc["input_ids"].shape[1])
        if constraint is not None:
            from transformers import LogitsProcessorList

            gen_kw["logits_processor"] = LogitsProcessorList([constraint])
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

    def _constraint(self, sp: SamplingParams, rows: int, prompt_len: int) -> JSONConstraint | None:
        """A grammar constraint for the batch when its sampling asks for a JSON schema."""
        if sp.json_schema is None or self._grammar_state == "missing":
            return None
        try:
            import llguidance
            import llguidance.hf
        except ImportError:
            log.warning("structured output needs llguidance (pip install llguidance): decoding unconstrained")
            self._grammar_state = "missing"
            return None
        if self._ll_tokenizer is None:
            n_vocab = self.model.get_output_embeddings().weight.shape[0]
            self._ll_tokenizer = llguidance.hf.from_tokenizer(
                self.tokenizer, n_vocab=n_vocab, eos_token=self.tokenizer.eos_token_id
            )
            self._grammar_state = "ok"
        return JSONConstraint(llguidance, self._ll_tokenizer, sp.json_schema, rows, prompt_len, self._eos_ids())

    def _eos_ids(self) -> set[int]:
        ids = {self.tokenizer.eos_token_id}
        gen_eos = getattr(self.model.generation_config, "eos_token_id", None)
        if isinstance(gen_eos, int):
            ids.add(gen_eos)
        elif gen_eos:
            ids.update(gen_eos)
        return {i for i in ids if i is not None}


class JSONConstraint:
    """A transformers logits processor: each row may only continue along the JSON schema
    (llguidance matcher per row). Rows that finished, or whose matcher stopped or
    failed, are left alone (generate pads them)."""

    def __init__(self, llguidance, ll_tokenizer, schema: dict, rows: int, prompt_len: int, eos_ids: set[int]):
        compact = {"whitespace_flexible": False, "key_separator": ": ", "item_separator": ", "}
        grammar = llguidance.LLMatcher.grammar_from_json_schema({**schema, "x-guidance": compact})
        self.matchers = [llguidance.LLMatcher(ll_tokenizer, grammar) for _ in range(rows)]
        self.done = [False] * rows
        self.prompt_len = prompt_len
        self.eos_ids = eos_ids
        self.vocab = ll_tokenizer.vocab_size

    def __call__(self, input_ids, scores):
        import numpy as np
        import torch

        step = input_ids.shape[1] - self.prompt_len
        for r, m in enumerate(self.matchers):
            if step > 0 and not self.done[r]:
                tok = int(input_ids[r, -1])
                if tok in self.eos_ids or m.is_stopped() or not m.consume_token(tok):
                    self.done[r] = True
            if self.done[r] or m.is_error():
                continue
            bits = np.unpackbits(np.frombuffer(m.compute_bitmask(), dtype=np.uint8), bitorder="little")
            allowed = torch.from_numpy(bits[: scores.shape[1]].astype(bool))
            if allowed.shape[0] < scores.shape[1]:
                allowed = torch.cat([allowed, torch.zeros(scores.shape[1] - allowed.shape[0], dtype=torch.bool)])
            if bool(allowed.any()):
                scores[r] = scores[r].masked_fill(~allowed.to(scores.device), float("-inf"))
        return scores


def _sort_key(sp: SamplingParams) -> str:
    """A total order on sampling params (None, dicts) that groups identical ones."""
    return json.dumps(sp.to_dict(), sort_keys=True, default=str)
