"""HTTPEngine against the fault-injecting fake server (tests/faultproxy.py), plus the
VLLMEngine checks that need no GPU. Fast: everything runs on loopback."""

from __future__ import annotations

import socket
import sys
import time
import types

import pytest
from faultproxy import FAULT_KINDS, FaultServer, fake_reply

from fineproofs.config import EngineConfig
from fineproofs.engines import make_engine
from fineproofs.engines.base import GenerationRequest, SamplingParams
from fineproofs.engines.http_engine import HTTPEngine, parse_retry_after
from fineproofs.errors import ConfigError, EngineError

FAST = dict(backoff_base_s=0.01, backoff_max_s=0.05)


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def run(engine, requests):
    return dict(engine.generate(requests))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----- throughput -----


def test_littles_law_throughput():
    """C calls in flight of latency L each: the engine keeps exactly C in flight (so throughput
    is C / L, which bench/bench_http.py measures; a timed assertion would fail on a loaded CI
    machine)."""
    C, L, N = 16, 0.2, 160
    reqs = [GenerationRequest(user(f"q{i}")) for i in range(N)]
    with FaultServer(latency=L) as srv, HTTPEngine("fake-model", [srv.url], max_concurrency=C) as eng:
        run(eng, reqs[:C])  # warm the connection pool
        t0 = time.perf_counter()
        out = run(eng, reqs)
        wall = time.perf_counter() - t0
        ratio = (N / wall) / (C / L)
        print(f"\nLittle's law: {N / wall:.1f} req/s vs C/L = {C / L:.1f} -> ratio {ratio:.3f}")
        assert len(out) == N and all(c[0].ok for c in out.values())
        assert srv.max_in_flight == C  # the cap is reached and never exceeded


def test_multi_endpoint_spreading():
    C, L, N = 4, 0.1, 80
    reqs = [GenerationRequest(user(f"q{i}")) for i in range(N)]
    with FaultServer(latency=L) as a, FaultServer(latency=L) as b:
        with HTTPEngine("fake-model", [a.url, b.url], max_concurrency=C) as eng:
            t0 = time.perf_counter()
            out = run(eng, reqs)
            wall = time.perf_counter() - t0
        assert all(c[0].ok for c in out.values())
        print(f"\nspread {a.ok}/{b.ok}, throughput ratio {(N / wall) / (2 * C / L):.3f}")
        assert abs(a.ok - b.ok) <= 8
        # both endpoints carry their full share at once: twice one endpoint's concurrency
        assert a.max_in_flight == C and b.max_in_flight == C


def test_least_in_flight_prefers_the_faster_endpoint():
    reqs = [GenerationRequest(user(f"q{i}")) for i in range(60)]
    with FaultServer(latency=0.02) as fast, FaultServer(latency=0.2) as slow:
        with HTTPEngine("fake-model", [slow.url, fast.url], max_concurrency=2) as eng:
            out = run(eng, reqs)
        assert all(c[0].ok for c in out.values())
        assert fast.ok > 3 * slow.ok


def test_dead_endpoint_is_routed_around():
    dead = f"http://127.0.0.1:{free_port()}/v1"
    reqs = [GenerationRequest(user(f"q{i}")) for i in range(20)]
    with FaultServer(latency=0.01) as srv:
        with HTTPEngine("fake-model", [dead, srv.url], max_concurrency=4, max_retries=6, **FAST) as eng:
            out = run(eng, reqs)
    assert all(c[0].ok for c in out.values())


def test_results_stream_as_they_finish_and_early_stop_frees_slots():
    reqs = [GenerationRequest(user(f"q{i}")) for i in range(4)]
    with FaultServer(latency=0.2) as srv, HTTPEngine("fake-model", [srv.url], max_concurrency=1) as eng:
        eng.preflight()
        t0 = time.perf_counter()
        it = eng.generate(reqs)
        first = next(it)
        assert time.perf_counter() - t0 < 0.5  # not after all four (0.8 s)
        it.close()  # the caller stops early: the rest is cancelled, its slot released
        assert first[0] == 0 and first[1][0].ok
        out = run(eng, reqs[:2])
        assert sorted(out) == [0, 1] and eng.endpoints[0].in_flight == 0


# ----- faults -----


def _mixed_requests(k: int = 40) -> list[GenerationRequest]:
    reqs = [GenerationRequest(user(f"problem {i}"), sampling=SamplingParams(seed=i)) for i in range(k)]
    reqs.append(GenerationRequest(user("several"), n=3, seeds=[7, 8, 9]))
    reqs.append(GenerationRequest(user("grade this"), prefill="<score>"))
    return reqs


def test_faults_30pct_every_request_succeeds_with_clean_output():
    reqs = _mixed_requests()
    with FaultServer(latency=0.01) as clean, HTTPEngine("fake-model", [clean.url], max_concurrency=8) as eng:
        expected = run(eng, reqs)
    with FaultServer(latency=0.01, fault_rate=0.3, slow_s=1.0, seed=1) as srv:
        with HTTPEngine(
            "fake-model", [srv.url], max_concurrency=8, max_retries=8, request_timeout_s=0.3, **FAST
        ) as eng:
            got = run(eng, reqs)
        print(f"\ninjected {dict(srv.injected)}; retries {eng.stats['retries']}")
        assert set(srv.injected) == set(FAULT_KINDS)  # every kind was exercised
    assert all(c.ok for cs in got.values() for c in cs), [c.reason for cs in got.values() for c in cs if not c.ok]
    assert {i: [c.text for c in cs] for i, cs in got.items()} == {i: [c.text for c in cs] for i, cs in expected.items()}


def test_retries_exhausted_gives_failed_completions():
    reqs = [GenerationRequest(user(f"q{i}")) for i in range(5)] + [GenerationRequest(user("n"), n=2)]
    with FaultServer(fault_rate=1.0, faults=("http_503",)) as srv:
        with HTTPEngine("fake-model", [srv.url], max_retries=1, **FAST) as eng:
            out = run(eng, reqs)
        assert len(srv.received) == 2 * len(reqs)  # first try + one retry each
    assert [len(out[i]) for i in range(len(reqs))] == [1, 1, 1, 1, 1, 2]
    for cs in out.values():
        for c in cs:
            assert c.status == "failed" and c.reason == "http_503 after 1 retries"


@pytest.mark.parametrize(
    "fault,reason", [("reset", "connection_error"), ("truncated", "invalid_json"), ("slow", "timeout")]
)
def test_each_fault_kind_has_a_reason(fault, reason):
    with FaultServer(fault_rate=1.0, faults=(fault,), slow_s=1.0) as srv:
        with HTTPEngine("fake-model", [srv.url], max_retries=1, request_timeout_s=0.2, **FAST) as eng:
            [(_, [c])] = eng.generate([GenerationRequest(user("x"))])
    assert not c.ok and c.reason == f"{reason} after 1 retries"


def test_retry_after_is_honoured():
    with FaultServer(fault_rate=1.0, faults=("http_429",), retry_after=1) as srv:
        with HTTPEngine("fake-model", [srv.url], max_retries=1, **FAST) as eng:
            eng.preflight()
            t0 = time.perf_counter()
            [(_, [c])] = eng.generate([GenerationRequest(user("x"))])
            assert time.perf_counter() - t0 >= 1.0
    assert c.reason == "http_429 after 1 retries"
    assert parse_retry_after("2.5") == 2.5 and parse_retry_after("junk") is None
    assert 0 <= parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") < 1e-9  # a past date: now


def test_client_errors_are_not_retried():
    with FaultServer() as srv:
        with HTTPEngine("other-model", [srv.url], max_retries=4, preflight=False) as eng:
            [(_, [c])] = eng.generate([GenerationRequest(user("x"))])
        assert len(srv.received) == 1
    assert c.reason.startswith("http_404: The model `other-model` does not exist")


# ----- n, prefill, usage -----


def test_n_when_server_ignores_it():
    msgs = user("prove it")
    with FaultServer(honor_n=False) as srv, HTTPEngine("fake-model", [srv.url]) as eng:
        [(_, cs)] = eng.generate([GenerationRequest(msgs, n=3, seeds=[11, 12, 13])])
        assert [c.text for c in cs] == [fake_reply(msgs, "", s, 0) for s in (11, 12, 13)]
        assert [(b.get("n", 1), b["seed"]) for b in srv.received] in (
            [(3, 11), (1, 12), (1, 13)],
            [(3, 11), (1, 13), (1, 12)],
        )
        assert eng.n_ignored
        # learned: the next request is fanned out from the start, same samples
        srv.received.clear()
        [(_, cs2)] = eng.generate([GenerationRequest(msgs, n=3, seeds=[11, 12, 13])])
        assert [c.text for c in cs2] == [c.text for c in cs]
        assert sorted(b["seed"] for b in srv.received) == [11, 12, 13] and all("n" not in b for b in srv.received)


def test_a_sample_is_the_same_draw_alone_or_with_its_siblings():
    """Choice i of a call seeded s is drawn with seed s + i (vLLM): seeds that are not
    consecutive go as one call per consecutive run, and a sample asked for alone (after
    a failure, on resume) comes back exactly as it did among its siblings."""
    msgs = user("prove it")
    with FaultServer() as srv, HTTPEngine("fake-model", [srv.url]) as eng:
        [(_, together)] = eng.generate([GenerationRequest(msgs, n=4, seeds=[5, 6, 7, 8])])
        [(_, alone)] = eng.generate([GenerationRequest(msgs, n=1, seeds=[7])])
        assert alone[0].text == together[2].text
        srv.received.clear()
        [(_, split)] = eng.generate([GenerationRequest(msgs, n=3, seeds=[5, 6, 8])])
        assert sorted((b.get("n", 1), b["seed"]) for b in srv.received) == [(1, 8), (2, 5)]
        assert [c.text for c in split] == [together[j].text for j in (0, 1, 3)]


def test_n_in_one_request_when_server_honours_it():
    msgs = user("prove it")
    with FaultServer() as srv, HTTPEngine("fake-model", [srv.url], price_completion_per_1m=1e6) as eng:
        [(_, cs)] = eng.generate([GenerationRequest(msgs, n=4, seeds=[5, 6, 7, 8])])
        assert len(srv.received) == 1 and srv.received[0]["n"] == 4 and srv.received[0]["seed"] == 5
    assert [c.text for c in cs] == [fake_reply(msgs, "", 5 + j, 0) for j in range(4)]
    assert sum(c.completion_tokens for c in cs) == 16  # usage split, total exact
    assert sum(c.cost for c in cs) == pytest.approx(16.0)


@pytest.mark.parametrize("mode", ["continue", "echo", "reject"])
def test_prefill(mode):
    msgs = user("grade")
    with FaultServer(continue_mode=mode) as srv, HTTPEngine("fake-model", [srv.url]) as eng:
        [(_, [c])] = eng.generate([GenerationRequest(msgs, prefill="<score>")])
        last = srv.received[-1]
    assert c.ok and c.text == "<score>" + fake_reply(msgs, "<score>", 0, 0)
    assert last["messages"][-1] == {"role": "assistant", "content": "<score>"}
    if mode == "reject":  # fell back to a plain assistant turn
        assert len(srv.received) == 2 and "continue_final_message" not in last
    else:
        assert last["continue_final_message"] is True and last["add_generation_prompt"] is False


def test_usage_cost_and_template_kwargs():
    with FaultServer() as srv:
        eng = HTTPEngine(
            "fake-model",
            [srv.url],
            chat_template_kwargs={"enable_thinking": False},
            price_prompt_per_1m=2.0,
            price_completion_per_1m=10.0,
        )
        with eng:
            [(_, [c])] = eng.generate(
                [GenerationRequest(user("one two three"), sampling=SamplingParams(0.5, 0.9, 77, 3))]
            )
        body = srv.received[0]
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["seed"]) == (0.5, 0.9, 77, 3)
    assert (c.prompt_tokens, c.completion_tokens, c.finish_reason) == (3, 4, "stop")
    assert c.cost == pytest.approx((3 * 2.0 + 4 * 10.0) / 1e6)


def test_reasoning_is_kept_apart_from_the_answer():
    eng = HTTPEngine("m", ["http://127.0.0.1:1/v1"])
    data = {"choices": [{"message": {"content": "Proof.", "reasoning_content": "hmm"}, "finish_reason": "length"}]}
    [c] = eng._parse(GenerationRequest(user("x")), data)
    assert (c.text, c.reasoning, c.finish_reason, c.truncated) == ("Proof.", "hmm", "length", True)
    parts = {"choices": [{"message": {"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}}]}
    [c] = eng._parse(GenerationRequest(user("x")), parts)
    assert (c.text, c.reasoning) == ("ab", "")


def test_top_k_reasoning_effort_and_extra_body_reach_the_server():
    sp = SamplingParams(0.6, 0.95, 100, 1, top_k=20, reasoning_effort="high", extra_body={"min_p": 0.05})
    with FaultServer() as srv, HTTPEngine("fake-model", [srv.url]) as eng:
        [(_, [c])] = eng.generate([GenerationRequest(user("x"), sampling=sp)])
        [(_, [_d])] = eng.generate([GenerationRequest(user("x"))])
        with_knobs, without = srv.received
    assert c.ok
    assert (with_knobs["top_k"], with_knobs["reasoning_effort"], with_knobs["min_p"]) == (20, "high", 0.05)
    assert not {"top_k", "reasoning_effort", "min_p"} & set(without)  # unset knobs are not sent


# ----- preflight, key, factory -----


def test_preflight_explains_how_to_start_a_server():
    url = f"http://127.0.0.1:{free_port()}/v1"
    with HTTPEngine("deepseek-ai/DeepSeek-Math-V2", [url]) as eng:
        with pytest.raises(RuntimeError) as e:
            list(eng.generate([GenerationRequest(user("x"))]))
    msg = str(e.value)
    assert "deepseek-ai/DeepSeek-Math-V2" in msg and url in msg and "vllm serve" in msg and "endpoints" in msg


def test_preflight_and_logs_never_show_url_credentials(caplog, capsys):
    port = free_port()
    url = f"http://user:secret@127.0.0.1:{port}/v1"
    with caplog.at_level("DEBUG"):
        with HTTPEngine(
            "some/model", [url, f"http://admin:hunter22@127.0.0.1:{free_port()}/v1"], max_retries=1, **FAST
        ) as eng:
            assert "secret" not in repr(eng)
            with pytest.raises(EngineError) as e:
                eng.preflight()
            eng.check_server = False
            [(_, [c])] = eng.generate([GenerationRequest(user("x"))])
    out = capsys.readouterr()
    shown = "\n".join([str(e.value), c.reason, caplog.text, out.out, out.err])
    assert "secret" not in shown and "hunter22" not in shown
    assert f"127.0.0.1:{port}" in str(e.value) and "vllm serve" in str(e.value)
    assert not c.ok


def test_key_pasted_into_api_key_env_is_refused_without_echo():
    for pasted in ("sk-proj-abcdefghijkl0123", "hf_AbCdEfGhIjKlMn0123", "my key"):
        with pytest.raises(ValueError, match="api_key_env must name an environment variable") as e:
            EngineConfig(kind="http", endpoints=["http://x/v1"], api_key_env=pasted)
        assert pasted not in str(e.value)
        with pytest.raises(ConfigError, match="not hold the key") as e:
            HTTPEngine("m", ["http://x/v1"], api_key_env=pasted)
        assert pasted not in str(e.value)
    assert EngineConfig(kind="http", endpoints=["http://x/v1"], api_key_env="HF_TOKEN").api_key_env == "HF_TOKEN"


def test_preflight_model_check():
    with FaultServer(model="served-model") as srv:
        with HTTPEngine("other", [srv.url]) as eng, pytest.raises(RuntimeError, match="served-model"):
            eng.preflight()
        with HTTPEngine("embedded", [srv.url]) as eng:  # one model served: the embedded one
            [(_, [c])] = eng.generate([GenerationRequest(user("x"))])
            assert c.ok and eng.served_model == "served-model" and eng.model_id == "embedded"


def test_api_key_from_env(monkeypatch):
    monkeypatch.setenv("FP_TEST_KEY", "sekrit-123")
    with FaultServer() as srv:
        with HTTPEngine("fake-model", [srv.url], api_key_env="FP_TEST_KEY") as eng:
            list(eng.generate([GenerationRequest(user("x"))]))
            assert "sekrit" not in repr(eng)
        assert srv.auth == ["Bearer sekrit-123"]
    monkeypatch.delenv("FP_TEST_KEY")
    with HTTPEngine("fake-model", [srv.url], api_key_env="FP_TEST_KEY") as eng:
        with pytest.raises(RuntimeError, match="FP_TEST_KEY"):
            list(eng.generate([GenerationRequest(user("x"))]))


def test_make_engine_from_config_and_cached_generator(tmp_path):
    from fineproofs.generation import CachedGenerator
    from fineproofs.store import ResponseStore

    with FaultServer(latency=0.01) as srv:
        cfg = EngineConfig(
            kind="http", model="fake-model", endpoints=[srv.url], max_concurrency=4, price_completion_per_1m=1.0
        )
        reqs = [GenerationRequest(user(f"q{i}"), n=2) for i in range(6)]
        with make_engine(cfg) as eng, ResponseStore(tmp_path / "store.sqlite") as store:
            gen = CachedGenerator(eng, store, progress=False)
            first = gen.run(reqs, stage="t", prompt_version="v1")
            calls = len(srv.received)
            again = gen.run(reqs, stage="t", prompt_version="v1")
            assert len(srv.received) == calls  # a finished run re-runs with zero requests
    assert [[r.text for r in rs] for rs in first] == [[r.text for r in rs] for rs in again]
    assert all(r.ok and r.cost > 0 for rs in first for r in rs)


# ----- VLLMEngine (no GPU here: the real check is bench/bench_vllm_gpu.py) -----


def test_vllm_missing_gives_install_hint(monkeypatch):
    from fineproofs.engines.vllm_engine import VLLMEngine

    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` fail
    with pytest.raises(EngineError, match=r"pip install 'fineproofs\[vllm\]'"):
        VLLMEngine.from_config(EngineConfig(kind="vllm", model="some/model"))


def test_vllm_request_to_sampling_params_mapping(monkeypatch):
    """Only the request -> SamplingParams mapping, against a stand-in module."""
    from fineproofs.engines import vllm_engine

    fake_vllm_for_mapping_test = types.ModuleType("vllm")

    class RecordingSamplingParams:
        def __init__(self, **kw):
            self.kw = kw

    fake_vllm_for_mapping_test.SamplingParams = RecordingSamplingParams
    monkeypatch.setitem(sys.modules, "vllm", fake_vllm_for_mapping_test)
    req = GenerationRequest(user("x"), n=4, sampling=SamplingParams(0.7, 0.95, 1234, 1), seeds=[42, 43, 44, 45])
    sp = vllm_engine.sampling_params_for(req)
    assert sp.kw == dict(n=4, temperature=0.7, top_p=0.95, max_tokens=1234, seed=42)
    assert vllm_engine.sampling_params_for(GenerationRequest(user("x"))).kw["seed"] == 0
    knobs = SamplingParams(top_k=20, reasoning_effort="low", extra_body={"min_p": 0.1})
    kw = vllm_engine.sampling_params_for(GenerationRequest(user("x"), sampling=knobs)).kw
    assert (kw["top_k"], kw["min_p"]) == (20, 0.1) and "reasoning_effort" not in kw  # that one goes to the template


def test_vllm_prompt_rendering_with_the_real_tokenizer():
    """Chat template + prefill rendering (no vLLM needed: only the tokenizer is used)."""
    from transformers import AutoTokenizer

    from fineproofs.engines.vllm_engine import VLLMEngine
    from fineproofs.models import embedded_model_dir

    eng = object.__new__(VLLMEngine)  # skip __init__: it would load vLLM
    eng.tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir())
    eng.chat_template_kwargs = {}
    plain = eng.tokenizer.decode(eng.prompt_ids(GenerationRequest(user("Prove it."))))
    cont = eng.tokenizer.decode(eng.prompt_ids(GenerationRequest(user("Prove it."), prefill="<score>")))
    assert plain.rstrip().endswith("assistant") and "Prove it." in plain
    assert cont.endswith("<score>") and cont.count("<|im_start|>assistant") == 1
