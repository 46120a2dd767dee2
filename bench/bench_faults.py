"""The exit contract under injected faults: one table row per fault (run on demand).

A paper-shaped RL build (the bundled paper profile, every role pointed at loopback
:class:`faultproxy.FaultServer` stand-ins answering with :func:`oracle.oracle_reply`)
runs through the CLI in a subprocess, first fault-free, then once per fault; when a
fault ends a build, the same command is run again after the fault is gone. Printed per
fault: the exit code of each run, the last line the build printed, the rows of the
finished build (and whether they equal the fault-free rows), and the choices the
servers generated beyond the fault-free build's ("paid twice": work redone because a
fault lost it).

    python bench/bench_faults.py                 # 6 problems, k = 8
    python bench/bench_faults.py --limit 10 --k 16
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from buildkit import PAPER_MODELS, paper_profile_file, rows  # noqa: E402
from faultproxy import FaultServer  # noqa: E402
from oracle import oracle_reply  # noqa: E402

ROLES = ("student", "judge", "rubric_writer", "teacher", "grader")


class Counting:
    """Oracle replies, counted (one per generated choice), with switchable misbehaviour."""

    def __init__(self) -> None:
        self.generated = 0
        self.empty_every = 0  # every n-th choice comes back empty (0: never)
        self.on_request: Callable[[], None] | None = None
        self._lock = threading.Lock()

    def __call__(self, messages, prefill, seed, index):
        with self._lock:
            self.generated += 1
            n = self.generated
            if self.on_request:
                self.on_request()
        if self.empty_every and n % self.empty_every == 0:
            return ""
        return oracle_reply(messages, prefill, seed, index)


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return out


class Scenario:
    def __init__(
        self, a: argparse.Namespace, tmp: Path, name: str, engine: dict | None = None, judge: dict | None = None
    ):
        self.a, self.name = a, name
        self.dir = tmp / name
        self.dir.mkdir()
        self.replies = {"main": Counting(), "judge": Counting()}
        self.servers = {
            "main": FaultServer(model=PAPER_MODELS, reply_fn=self.replies["main"], latency=a.latency),
            "judge": FaultServer(model=PAPER_MODELS, reply_fn=self.replies["judge"], latency=a.latency),
        }
        for s in self.servers.values():
            s.start()
        urls = {r: self.servers["judge" if r == "judge" else "main"].url for r in ROLES}
        overrides = {
            "decontamination": {"benchmarks": [], "required": False},
            "build": {"chunk_problems": 1, "inflight_chunks": 1},  # requests spread over the build
            **{r: {"engine": dict(engine or {})} for r in ROLES},
        }
        overrides["judge"]["engine"].update(judge or {})
        self.profile = paper_profile_file(
            self.dir, urls["student"], student_samples=a.k, role_urls=urls, overrides=overrides
        )
        self.out = self.dir / "run"
        self.codes: list[int] = []
        self.last = ""

    def command(self, *extra: str) -> list[str]:
        return [sys.executable, "-m", "fineproofs", "build", "--split", "rl", "--profile", str(self.profile),
                "--limit", str(self.a.limit), "--output", str(self.out), "--no-progress", *extra]  # fmt: skip

    def run(self, *extra: str, during: Callable[[subprocess.Popen], None] | None = None) -> int:
        env = {**os.environ, "GEMINI_API_KEY": "bench-key", "OMP_WAIT_POLICY": "PASSIVE"}
        p = subprocess.Popen(self.command(*extra), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if during:
            during(p)
        _, err = p.communicate(timeout=self.a.timeout)
        lines = [x for x in err.splitlines() if x.startswith("fineproofs: ")]
        self.last = " | ".join(x for x in [self.last, lines[-1][12:] if lines else ""] if x)
        self.codes.append(p.returncode)
        return p.returncode

    @property
    def generated(self) -> int:
        return sum(r.generated for r in self.replies.values())

    def close(self) -> None:
        for s in self.servers.values():
            s.stop()


def outage(sc: Scenario, server: str, after: int, seconds: float) -> None:
    """Every request to ``server`` fails (503) for ``seconds``, from its ``after``-th choice on."""
    srv, rep = sc.servers[server], sc.replies[server]
    srv.faults = ("http_503",)

    def start() -> None:
        if rep.generated == after:
            srv.fault_rate = 1.0
            threading.Timer(seconds, lambda: setattr(srv, "fault_rate", 0.0)).start()

    rep.on_request = start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--limit", type=int, default=6, help="problems")
    p.add_argument("--k", type=int, default=8, help="student rollouts per problem")
    p.add_argument("--latency", type=float, default=0.01)
    p.add_argument("--timeout", type=float, default=600, help="seconds before a run counts as hung")
    a = p.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_faults_") as d:
        tmp = Path(d)

        clean = Scenario(a, tmp, "clean")
        clean.run()
        ref, base = rows(clean.out), clean.generated
        clean.close()

        def finish(sc: Scenario, fault: str, *extra: str, rerun: bool = True) -> None:
            if sc.codes[-1] != 0 and rerun:
                sc.run(*extra)
            got = rows(sc.out) if sc.codes[-1] == 0 else {}
            n = sum(len(v) for k, v in got.items() if "/default/" in k)
            results.append((fault, sc.codes, sc.last, n, got == ref if got else None, sc.generated - base))
            sc.close()

        sc = Scenario(a, tmp, "faults30", engine={"max_retries": None})
        for s in sc.servers.values():
            s.fault_rate, s.seed, s.faults = 0.3, 7, ("http_500", "http_503", "http_429", "reset", "truncated")
        sc.run()
        finish(sc, "30 % 5xx/429/reset/truncated")

        sc = Scenario(a, tmp, "outage_short", engine={"retry_budget_s": 600})
        outage(sc, "judge", after=3, seconds=5)
        sc.run()
        finish(sc, "judge down 5 s, 600 s budget")

        sc = Scenario(a, tmp, "outage_long", engine={"retry_budget_s": 2, "breaker_failures": 0})
        outage(sc, "judge", after=3, seconds=10)
        sc.run()
        time.sleep(10)
        finish(sc, "judge down 10 s, 2 s budget")

        sc = Scenario(a, tmp, "outage_shards", engine={"retry_budget_s": 2, "breaker_failures": 0})
        outage(sc, "judge", after=3, seconds=10)
        sc.run("--shards", "2")
        sc.run("--shards", "2", "--allow-incomplete")  # merged and marked incomplete, still exit 3
        time.sleep(10)
        finish(sc, "judge down 10 s in --shards 2, then --allow-incomplete", "--shards", "2")

        sc = Scenario(a, tmp, "dead_judge", judge={"breaker_failures": 20})
        sc.servers["judge"].fault_rate, sc.servers["judge"].faults = 1.0, ("http_503",)
        sc.run()
        calls = len(sc.servers["judge"].received)
        sc.servers["judge"].fault_rate = 0.0
        finish(sc, f"judge always 503 ({calls} judge calls)")

        sc = Scenario(a, tmp, "hung_judge", judge={"request_timeout_s": 1, "retry_budget_s": 3, "breaker_failures": 0})
        sc.servers["judge"].fault_rate, sc.servers["judge"].faults, sc.servers["judge"].slow_s = 1.0, ("slow",), 30
        sc.run()
        sc.servers["judge"].fault_rate = 0.0
        finish(sc, "judge never answers (1 s timeout)")

        sc = Scenario(a, tmp, "empty")
        sc.replies["main"].empty_every = sc.replies["judge"].empty_every = 3
        sc.run()
        finish(sc, "every 3rd reply an empty 200")

        sc = Scenario(a, tmp, "kill_shard")

        def kill_a_shard(proc: subprocess.Popen) -> None:
            while proc.poll() is None:
                kids = _children(proc.pid)
                if any((sc.out / "shards").glob("*/store.sqlite")) and sc.generated > 10 and kids:
                    os.kill(kids[0], signal.SIGKILL)
                    return
                time.sleep(0.01)

        sc.run("--shards", "2", during=kill_a_shard)
        finish(sc, "kill -9 one of 2 shards", "--shards", "2")

        sc = Scenario(a, tmp, "two_writers", engine={})
        for s in sc.servers.values():
            s.latency = 0.3  # a build long enough for a second one to start meanwhile

        def second_writer(proc: subprocess.Popen) -> None:
            while proc.poll() is None and not (sc.out / "store.sqlite").exists():
                time.sleep(0.01)
            env = {**os.environ, "GEMINI_API_KEY": "bench-key"}
            r = subprocess.run(sc.command(), env=env, capture_output=True, text=True)
            sc.codes.append(r.returncode)
            lines = [x for x in r.stderr.splitlines() if x.startswith("fineproofs: ")]
            sc.second = lines[-1][12:] if lines else ""

        sc.run(during=second_writer)  # codes: the second writer's exit, then the first build's
        sc.last = getattr(sc, "second", "")
        finish(sc, "a second build meanwhile (its exit first)", rerun=False)

    print(
        f"fault-free: exit 0, {sum(len(v) for k, v in ref.items() if '/default/' in k)} rows, {base} choices generated"
    )
    print(f"{'fault':<40} {'exit codes':<12} {'rows':>4} {'= clean':>7} {'paid twice':>10}  last line")
    for fault, codes, last, n, same, extra in results:
        print(
            f"{fault:<40} {' -> '.join(map(str, codes)):<12} {n:>4} {same!s:>7} {extra:>10}  {last[:400]}",
            flush=True,
        )


if __name__ == "__main__":
    main()
