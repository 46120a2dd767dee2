"""Helpers shared by the HTTP build tests and the resume benchmark: the paper profile
pointed at loopback servers, running a build in a subprocess that gets SIGKILLed,
and reading a run's rows and store keys."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from fineproofs.config import profile_text
from fineproofs.store import ResponseStore

PAPER_MODELS = (
    "deepseek-ai/DeepSeek-Math-V2",
    "Qwen/Qwen3-4B-Thinking-2507",
    "openai/gpt-oss-20b",
    "gemini-3-pro-preview",  # the paper profile's Gemini id (the release's API id)
    "gemini-3-pro",  # eval_paper's judge
)


def paper_profile_file(
    tmp_path: Path,
    url: str,
    student_samples: int | None = None,
    *,
    role_urls: dict[str, str] | None = None,
    overrides: dict | None = None,
) -> Path:
    """The bundled paper profile with every role at ``url`` (or at ``role_urls[role]``);
    ``overrides`` are merged into it (nested dicts merge, e.g. ``{"build": {"chunk_problems": 8}}``)."""
    data = yaml.safe_load(profile_text("paper"))
    for role in ("teacher", "student", "judge", "grader", "rubric_writer"):
        data[role]["engine"]["endpoints"] = [(role_urls or {}).get(role, url)]
        data[role]["engine"]["max_retries"] = 8
        data[role]["engine"]["api_key_env"] = ""  # loopback stand-ins need no key (subprocesses see no env)
    if student_samples:
        data["student_samples"] = student_samples
    # offline: the bundled demo problems instead of the Hub sources, and the shared
    # IMO-ProofBench CSV instead of the Hub benchmark ids
    data["sources"] = {"paths": ["demo"]}
    bench = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "imobench" / "proofbench_v2.csv"
    data["decontamination"]["benchmarks"] = [str(bench)] if bench.exists() else []
    data["decontamination"]["required"] = bench.exists()
    _merge(data, overrides or {})  # the caller's overrides win
    path = tmp_path / "paper-loopback.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _merge(into: dict, extra: dict) -> None:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v


def rows(out: Path) -> dict[str, list]:
    import pyarrow.parquet as pq

    return {str(p.relative_to(out)): pq.read_table(p).to_pylist() for p in sorted(out.glob("data/*/*.parquet"))}


RUNNER = """
import sys
from fineproofs.config import load_profile
from fineproofs.pipelines.build import Build
shard = tuple(int(x) for x in sys.argv[4].split("/")) if len(sys.argv) > 4 else None
Build(load_profile(sys.argv[1]), sys.argv[2], "rl", limit=int(sys.argv[3]), progress=False, shard=shard).run()
"""


def _runner_args(profile: Path, out: Path, limit: int, shard: tuple[int, int] | None) -> list[str]:
    return [sys.executable, "-c", RUNNER, str(profile), str(out), str(limit)] + (
        [f"{shard[0]}/{shard[1]}"] if shard else []
    )


def store_path(out: Path, shard: tuple[int, int] | None = None) -> Path:
    """The response store of a run directory, or of one of its shards."""
    from fineproofs.pipelines.build import shard_dir

    return (shard_dir(out, *shard) if shard else out) / "store.sqlite"


def run_killed_at(profile: Path, out: Path, delays: list[float], limit: int = 4) -> int:
    """Start the build, SIGKILL it after each delay, then let the last run finish."""
    env = {**os.environ, "GEMINI_API_KEY": "test-key-not-secret"}
    kills = 0
    for d in delays:
        p = subprocess.Popen(
            [sys.executable, "-c", RUNNER, str(profile), str(out), str(limit)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(d)
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            kills += 1
        p.wait()
    subprocess.run(
        [sys.executable, "-c", RUNNER, str(profile), str(out), str(limit)],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return kills


def run_killed_after(
    profile: Path,
    out: Path,
    targets: list[int],
    limit: int = 4,
    timeout: float = 120,
    shard: tuple[int, int] | None = None,
    on_kill=None,
) -> int:
    """Start the build (or one ``shard`` of it) and SIGKILL it once the store holds each
    target number of records (so every kill lands mid-generation), then let the last run
    finish. ``on_kill()`` is called right after each kill, before the next run starts."""
    env = {**os.environ, "GEMINI_API_KEY": "test-key-not-secret"}
    store = store_path(out, shard)
    kills = 0
    for target in sorted(targets):
        p = subprocess.Popen(
            _runner_args(profile, out, limit, shard), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.time() + timeout
        while p.poll() is None and time.time() < deadline:
            if store.exists() and stored_count(out, shard) >= target:
                os.kill(p.pid, signal.SIGKILL)
                kills += 1
                break
            time.sleep(0.005)
        p.wait()
        if on_kill:
            on_kill()
    subprocess.run(
        _runner_args(profile, out, limit, shard),
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return kills


def stored_count(out: Path, shard: tuple[int, int] | None = None) -> int:
    import sqlite3

    try:
        with sqlite3.connect(store_path(out, shard), timeout=1) as db:
            return db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    except sqlite3.OperationalError:  # schema not created yet
        return 0


def store_keys(out: Path, shard: tuple[int, int] | None = None) -> list[str]:
    with ResponseStore(store_path(out, shard)) as st:
        return st.keys()
