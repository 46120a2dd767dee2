"""Peak memory of a test run: the pytest process and everything it starts, together.

Runs ``pytest -q -p no:cacheprovider ARGS`` (or ``--command``) and samples, every
``--interval`` seconds, the memory of the whole process tree: the root process and all its
descendants (``transformers serve``, vLLM's API server and engine core, a build run as a
subprocess). Each process counts with its PSS from ``/proc/<pid>/smaps_rollup`` (shared
pages split between the processes that map them, so the sum is what the tree holds)
or, where that file cannot be read, its RSS. A pytest plugin beside this file
(``_pytest_current.py``) writes the running test's node id to a file, so the peak is
tied to a test, and the peak of each test file is kept.

The command's own output goes to stderr; stdout gets one JSON line::

    {"peak_gib": ..., "peak_rss_gib": ..., "at_s": ..., "test": "tests/x.py::test_y",
     "processes": [{"pid": ..., "gib": ..., "cmd": "..."}, ...], "per_file": {...},
     "rc": 0, "wall_s": ..., "samples": ..., "command": "..."}

``peak_gib`` is the PSS total at the peak (RSS where PSS was unreadable), ``peak_rss_gib``
the RSS total of the same moment (counts shared libraries once per process, so it is
higher; PSS also splits the pages shared with processes outside the tree, such as another
Python with torch loaded, so on a busy machine the truth lies between the two), ``processes`` the biggest processes of that moment, ``per_file`` the peak of
each test file (the sample's total while one of its tests ran, fixtures' setup and
teardown included) with ``end_gib`` (the total at its last sample) and ``end_root_gib``
(the root process alone then: what the file leaves resident for the files after it).
``--per-test`` adds the same for each test.

    python bench/bench_suite_memory.py                          # the whole suite
    python bench/bench_suite_memory.py tests/test_serve.py      # one file
    python bench/bench_suite_memory.py -m "not slow" --top 8
    FINEPROOFS_VLLM_PYTHON=.venv-vllm/bin/python python bench/bench_suite_memory.py tests/test_vllm_serve.py

The exit status is the command's.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

GIB = 1024**3
BENCH = Path(__file__).resolve().parent


def _children_map() -> dict[int, list[int]]:
    """ppid -> pids, from /proc/<pid>/stat (one pass over /proc)."""
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue  # gone meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        fields = stat[stat.rfind(b")") + 2 :].split()
        kids.setdefault(int(fields[1]), []).append(int(name))
    return kids


def tree(root: int) -> list[int]:
    """``root`` and all its descendants that are alive now."""
    kids = _children_map()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, ()))
    return out


def memory(pid: int) -> tuple[int, int] | None:
    """(PSS or RSS, RSS) of a process, in bytes; None once it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            vals = {}
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("Rss", "Pss"):
                    vals[key] = int(rest.split()[0]) * 1024
            if "Rss" in vals:
                return vals.get("Pss", vals["Rss"]), vals["Rss"]
    except (OSError, ValueError):
        pass
    try:
        with open(f"/proc/{pid}/statm") as f:
            rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        return rss, rss
    except (OSError, ValueError, IndexError):
        return None


def cmdline(pid: int, width: int = 120) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return "?"
    if argv:  # an interpreter's path says little: keep the file name of each path-like argument
        argv = [os.path.basename(a) if a.startswith("/") and len(a) > 40 else a for a in argv]
    text = " ".join(argv)
    return text if len(text) <= width else text[: width - 1] + "…"


class Sampler(threading.Thread):
    def __init__(self, root: int, current: Path, interval: float, top: int):
        super().__init__(daemon=True)
        self.root, self.current, self.interval, self.top = root, current, interval, top
        self.stop = threading.Event()
        self.t0 = time.monotonic()
        self.samples = 0
        self.peak = {"peak_gib": 0.0, "peak_rss_gib": 0.0, "at_s": 0.0, "test": None, "processes": []}
        self.per_file: dict[str, dict] = {}
        self.per_test: dict[str, dict] | None = None

    def test(self) -> str | None:
        try:
            return self.current.read_text() or None
        except OSError:
            return None

    def sample(self) -> None:
        test = self.test()  # before the memory: the test that was running when it was measured
        procs = []
        for pid in tree(self.root):
            m = memory(pid)
            if m:
                procs.append((pid, *m))
        if not procs:
            return
        self.samples += 1
        total = sum(p[1] for p in procs)
        total_rss = sum(p[2] for p in procs)
        root = next((p[1] for p in procs if p[0] == self.root), 0)
        if test and "::" in test:
            f = test.split("::", 1)[0]
            rec = self.per_file.setdefault(f, {"peak_gib": 0.0, "test": None, "end_gib": 0.0, "end_root_gib": 0.0})
            if total / GIB > rec["peak_gib"]:
                rec.update(peak_gib=round(total / GIB, 3), test=test)
            rec.update(end_gib=round(total / GIB, 3), end_root_gib=round(root / GIB, 3))
            if self.per_test is not None:
                t = self.per_test.setdefault(test, {"peak_gib": 0.0, "end_root_gib": 0.0})
                t.update(peak_gib=max(t["peak_gib"], round(total / GIB, 3)), end_root_gib=round(root / GIB, 3))
        if total / GIB > self.peak["peak_gib"]:
            procs.sort(key=lambda p: -p[1])
            self.peak = {
                "peak_gib": round(total / GIB, 3),
                "peak_rss_gib": round(total_rss / GIB, 3),
                "at_s": round(time.monotonic() - self.t0, 1),
                "test": test,
                "processes": [
                    {"pid": pid, "gib": round(m / GIB, 3), "cmd": cmdline(pid)} for pid, m, _ in procs[: self.top]
                ],
            }

    def run(self) -> None:
        while not self.stop.is_set():
            t = time.monotonic()
            self.sample()
            self.stop.wait(max(0.0, self.interval - (time.monotonic() - t)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Arguments this tool does not know go to pytest.",
        allow_abbrev=False,
    )
    ap.add_argument("--command", default="pytest -q -p no:cacheprovider", help="what runs (the args are appended)")
    ap.add_argument("--interval", type=float, default=0.2, help="seconds between samples")
    ap.add_argument("--top", type=int, default=5, help="processes listed at the peak")
    ap.add_argument("--files", type=int, default=0, help="per-file peaks listed (0: all, largest first)")
    ap.add_argument("--per-test", action="store_true", help="also each test's peak and its process's memory at its end")
    args, rest = ap.parse_known_args(argv)
    cmd = shlex.split(args.command) + rest

    with tempfile.TemporaryDirectory(prefix="fp-mem-") as tmp:
        current = Path(tmp) / "current"
        env = dict(os.environ)
        env["FINEPROOFS_BENCH_CURRENT_TEST"] = str(current)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH), env.get("PYTHONPATH")]))
        plugins = [p for p in env.get("PYTEST_PLUGINS", "").split(",") if p.strip()]
        env["PYTEST_PLUGINS"] = ",".join([*plugins, "_pytest_current"])
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=sys.stderr, env=env)
        sampler = Sampler(proc.pid, current, args.interval, args.top)
        if args.per_test:
            sampler.per_test = {}
        sampler.start()
        try:
            rc = proc.wait()
        except KeyboardInterrupt:
            proc.terminate()
            rc = proc.wait()
        sampler.stop.set()
        sampler.join()

    per_file = sorted(sampler.per_file.items(), key=lambda kv: -kv[1]["peak_gib"])
    if args.files:
        per_file = per_file[: args.files]
    out = {
        **sampler.peak,
        "per_file": dict(per_file),
        **({"per_test": sampler.per_test} if sampler.per_test is not None else {}),
        "rc": rc,
        "wall_s": round(time.monotonic() - t0, 1),
        "samples": sampler.samples,
        "command": shlex.join(cmd),
    }
    print(json.dumps(out))
    return rc


if __name__ == "__main__":
    sys.exit(main())
