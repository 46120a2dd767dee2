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

PAPER_MODELS = ("deepseek-ai/DeepSeek-Math-V2", "Qwen/Qwen3-4B-Thinking-2507", "openai/gpt-oss-20b", "gemini-3-pro")


def paper_profile_file(tmp_path: Path, url: str, student_samples: int | None = None) -> Path:
    data = yaml.safe_load(profile_text("paper"))
    for role in ("teacher", "student", "judge", "grader", "rubric_writer"):
        data[role]["engine"]["endpoints"] = [url]
        data[role]["engine"]["max_retries"] = 8
    if student_samples:
        data["student_samples"] = student_samples
    # offline: decontaminate against the shared IMO-ProofBench CSV instead of the Hub ids
    bench = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "imobench" / "proofbench_v2.csv"
    data["decontamination"]["benchmarks"] = [str(bench)] if bench.exists() else []
    data["decontamination"]["required"] = bench.exists()
    path = tmp_path / "paper-loopback.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def rows(out: Path) -> dict[str, list]:
    import pyarrow.parquet as pq

    return {str(p.relative_to(out)): pq.read_table(p).to_pylist() for p in sorted(out.glob("data/*/*.parquet"))}


RUNNER = """
import sys
from fineproofs.config import load_profile
from fineproofs.pipelines.build import Build
Build(load_profile(sys.argv[1]), sys.argv[2], "rl", limit=int(sys.argv[3]), progress=False).run()
"""


def run_killed_at(profile: Path, out: Path, delays: list[float], limit: int = 4) -> int:
    """Start the build, SIGKILL it after each delay, then let the last run finish."""
    env = {**os.environ, "GEMINI_API_KEY": "test-key-not-secret"}
    kills = 0
    for d in delays:
        p = subprocess.Popen([sys.executable, "-c", RUNNER, str(profile), str(out), str(limit)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(d)
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            kills += 1
        p.wait()
    subprocess.run([sys.executable, "-c", RUNNER, str(profile), str(out), str(limit)], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return kills


def run_killed_after(profile: Path, out: Path, targets: list[int], limit: int = 4, timeout: float = 120) -> int:
    """Start the build and SIGKILL it once the store holds each target number of
    records (so every kill lands mid-generation), then let the last run finish."""
    env = {**os.environ, "GEMINI_API_KEY": "test-key-not-secret"}
    kills = 0
    for target in sorted(targets):
        p = subprocess.Popen([sys.executable, "-c", RUNNER, str(profile), str(out), str(limit)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + timeout
        while p.poll() is None and time.time() < deadline:
            if (out / "store.sqlite").exists() and stored_count(out) >= target:
                os.kill(p.pid, signal.SIGKILL)
                kills += 1
                break
            time.sleep(0.005)
        p.wait()
    subprocess.run([sys.executable, "-c", RUNNER, str(profile), str(out), str(limit)], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return kills


def stored_count(out: Path) -> int:
    import sqlite3

    try:
        with sqlite3.connect(out / "store.sqlite", timeout=1) as db:
            return db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    except sqlite3.OperationalError:  # schema not created yet
        return 0


def store_keys(out: Path) -> list[str]:
    with ResponseStore(out / "store.sqlite") as st:
        return st.keys()


