"""The paper profile, unchanged but for its endpoints, against loopback servers.

Every role of ``profiles/paper.yaml`` is served by a :class:`faultproxy.FaultServer`
answering with :func:`oracle.oracle_reply`. Checks: a build runs end to end over
HTTP; a re-run sends zero requests; 30 % injected faults give the same output as a
clean run; a build SIGKILLed at random moments and resumed gives the same output
with no lost or duplicated records.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from buildkit import PAPER_MODELS, paper_profile_file, rows, run_killed_after, run_killed_at, store_keys
from faultproxy import FaultServer
from oracle import oracle_reply

from fineproofs.config import load_profile
from fineproofs.pipelines.build import Build


@pytest.fixture
def server():
    with FaultServer(model=PAPER_MODELS, reply_fn=oracle_reply) as s:
        yield s


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "test-key-not-secret")


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
        with FaultServer(
            model=PAPER_MODELS,
            reply_fn=oracle_reply,
            fault_rate=rate,
            seed=7,
            slow_s=0.2,
            faults=("http_500", "http_503", "http_429", "reset", "truncated"),
        ) as s:
            prof = load_profile(str(paper_profile_file(tmp_path, s.url, student_samples=8)))
            out = tmp_path / f"rate{rate}"
            Build(prof, out, "rl", limit=4, progress=False).run()
            outs[rate] = rows(out)
            if rate:
                assert sum(s.injected.values()) > 0
    assert outs[0.0] == outs[0.3]


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume(tmp_path):
    with FaultServer(model=PAPER_MODELS, reply_fn=oracle_reply, latency=0.01) as s:
        profile = paper_profile_file(tmp_path, s.url, student_samples=16)
        clean = tmp_path / "clean"
        run_killed_at(profile, clean, [])
        total = len(store_keys(clean))
        killed = tmp_path / "killed"
        # each kill lands mid-generation: once the store holds a random number of records
        kills = run_killed_after(profile, killed, random.Random(0).sample(range(1, total), 3))
    assert kills == 3
    assert rows(killed) == rows(clean)
    keys = store_keys(killed)
    assert keys == store_keys(clean)  # nothing lost, nothing duplicated
