"""Peak disk use of a build against the size of the finished run directory (run on demand).

A paper-shaped build of the RL split (``--split sft``: SFT) (the bundled paper profile, every role pointed at loopback
:class:`faultproxy.FaultServer` stand-ins answering with :func:`oracle.oracle_reply`, on
``--problems`` synthetic problems in the Hub-table format) runs through the CLI in a
subprocess while a thread of this process walks the run directory every ``--every``
seconds and adds up every file in it (the SQLite ``-wal``/``-shm`` files, datatrove's
``work/`` and ``logs/``, temporary files included). Printed, one JSON line per run:

* ``final``: the run directory once the build has exited (bytes);
* ``peak``: the largest sample, and ``ratio`` = peak / final;
* ``top``: the largest paths at the peak (bytes), and ``grew``: what the peak holds
  beyond the final directory, by top-level entry (``store.sqlite-wal``, ``work``, ...).

Sizes are allocated bytes (``st_blocks * 512``, what fills a disk); ``--apparent`` adds
up file lengths instead. Sampling can miss a peak shorter than ``--every``; the
deterministic check of the bound is ``tests/test_disk_peak.py``.

With ``--rerun`` the finished build is run again on the same directory and sampled too
(it rewrites its stage files and split beside the old ones).

    python bench/bench_disk.py                         # 200 problems, k = 16, RL
    python bench/bench_disk.py --problems 10 --rerun   # a small build, then its re-run
    python bench/bench_disk.py --split sft --problems 400 --k 32 --reply-bytes 8000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from bench_scale import padded_student, synth_problems  # noqa: E402
from buildkit import PAPER_MODELS, paper_profile_file  # noqa: E402
from faultproxy import FaultServer  # noqa: E402
from oracle import oracle_reply  # noqa: E402


def sizes(root: Path, apparent: bool = False) -> dict[str, int]:
    """Every file under ``root`` (relative path -> bytes); files that vanish meanwhile are skipped."""
    out: dict[str, int] = {}
    stack = [root]
    while stack:
        d = stack.pop()
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for e in entries:
            try:
                if e.is_dir(follow_symlinks=False):
                    stack.append(Path(e.path))
                    continue
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            out[os.path.relpath(e.path, root)] = st.st_size if apparent else st.st_blocks * 512
    return out


class DiskSampler:
    """Walks ``root`` every ``every`` seconds in a thread; keeps the largest sample whole."""

    def __init__(self, root: Path, every: float, apparent: bool):
        self.root, self.every, self.apparent = root, every, apparent
        self.peak: dict[str, int] = {}
        self.peak_total = 0
        self.samples = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, name="disk-sampler", daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            s = sizes(self.root, self.apparent)
            self.samples += 1
            if (total := sum(s.values())) > self.peak_total:
                self.peak, self.peak_total = s, total
            self._stop.wait(self.every)

    def stop(self) -> None:
        self._stop.set()
        self._t.join(timeout=10)


def top_level(s: dict[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for path, n in s.items():
        head = path.split(os.sep, 1)[0]
        out[head] = out.get(head, 0) + n
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--problems", type=int, default=200, help="synthetic problems to build")
    p.add_argument("--k", type=int, default=16, help="student rollouts per problem")
    p.add_argument("--reply-bytes", type=int, default=4000, help="bytes of thinking in each student rollout")
    p.add_argument("--latency", type=float, default=0.005, help="seconds each choice holds a server slot")
    p.add_argument("--every", type=float, default=0.05, help="seconds between two samples of the run directory")
    p.add_argument("--apparent", action="store_true", help="add up file lengths instead of allocated blocks")
    p.add_argument("--top", type=int, default=8, help="paths listed at the peak")
    p.add_argument("--split", choices=["rl", "sft"], default="rl")
    p.add_argument("--rerun", action="store_true", help="also run the finished build again and sample that run")
    p.add_argument("--timeout", type=float, default=900, help="seconds before the build counts as hung")
    a = p.parse_args()
    server = FaultServer(model=PAPER_MODELS, reply_fn=padded_student(a.reply_bytes), latency=a.latency)
    judge = FaultServer(model=PAPER_MODELS, reply_fn=oracle_reply, latency=a.latency)
    with tempfile.TemporaryDirectory(prefix="bench_disk_") as d, server, judge:
        tmp = Path(d)
        src = synth_problems(a.problems, tmp / "problems.jsonl")
        urls = dict.fromkeys(("student", "rubric_writer", "teacher", "grader"), server.url) | {"judge": judge.url}
        overrides = {"sources": {"paths": [str(src)]}, "decontamination": {"benchmarks": [], "required": False}}
        profile = paper_profile_file(tmp, server.url, student_samples=a.k, role_urls=urls, overrides=overrides)
        out = tmp / "run"
        env = {**os.environ, "GEMINI_API_KEY": "bench-key", "OMP_WAIT_POLICY": "PASSIVE"}
        cmd = [sys.executable, "-m", "fineproofs", "build", "--split", a.split, "--profile", str(profile),
               "--output", str(out), "--no-progress"]  # fmt: skip
        for run in ("build", "rerun") if a.rerun else ("build",):
            t0 = time.monotonic()
            sampler = DiskSampler(out, a.every, a.apparent)
            r = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=a.timeout)
            sampler.stop()
            wall = time.monotonic() - t0
            if r.returncode:
                raise SystemExit(f"the {run} failed (exit {r.returncode}):\n{r.stderr[-3000:]}")
            report(run, a, sampler, sizes(out, a.apparent), wall)


def report(run: str, a: argparse.Namespace, sampler: DiskSampler, final: dict[str, int], wall: float) -> None:
    total = sum(final.values())
    top = sorted(sampler.peak.items(), key=lambda kv: -kv[1])[: a.top]
    fin_top = top_level(final)
    grew = {k: v - fin_top.get(k, 0) for k, v in top_level(sampler.peak).items() if v > fin_top.get(k, 0)}
    print(
        json.dumps(
            {
                "run": run,
                "split": a.split,
                "problems": a.problems,
                "k": a.k,
                "sizes": "apparent" if a.apparent else "allocated",
                "final": total,
                "peak": sampler.peak_total,
                "ratio": round(sampler.peak_total / total, 3) if total else None,
                "top": dict(top),
                "grew": dict(sorted(grew.items(), key=lambda kv: -kv[1])),
                "final_top": dict(sorted(fin_top.items(), key=lambda kv: -kv[1])[: a.top]),
                "samples": sampler.samples,
                "wall_s": round(wall, 1),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
