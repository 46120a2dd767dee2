"""Thread count and OpenMP wait policy of the embedded engine (no timing assertions:
the figures under contention are in bench/bench_threads.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from fineproofs.config import EngineConfig
from fineproofs.engines.threads import (
    available_cpus,
    cgroup_cpu_limit,
    choose_threads,
    parse_cfs,
    parse_cpu_max,
)


@pytest.mark.parametrize(
    "text,cpus",
    [
        ("max 100000\n", None),
        ("200000 100000\n", 2.0),
        ("150000 100000", 1.5),
        ("50000", 0.5),
        ("", None),
        ("junk 100000", None),
        ("0 100000", None),
    ],
)
def test_parse_cgroup_v2_cpu_max(text, cpus):
    assert parse_cpu_max(text) == cpus


@pytest.mark.parametrize(
    "quota,period,cpus",
    [
        ("-1\n", "100000\n", None),
        ("300000", "100000", 3.0),
        ("25000", "100000", 0.25),
        ("x", "100000", None),
    ],
)
def test_parse_cgroup_v1_cfs(quota, period, cpus):
    assert parse_cfs(quota, period) == cpus


def test_cgroup_limit_from_a_fake_tree(tmp_path):
    assert cgroup_cpu_limit(tmp_path, proc_cgroup="") is None  # nothing readable: no limit
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(tmp_path, proc_cgroup="0::/\n") is None
    own = tmp_path / "job" / "step"
    own.mkdir(parents=True)
    (own / "cpu.max").write_text("150000 100000\n")  # the process's own cgroup (v2)
    assert cgroup_cpu_limit(tmp_path, proc_cgroup="0::/job/step\n") == 1.5
    v1 = tmp_path / "cpu"
    v1.mkdir()
    (v1 / "cpu.cfs_quota_us").write_text("100000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_limit(tmp_path, proc_cgroup="0::/job/step\n") == 1.0  # the tightest wins


@pytest.mark.parametrize(
    "affinity,quota,expected",
    [
        ({0, 1, 2, 3}, None, 4),
        ({0, 1, 2, 3}, 2.0, 2),
        ({0, 1, 2, 3}, 1.5, 2),
        ({0, 1}, 8.0, 2),
        ({5}, None, 1),
        ({0, 1, 2, 3}, 0.25, 1),
        (set(), None, 1),
    ],
)
def test_available_cpus(affinity, quota, expected):
    assert available_cpus(affinity, quota, read_quota=False) == expected


def test_choose_threads_prefers_the_config():
    assert choose_threads(3, affinity={0}, read_quota=False) == 3
    assert choose_threads(None, affinity={0, 1}, read_quota=False) == 2
    assert 1 <= choose_threads() <= (os.cpu_count() or 1)


def test_engine_config_thread_settings():
    cfg = EngineConfig()
    assert (cfg.threads, cfg.omp_wait_policy) == (None, "passive")
    assert EngineConfig(threads=2, omp_wait_policy="active").threads == 2
    for bad in (dict(threads=0), dict(omp_wait_policy="spin")):
        with pytest.raises(ValueError):
            EngineConfig(**bad)


PROBE = """
import json, os, sys
{pre}
import fineproofs.engines
from fineproofs.engines.threads import configure_torch
n = configure_torch({threads}, {policy!r})
import torch
print(json.dumps({{"env": os.environ.get("OMP_WAIT_POLICY"), "threads": torch.get_num_threads(), "n": n}}))
"""


def _probe(env_policy: str | None, pre: str = "", threads: int | None = 1, policy: str = "passive") -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if env_policy is not None:
        env["OMP_WAIT_POLICY"] = env_policy
    code = PROBE.format(pre=pre, threads=threads, policy=policy)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1]) | {"stderr": out.stderr}


def test_wait_policy_is_set_before_torch_starts():
    got = _probe(None)
    assert (got["env"], got["threads"], got["n"]) == ("PASSIVE", 1, 1)


def test_profile_can_ask_for_active_waiting():
    assert _probe(None, policy="active")["env"] == "ACTIVE"


def test_the_users_environment_wins():
    assert _probe("ACTIVE")["env"] == "ACTIVE"


def test_too_late_is_reported_not_hidden():
    got = _probe(None, pre="import torch", policy="active")
    assert got["env"] is None  # torch (OpenMP) started first: nothing set behind its back
    assert "cannot take effect" in got["stderr"]
