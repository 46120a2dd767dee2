"""HTTPEngine against a real ``transformers serve`` process on loopback, serving the
embedded SmolLM2-135M-Instruct, directly and through the fault-injecting proxy."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from faultproxy import FaultServer

from fineproofs.engines.base import GenerationRequest, SamplingParams
from fineproofs.engines.http_engine import HTTPEngine

pytestmark = pytest.mark.slow

GREEDY = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=8, seed=0)
PROMPTS = ["What is 2+2?", "Name a prime number.", "Is 9 a square?", "Say hello."]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve_cli() -> list[str]:
    exe = Path(sys.executable).with_name("transformers")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("transformers")
    if not found:
        pytest.skip("the `transformers` CLI is not installed (pip install 'transformers[serving]')")
    return [found]


@pytest.fixture(scope="module")
def server():
    """(base_url, model name) of a `transformers serve` process; killed at teardown."""
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    from fineproofs.models import embedded_model_dir

    model = str(embedded_model_dir())
    port = _free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TRANSFORMERS_VERBOSITY="error")
    log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"transformers-serve-{port}.log", "w")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        _serve_cli() + ["serve", model, "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"transformers serve exited with {proc.returncode}; see {log.name}")
            try:
                with urllib.request.urlopen(url + "/models", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"transformers serve did not answer within 90 s; see {log.name}")
            time.sleep(0.3)
        yield url, model
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
        log.close()


def _requests() -> list[GenerationRequest]:
    reqs = [GenerationRequest([{"role": "user", "content": p}], sampling=GREEDY) for p in PROMPTS]
    reqs.append(
        GenerationRequest([{"role": "user", "content": "Count to three."}], n=3, sampling=GREEDY, seeds=[1, 2, 3])
    )
    return reqs


def _texts(out) -> dict[int, list[str]]:
    return {i: [c.text for c in cs] for i, cs in out.items()}


def test_real_server_direct_and_through_faults(server):
    url, model = server
    reqs = _requests()
    with HTTPEngine("embedded", [url], max_concurrency=2, max_retries=2) as eng:
        direct = dict(eng.generate(reqs))
        assert eng.served_model == model  # preflight resolved `embedded` to what the server lists
        assert eng.n_ignored  # transformers serve answers one choice whatever n is
    assert all(c.ok for cs in direct.values() for c in cs), [c.reason for cs in direct.values() for c in cs]
    assert [len(direct[i]) for i in range(len(reqs))] == [1, 1, 1, 1, 3]
    for cs in direct.values():
        for c in cs:
            assert c.text.strip() and c.prompt_tokens > 0 and 0 < c.completion_tokens <= 8
            assert c.finish_reason in ("stop", "length")

    with FaultServer(upstream=url.removesuffix("/v1"), fault_rate=0.3, slow_s=0.5, seed=3) as proxy:
        with HTTPEngine(
            model, [proxy.url], max_concurrency=2, max_retries=8, backoff_base_s=0.05, backoff_max_s=0.2
        ) as eng:
            faulted = dict(eng.generate(reqs))
        print(
            f"\ninjected {dict(proxy.injected)}, retries {eng.stats['retries']}, "
            f"choices per upstream reply {proxy.upstream_choices}"
        )
        assert sum(proxy.injected.values()) > 0
        # n=3 was asked for, yet every upstream reply carried one choice: the server ignores n
        assert any(b.get("n") == 3 for b in proxy.received)
        assert set(proxy.upstream_choices) == {1}
    assert all(c.ok for cs in faulted.values() for c in cs)
    assert _texts(faulted) == _texts(direct)


def test_real_server_prefill_falls_back(server):
    """transformers serve rejects vLLM's continue_final_message (422): the engine resends
    the prefill as a plain assistant turn and returns prefill + reply."""
    url, model = server
    req = GenerationRequest([{"role": "user", "content": "What is 2+2?"}], sampling=GREEDY, prefill="Answer:")
    with HTTPEngine(model, [url], max_retries=1) as eng:
        [(_, [c])] = eng.generate([req])
        assert not eng.endpoints[0].continue_ok
    assert c.ok and c.text.startswith("Answer:") and len(c.text) > len("Answer:")
