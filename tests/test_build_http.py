"""The paper profile, unchanged but for its endpoints, against loopback servers.

Every role of ``profiles/paper.yaml`` is served by a :class:`faultproxy.FaultServer`
answering with :func:`oracle.oracle_reply`. Checks: a build runs end to end over
HTTP; a re-run sends zero requests; 30 % injected faults give the same output as a
clean run; a build SIGKILLed at random moments and resumed gives the same output
with no lost or duplicated records.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from faultproxy import FaultServer  # noqa: E402
from oracle import oracle_reply  # noqa: E402

from fineproofs.config import load_profile  # noqa: E402
from fineproofs.pipelines.build import Build  # noqa: E402
from fineproofs.store import ResponseStore  # noqa: E402

PAPER_MODELS = ("deepseek-ai/DeepSeek-Math-V2", "Qwen/Qwen3-4B-Thinking-2507", "openai/gpt-oss-20b", "gemini-3-pro")


def paper_profile_file(tmp_path: Path, url: str, student_samples: int | None = None) -> Path:
    data = yaml.safe_load(Path(load_profile.__code__.co_filename).with_name("profiles").joinpath("paper.yaml").read_text())
    for role in ("teacher", "student", "judge", "grader", "rubric_writer"):
        data[role]["engine"]["endpoints"] = [url]
        data[role]["engine"]["max_retries"] = 8
    if student_samples:
        data["student_samples"] = student_samples
    path = tmp_path / "paper-loopback.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def server():
    with FaultServer(model=PAPER_MODELS, reply_fn=oracle_reply) as s:
        yield s


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "test-key-not-secret")


def shard_digest(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.glob("data/*/*.parquet"))}


def rows(out: Path) -> dict[str, list]:
    import pyarrow.parquet as pq

    return {str(p.relative_to(out)): pq.read_table(p).to_pylist() for p in sorted(out.glob("data/*/*.parquet"))}


@pytest.mark.parametrize("split", ["rl", "sft"])
def test_paper_profile_over_http_and_rerun_sends_nothing(tmp_path, server, split):
    prof = load_profile(str(paper_profile_file(tmp_path, server.url)))
    assert prof.student_samples == 128
    out = tmp_path / split
    res = Build(prof, out, split, limit=3, progress=False).run()
    assert res.generated > 0 and res.rows["default"] > 0
    sent = len(server.received)
    first = rows(out)
    res2 = Build(prof, out, split, limit=3, progress=False).run()
    assert res2.generated == 0 and len(server.received) == sent
    assert rows(out) == first
    if split == "rl":
        (r,) = first["data/default/train-00000-of-00001.parquet"][:1]
        assert r["num_rewards"] == 128


def test_faults_at_30_percent_give_the_clean_output(tmp_path):
    outs = {}
    for rate in (0.0, 0.3):
        with FaultServer(model=PAPER_MODELS, reply_fn=oracle_reply, fault_rate=rate, seed=7, slow_s=0.2,
                         faults=("http_500", "http_503", "http_429", "reset", "truncated")) as s:
            prof = load_profile(str(paper_profile_file(tmp_path, s.url, student_samples=8)))
            out = tmp_path / f"rate{rate}"
            Build(prof, out, "rl", limit=4, progress=False).run()
            outs[rate] = rows(out)
            if rate:
                assert sum(s.injected.values()) > 0
    assert outs[0.0] == outs[0.3]


RUNNER = """
import sys
from fineproofs.config import load_profile
from fineproofs.pipelines.build import Build
Build(load_profile(sys.argv[1]), sys.argv[2], "rl", limit=4, progress=False).run()
"""


def run_killed_at(profile: Path, out: Path, delays: list[float]) -> None:
    """Start the build, SIGKILL it after each delay, then let the last run finish."""
    env = {**os.environ, "GEMINI_API_KEY": "test-key-not-secret"}
    for d in delays:
        p = subprocess.Popen([sys.executable, "-c", RUNNER, str(profile), str(out)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(d)
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
        p.wait()
    subprocess.run([sys.executable, "-c", RUNNER, str(profile), str(out)], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def store_keys(out: Path) -> list[str]:
    with ResponseStore(out / "store.sqlite") as st:
        return [r[0] for r in st._db.execute("SELECT key FROM responses ORDER BY key")]


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume(tmp_path):
    with FaultServer(model=PAPER_MODELS, reply_fn=oracle_reply, latency=0.01) as s:
        profile = paper_profile_file(tmp_path, s.url, student_samples=16)
        clean = tmp_path / "clean"
        run_killed_at(profile, clean, [])
        rng = random.Random(0)
        killed = tmp_path / "killed"
        run_killed_at(profile, killed, [rng.uniform(1.0, 6.0) for _ in range(3)])
    assert rows(killed) == rows(clean)
    keys = store_keys(killed)
    assert keys == store_keys(clean)  # nothing lost, nothing duplicated
    assert len(keys) == len(set(keys))
