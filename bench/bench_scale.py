"""A paper-shaped RL build at growing scale, against loopback stand-in servers (run on demand).

One :class:`faultproxy.FaultServer` per role (student, judge, rubric writer), each with
its own ``latency`` and ``max_concurrency`` (sequence slots: a choice holds one slot for
``latency`` seconds, so a server serves ``slots / latency`` choices per second, like a
GPU server at its batch limit). The student and the judge get the same slots and
latency ("equal speed"): each has N*k choices to serve, so each alone is busy for about
N*k*latency/slots seconds. Replies come from :func:`oracle.oracle_reply`; every student
rollout carries ``--reply-bytes`` of thinking and every judge reply ``--judge-bytes`` of
reasoning (returned apart, as gpt-oss does). The problems are synthetic, in the
Hub-table format the paper profile reads, so they pass its filters and dedup.

Each build runs in a subprocess of its own (``fineproofs.pipelines.build.Build`` on the
bundled paper profile, endpoints pointed at the servers); printed per N:

* ``wall``: the build subprocess end to end (ingest, LLM stages, split);
* ``llm``: the LLM phase, from the first choice any server started to the last it finished;
* ``RSS``: peak RSS of the build process (its own ``ru_maxrss``);
* ``busy``: per role, the time its server had at least one choice in service, and that
  as a fraction of ``llm``;
* ``llm/max``: ``llm`` over the busier role's busy time (1.0 = the build is exactly as
  long as its slowest role; the issue's target is <= 1.15; sequential stages give ~2);
* ``overlap``: (busy_student + busy_judge - llm) / min(busy_student, busy_judge), clipped
  to [0, 1]: 1 when the shorter role runs entirely inside the longer one, 0 when the
  roles run one after the other.

Then RSS and ``llm/max`` as ratios to the smallest N (the target: RSS at the largest N
<= 1.2 x RSS at the smallest, same k and reply size).

    python bench/bench_scale.py                              # N = 50, 200, 800; k = 16; 4 KB rollouts
    python bench/bench_scale.py --problems 50 200 --k 64 --reply-bytes 24000
    python bench/bench_scale.py --overlap off                # stages one after another, for comparison
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from buildkit import PAPER_MODELS, paper_profile_file  # noqa: E402
from faultproxy import FaultServer  # noqa: E402
from oracle import oracle_reply  # noqa: E402

RUNNER = """
import json, resource, sys, time
from fineproofs.config import load_profile
from fineproofs.pipelines.build import Build
t0 = time.monotonic()
res = Build(load_profile(sys.argv[1]), sys.argv[2], "rl", progress=False).run()
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"t0": t0, "t1": time.monotonic(), "rows": res.rows.get("default", 0), "generated": res.generated,
                  "counts": res.counts, "rss_mb": ru.ru_maxrss / 1024, "cpu_s": ru.ru_utime + ru.ru_stime}))
"""

WORDS = (
    "triangle circle polynomial integer prime sequence function inequality point line angle chord tangent "
    "divisor residue graph vertex edge coloring tournament matrix determinant root coefficient sum product "
    "median altitude bisector incircle circumcircle midpoint segment square cube parity permutation subset "
    "lattice grid board token move player strategy invariant bound maximum minimum"
).split()


def synth_problems(n: int, path: Path, seed: int = 0) -> Path:
    """``n`` distinct proof problems with solutions, as the Hub JSONL the profile reads."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            words = " ".join(rng.choice(WORDS) for _ in range(24))
            a, b, c = rng.randrange(2, 999), rng.randrange(2, 999), rng.randrange(2, 999)
            problem = (
                f"Problem {i}. Let $n\\ge {a}$ be an integer and consider the {words}. "
                f"Prove that $n^{{{b}}} + {c}$ is not divisible by ${a + b + c}$ for every such configuration."
            )
            solution = (
                f"Suppose the contrary for problem {i}. Reducing modulo ${a + b + c}$ and using the "
                f"{rng.choice(WORDS)} and the {rng.choice(WORDS)} gives a contradiction, since "
                f"${b}\\cdot {c}$ leaves a nonzero remainder. Hence the claim holds for every such n."
            )
            f.write(
                json.dumps(
                    {
                        "problem": problem,
                        "solution": solution,
                        "answer": "proof",
                        "problem_type": "Number Theory",
                        "question_type": "proof",
                        "problem_is_valid": "Yes",
                        "solution_is_valid": "Yes",
                        "source": "olympiads",
                        "synthetic": True,
                        "competition": f"Bench {i % 37}",
                    }
                )
                + "\n"
            )
    return path


def padded_student(nbytes: int):
    """Oracle rollouts with ``nbytes`` of thinking (where a thinking model spends its tokens)."""
    filler = "so we consider the next case and check it carefully. " * (nbytes // 53 + 1)

    def reply(messages, prefill, seed, index):
        text = oracle_reply(messages, prefill, seed, index)
        if "</think>" in text:
            head, tail = text.split("</think>", 1)
            return head + filler[: max(0, nbytes - len(text))] + "</think>" + tail
        return text

    return reply


def judge_reasoning(nbytes: int):
    filler = "check the scheme point by point against the proof. " * (nbytes // 51 + 1)
    return lambda messages, prefill, seed, index: filler[:nbytes]


def run_one(n: int, a: argparse.Namespace, tmp: Path) -> dict:
    roles = {
        "student": FaultServer(
            model=PAPER_MODELS, reply_fn=padded_student(a.reply_bytes), latency=a.latency, max_concurrency=a.slots
        ),
        "judge": FaultServer(
            model=PAPER_MODELS,
            reply_fn=oracle_reply,
            reasoning_fn=judge_reasoning(a.judge_bytes),
            reasoning_field="reasoning",
            latency=a.judge_latency or a.latency,
            max_concurrency=a.judge_slots or a.slots,
        ),
        "rubric_writer": FaultServer(
            model=PAPER_MODELS, reply_fn=oracle_reply, latency=a.latency, max_concurrency=a.slots
        ),
    }
    for s in roles.values():
        s.start()
    try:
        d = tmp / f"n{n}"
        d.mkdir()
        src = synth_problems(n, d / "problems.jsonl")
        urls = {r: s.url for r, s in roles.items()} | {
            "teacher": roles["student"].url,
            "grader": roles["rubric_writer"].url,
        }
        overrides = {"sources": {"paths": [str(src)]}, "build": {"overlap": a.overlap, "chunk_problems": a.chunk}}
        if a.no_decontam:
            overrides["decontamination"] = {"benchmarks": [], "required": False}
        profile = paper_profile_file(d, roles["student"].url, student_samples=a.k, role_urls=urls, overrides=overrides)
        env = {**os.environ, "GEMINI_API_KEY": "bench-key", "OMP_WAIT_POLICY": "PASSIVE"}
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-c", RUNNER, str(profile), str(d / "run")],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        samples = RSSSampler(proc)
        stdout, stderr = proc.communicate()
        wall = time.monotonic() - t0
        if proc.returncode:
            raise SystemExit(f"build of {n} problems failed:\n{stderr[-3000:]}")
        res = json.loads(stdout.strip().splitlines()[-1])
    finally:
        for s in roles.values():
            s.stop()
    samples.stop()
    first = min(s.first_at for s in roles.values() if s.first_at is not None)
    last = max(s.last_at for s in roles.values() if s.last_at is not None)
    llm = last - first
    busy = {r: s.busy_s for r, s in roles.items()}
    bs, bj = busy["student"], busy["judge"]
    return {
        "problems": n,
        "kept": res["counts"].get("limit", res["counts"].get("decontaminated")),
        "rows": res["rows"],
        "rollouts": res["counts"].get("rollouts", 0),
        "wall": wall,
        "llm": llm,
        "rss_mb": res["rss_mb"],
        "busy": busy,
        "choices": {
            r: s.slot_s / (a.latency if r != "judge" else (a.judge_latency or a.latency)) for r, s in roles.items()
        },
        "llm_over_max": llm / max(bs, bj),
        "wall_over_max": wall / max(bs, bj),
        "overlap": max(0.0, min(1.0, (bs + bj - llm) / min(bs, bj))) if min(bs, bj) > 0 else 0.0,
        "before_llm": first - res["t0"],
        "after_llm": res["t1"] - last,
        "cpu_s": res["cpu_s"],
        # VmRSS of the build when the LLM phase started, its peak inside that phase, and after it
        "rss_at_llm_start": samples.at(first),
        "rss_llm_peak": samples.peak(first, last),
        "rss_after_llm": samples.peak(last, float("inf")),
    }


class RSSSampler:
    """Samples the VmRSS of a process every 0.1 s from ``/proc/<pid>/status`` (MB, by time.monotonic)."""

    def __init__(self, proc: subprocess.Popen):
        import threading

        self.points: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._pid = proc.pid
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for line in Path(f"/proc/{self._pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        self.points.append((time.monotonic(), int(line.split()[1]) / 1024))
            except (OSError, ValueError):
                return
            self._stop.wait(0.1)

    def stop(self) -> None:
        self._stop.set()
        self._t.join(timeout=2)

    def at(self, t: float) -> float:
        before = [r for ts, r in self.points if ts <= t]
        return before[-1] if before else 0.0

    def peak(self, t0: float, t1: float) -> float:
        return max((r for ts, r in self.points if t0 <= ts <= t1), default=0.0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--problems", type=int, nargs="+", default=[50, 200, 800])
    p.add_argument("--k", type=int, default=16, help="student rollouts per problem")
    p.add_argument("--reply-bytes", type=int, default=4000, help="bytes of each student rollout")
    p.add_argument("--judge-bytes", type=int, default=1000, help="bytes of reasoning in each judge reply")
    p.add_argument("--latency", type=float, default=0.2, help="seconds each choice holds a server slot")
    p.add_argument("--slots", type=int, default=64, help="sequence slots per server (its concurrency cap)")
    p.add_argument("--judge-latency", type=float, default=None, help="the judge's own latency (default: --latency)")
    p.add_argument("--judge-slots", type=int, default=None, help="the judge's own slots (default: --slots)")
    p.add_argument("--chunk", type=int, default=32, help="profile build.chunk_problems")
    p.add_argument("--overlap", choices=["auto", "on", "off"], default="auto")
    p.add_argument("--no-decontam", action="store_true", help="skip decontamination (faster ingest)")
    p.add_argument("--keep", type=Path, default=None, help="keep each run directory under DIR/n<N> (to diff builds)")
    a = p.parse_args()
    print(
        f"k={a.k}, rollout {a.reply_bytes} B, judge reasoning {a.judge_bytes} B, latency {a.latency} s, "
        f"{a.slots} slots per server, chunk {a.chunk} problems, overlap {a.overlap}"
    )
    print(
        f"{'N':>5} {'rollouts':>8} {'rows':>5} {'wall s':>7} {'llm s':>7} {'RSS MB':>7} {'student busy':>14} "
        f"{'judge busy':>14} {'rubric busy':>13} {'llm/max':>7} {'wall/max':>8} {'overlap':>7} {'pre/post s':>10} {'cpu s':>6} "
        f"{'RSS llm start/peak/after':>24}"
    )
    results = []
    if a.keep:
        a.keep.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as d:
        for n in a.problems:
            r = run_one(n, a, a.keep or Path(d))
            results.append(r)
            b = r["busy"]
            print(
                f"{n:>5} {r['rollouts']:>8} {r['rows']:>5} {r['wall']:>7.1f} {r['llm']:>7.1f} {r['rss_mb']:>7.0f} "
                + " ".join(f"{b[x]:>7.1f} ({b[x] / r['llm']:.2f})" for x in ("student", "judge"))
                + f" {b['rubric_writer']:>6.1f} ({b['rubric_writer'] / r['llm']:.2f})"
                + f" {r['llm_over_max']:>7.2f} {r['wall_over_max']:>8.2f} {r['overlap']:>7.2f}"
                + f" {r['before_llm']:>4.1f}/{r['after_llm']:.1f} {r['cpu_s']:>6.1f}"
                + f" {r['rss_at_llm_start']:>8.0f}/{r['rss_llm_peak']:.0f}/{r['rss_after_llm']:.0f}",
                flush=True,
            )
    base = results[0]
    print(f"\nratios to N={base['problems']} (same k and reply size):")
    for r in results[1:]:
        print(
            f"  N={r['problems']:>5} ({r['problems'] / base['problems']:.0f}x): peak RSS {r['rss_mb'] / base['rss_mb']:.2f}x "
            f"(target <= 1.2), llm/max busy {r['llm_over_max']:.2f} (target <= 1.15)"
        )


if __name__ == "__main__":
    main()
