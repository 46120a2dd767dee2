"""Robustness of everything that reads or writes a run directory, on generated damage.

- Tampered run directories: every file a build leaves (manifest, card, card data, parquet
  shards, response store, quarantine, stage files, problems, profile, plots) is damaged in
  generated ways (truncated at seeded random offsets, random bytes written over it, emptied,
  replaced by garbage, deleted, valid JSON of the wrong shape) and read back by
  ``fineproofs status``, ``stats``, ``push --dry-run`` and ``push`` against an unreachable
  endpoint. Each command either works or prints one ``fineproofs:`` line and exits 1; it
  never shows a traceback and never changes a byte of the run directory.
- Nothing the user owns is deleted: generated user trees (files and the folders ingest uses
  itself) refused as ``--output`` with every byte kept; a fineproofs run directory whose
  ingest fingerprint changes recomputes only ingest's own outputs; ``decontaminate`` never
  writes over its input (by any alias) and refuses special files without hanging.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_splits import make_run

from fineproofs.cli import cli
from fineproofs.store import ResponseStore, StoredResponse

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "fineproofs" / "data" / "demo"
UNREACHABLE = "http://127.0.0.1:9"
TOKEN = "hf_RobustTestToken0123456789abcdefXYZ"


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def tree(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every file (and 'dir' for every folder) under ``root``."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = "dir"
        for f in filenames:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, root)] = hashlib.sha256(Path(p).read_bytes()).hexdigest()
    return out


def invoke(args: list[str], **kw):
    return CliRunner().invoke(cli, args, catch_exceptions=True, **kw)


def check_clean(result, what: str, ok_codes=(0, 1)) -> list[str]:
    """Problems with a CLI result: a traceback, an exception other than SystemExit, an
    unexpected exit code, or a failure that is not exactly one ``fineproofs:`` line."""
    bad = []
    out = result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        bad.append(f"{what}: raised {type(result.exception).__name__}: {result.exception}")
    if "Traceback" in out:
        bad.append(f"{what}: traceback in output")
    if result.exit_code not in ok_codes:
        bad.append(f"{what}: exit {result.exit_code}: {out[-300:]!r}")
    if result.exit_code != 0:
        lines = [ln for ln in out.splitlines() if ln.startswith("fineproofs:")]
        usage = result.exit_code == 2 and not lines and "\nError: " in out  # click's own usage error
        if len(lines) != 1 and not usage:
            bad.append(f"{what}: exit {result.exit_code} with {len(lines)} 'fineproofs:' lines: {out[-300:]!r}")
    return bad


def _store(path: Path) -> None:
    """A real response store with done and failed completions of two stages."""
    items = []
    for i in range(6):
        ok = i % 3 != 0
        items.append(
            (
                StoredResponse(
                    f"k{i}",
                    "rollout" if i < 3 else "grade_judge",
                    "synthetic/model",
                    "ok" if ok else "failed",
                    "" if ok else "unparseable: no score tag",
                    f"text {i}",
                    "stop",
                    100 + i,
                    20 + i,
                ),
                {"messages": [], "i": i},
            )
        )
    with ResponseStore(path) as st:
        st.put_many(items)


def _finish(run: Path, split: str) -> Path:
    """What make_run leaves out: a real store and the build manifest."""
    (run / "store.sqlite").unlink()
    _store(run / "store.sqlite")
    (run / "build.json").write_text(
        json.dumps(
            {
                "split": split,
                "profile": "paper",
                "counts": {"read": 9, "split": 4},
                "dropped": {},
                "rows": {"default": 4},
                "generated": 6,
                "cached": 0,
                "seconds": 1.5,
                "decontaminated": True,
            },
            indent=2,
        )
    )
    (run / "stages" / "rollout_grades.jsonl").write_text(
        "".join(json.dumps({"sample": f"s{i}", "score": i % 8, "status": "ok"}) + "\n" for i in range(5))
    )
    (run / "quarantine" / "llm.jsonl").write_text(
        "".join(
            json.dumps({"stage": "rollout_grades", "sample": f"s{i}", "reason": "unparseable: x"}) + "\n"
            for i in range(3)
        )
    )
    return run


@pytest.fixture(scope="module")
def templates(tmp_path_factory):
    base = tmp_path_factory.mktemp("templates")
    return {s: _finish(make_run(base / s, s, n=6), s) for s in ("rl", "sft")}


# ---------------------------------------------------------------------------
# generated damage
# ---------------------------------------------------------------------------

TARGETS = [
    "build.json",
    "card_data.json",
    "README.md",
    "data/*/*.parquet",
    "store.sqlite",
    "quarantine/llm.jsonl",
    "stages/*.jsonl",
    "problems/problems.jsonl",
    "profile.yaml",
    "plots/*.png",
]

WRONG_JSON = [
    b"[]",
    b"null",
    b'"text"',
    b"17",
    b"{}",
    b'{"split": [], "rows": "x", "seconds": "y", "counts": 5}',
    b'{"counts": {"a": "b"}, "dropped": {"x": 3}, "decontamination": [1], "roles": {"r": 1}, '
    b'"source_licences": [5], "thresholds": 3}',
]
WRONG_JSONL = [
    b"[1, 2]\n",
    b'"x"\n',
    b'{"stage": 1, "reason": []}\n',
    b"{}\n",
    b"null\n" * 3,
    b'{"statement": 5, "category": []}\n',
]
WRONG_CARD = [
    b"---\n- a list\n---\n# card\n",
    b"---\nconfigs: 5\n---\n",
    b"---\n: :\n---\n",
    b"---\nconfigs:\n- config_name: default\n  data_files: 7\n---\n",
    b"---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path: ../../etc/*\n---\n",
    b"no front matter at all\n",
]


def damages(target: str, seed: int) -> list[tuple[str, object]]:
    """(name, how) pairs for one target: how is bytes (the new content), None (delete) or
    a function of the old content."""
    rng = random.Random(f"{target}-{seed}")
    out: list[tuple[str, object]] = [
        ("empty", b""),
        ("delete", None),
        ("garbage", bytes(rng.randrange(256) for _ in range(rng.randrange(1, 2000)))),
    ]
    for _ in range(3):
        frac = rng.random()
        out.append((f"truncate@{frac:.2f}", lambda b, frac=frac: b[: int(len(b) * frac)]))
    for _ in range(2):
        pos = rng.random()
        n = rng.randrange(1, 64)
        junk = bytes(rng.randrange(256) for _ in range(n))
        out.append(
            (
                f"overwrite{n}@{pos:.2f}",
                lambda b, pos=pos, junk=junk: b[: int(len(b) * pos)] + junk + b[int(len(b) * pos) + len(junk) :],
            )
        )
    if target.endswith(".json"):
        out += [(f"json:{w[:20]!r}", w) for w in WRONG_JSON]
    elif target.endswith(".jsonl"):
        out += [(f"jsonl:{w[:20]!r}", w) for w in WRONG_JSONL]
    elif target == "README.md":
        out += [(f"card:{w[:20]!r}", w) for w in WRONG_CARD]
    elif target == "store.sqlite":
        out.append(("other_sqlite", "other_sqlite"))
    return out


def _apply(run: Path, target: str, how) -> Path:
    path = sorted(run.glob(target))[0]
    if how is None:
        path.unlink()
    elif how == "other_sqlite":
        import sqlite3

        path.unlink()
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE responses (x TEXT)")
        db.commit()
        db.close()
    elif callable(how):
        path.write_bytes(how(path.read_bytes()))
    else:
        path.write_bytes(how)
    return path


def _case(target: str, index: int):
    return pytest.param(target, index, id=f"{target}-{index}")


CASES = [_case(t, i) for t in TARGETS for i in range(len(damages(t, 0)))]
COMMANDS = {
    "status": lambda run: ["status", str(run)],
    "stats": lambda run: ["stats", str(run)],
    "push-dry-run": lambda run: ["push", str(run), "--repo-id", "org/name", "--dry-run"],
}


@pytest.mark.parametrize("target,index", CASES)
def test_tampered_run_dir(templates, tmp_path, target, index):
    """status / stats / push --dry-run on a damaged run directory: works or one line, exit 1,
    no traceback, not a byte changed."""
    split = "rl" if index % 2 == 0 else "sft"
    run = tmp_path / "run"
    shutil.copytree(templates[split], run)
    name, how = damages(target, 0)[index]
    _apply(run, target, how)
    before = tree(run)
    bad = []
    for cmd, args in COMMANDS.items():
        result = invoke(args(run))
        bad += check_clean(result, f"{cmd} [{target} {name}, {split}]")
        if tree(run) != before:
            bad.append(f"{cmd} [{target} {name}]: changed the run directory")
    assert not bad, "\n".join(bad)


@pytest.fixture
def unreachable_hub(monkeypatch):
    """huggingface_hub pointed at a closed loopback port (constants read at import patched)."""
    import huggingface_hub.constants as c

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setattr(c, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setenv("HF_ENDPOINT", UNREACHABLE)
    monkeypatch.setenv("HF_TOKEN", TOKEN)


PUSH_CASES = [(t, i) for t in TARGETS for i in (0, 1, 3, 6)]


def test_push_unreachable_on_tampered_run_dirs(templates, tmp_path, unreachable_hub):
    """A real push (to a closed port) of healthy and damaged run directories: one line,
    exit 1, no traceback, the token never printed, nothing changed."""
    bad = []
    for k, (target, index) in enumerate([(None, None), *PUSH_CASES]):
        split = "rl" if k % 2 == 0 else "sft"
        run = tmp_path / f"run{k}"
        shutil.copytree(templates[split], run)
        name = "healthy"
        if target is not None:
            name, how = damages(target, 0)[index]
            _apply(run, target, how)
        before = tree(run)
        result = invoke(["push", str(run), "--repo-id", "org/name"])
        bad += check_clean(result, f"push [{target} {name}]", ok_codes=(1,))
        if TOKEN in result.output:
            bad.append(f"push [{target} {name}]: printed the token")
        if tree(run) != before:
            bad.append(f"push [{target} {name}]: changed the run directory")
    assert not bad, "\n".join(bad)


def test_push_unreachable_subprocess(templates, tmp_path):
    """The same through a fresh interpreter, the environment set before huggingface_hub is imported."""
    run = tmp_path / "run"
    shutil.copytree(templates["rl"], run)
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    env.update(
        HF_ENDPOINT=UNREACHABLE,
        HF_HUB_DISABLE_XET="1",
        HF_TOKEN=TOKEN,
        HF_HOME=str(tmp_path / "hf"),
        HF_HUB_DISABLE_TELEMETRY="1",
    )
    before = tree(run)
    p = subprocess.run(
        [sys.executable, "-m", "fineproofs", "push", str(run), "--repo-id", "org/name"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=tmp_path,
    )
    assert p.returncode == 1, p.stderr
    assert "Traceback" not in p.stderr and TOKEN not in p.stderr + p.stdout
    assert len([ln for ln in p.stderr.splitlines() if ln.startswith("fineproofs:")]) == 1, p.stderr
    assert tree(run) == before


# ---------------------------------------------------------------------------
# nothing the user owns is deleted
# ---------------------------------------------------------------------------

USER_FOLDERS = ["work", "logs", "quarantine", "problems", "reports", "stages", "data", "notes"]


def user_tree(root: Path, seed: int) -> Path:
    """A generated user directory: files at the top and in folders fineproofs itself uses."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(rng.randrange(1, 4)):
        (root / f"file{i}.txt").write_bytes(bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300))))
    for folder in rng.sample(USER_FOLDERS, rng.randrange(1, len(USER_FOLDERS) + 1)):
        sub = root / folder / ("nested" if rng.random() < 0.3 else "")
        sub.mkdir(parents=True, exist_ok=True)
        name = rng.choice(["mine.jsonl", "problems.jsonl", "llm.jsonl", "ingest.json", "fingerprint.txt", "x.parquet"])
        (sub / name).write_text(f"user data {seed} {folder}\n")
    return root


@pytest.mark.parametrize("seed", range(6))
def test_user_directory_refused_as_output(tmp_path, seed, monkeypatch):
    """ingest / build / crawl / eval --output into a non-empty user directory: one line, every byte kept."""
    import fineproofs.pipelines.build as build_mod

    monkeypatch.setattr(build_mod.Build, "_run_stages", lambda *a, **k: pytest.fail("build ran"))
    root = user_tree(tmp_path / "mine", seed)
    before = tree(root)
    bad = []
    for args in (["ingest", "--limit", "2", "--output", str(root)], ["build", "--limit", "2", "--output", str(root)]):
        result = invoke(args)
        bad += check_clean(result, f"{args[0]} into a user directory", ok_codes=(2,))
        if "not empty" not in result.output:
            bad.append(f"{args[0]}: {result.output!r}")
        if tree(root) != before:
            bad.append(f"{args[0]}: changed the user directory")
    assert not bad, "\n".join(bad)


def _profile(tmp_path: Path, sources: Path, **filters) -> Path:
    import yaml

    from fineproofs.config import load_yaml, profile_text

    data = load_yaml(profile_text("embedded"))
    data["sources"] = {"paths": [str(sources)]}
    data["filters"] = {**data.get("filters", {}), **filters}
    path = tmp_path / f"profile{len(filters)}{sorted(filters)}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_ingest_fingerprint_change_keeps_everything_else(tmp_path):
    """A run directory whose ingest configuration changes (a touched source, another filter
    setting, other --tasks) recomputes ingest's own outputs only: the build's store, stages,
    LLM quarantine, card and every extra user file survive, byte for byte."""
    sources = tmp_path / "sources"
    shutil.copytree(DEMO / "hub", sources)
    run = tmp_path / "run"
    prof = _profile(tmp_path, sources)
    result = invoke(["ingest", "--profile", str(prof), "--limit", "3", "--output", str(run)])
    assert result.exit_code == 0, result.output
    _store(run / "store.sqlite")
    (run / "stages").mkdir()
    (run / "stages" / "rollouts.jsonl").write_text('{"stage": "data"}\n')
    (run / "quarantine" / "llm.jsonl").write_text('{"stage": "judge", "reason": "unparseable"}\n')
    (run / "README.md").write_text("# my card\n")
    (run / "card_data.json").write_text("{}\n")
    (run / "shards" / "00000-of-00002").mkdir(parents=True)
    (run / "shards" / "00000-of-00002" / "build.json").write_text("{}\n")
    (run / "logs" / "llm_rl_2").mkdir(parents=True)
    (run / "logs" / "llm_rl_2" / "completions").write_text("0\n")
    for folder in ("", "work", "logs", "quarantine", "problems", "reports"):
        (run / folder / "user-notes.txt").write_text(f"kept {folder}\n")
    keep = {
        k: v
        for k, v in tree(run).items()
        if not k.startswith(
            (
                "work/clean",
                "work/dedup",
                "work/final",
                "work/minhash",
                "work/fingerprint",
                "logs/clean",
                "logs/dedup",
                "logs/minhash",
                "logs/decontaminate",
                "problems/problems.jsonl",
                "reports/ingest.json",
                "reports/dedup_clusters.json",
                "quarantine/parsed",
                "quarantine/clean",
                "quarantine/classified",
                "quarantine/dedup",
                "quarantine/decontaminated",
            )
        )
    }
    changes = [
        ("touch a source", [], lambda: os.utime(sources / "problems.jsonl", ns=(1, 1))),
        ("filter setting", ["--profile", str(_profile(tmp_path, sources, min_statement_chars=21))], None),
        ("--tasks 2", ["--tasks", "2"], None),
    ]
    for what, extra, act in changes:
        if act:
            act()
        args = ["ingest", "--profile", str(prof), "--limit", "3", "--output", str(run), *extra]
        result = invoke(args)
        assert result.exit_code == 0, (what, result.output)
        after = tree(run)
        lost = {k for k, v in keep.items() if after.get(k) != v}
        assert not lost, f"{what}: ingest removed or changed {sorted(lost)}"
        assert (run / "problems" / "problems.jsonl").stat().st_size > 0


# ---------------------------------------------------------------------------
# decontaminate: never its input, never a special file
# ---------------------------------------------------------------------------


@pytest.fixture
def decontam_files(tmp_path):
    bench = tmp_path / "bench.jsonl"
    bench.write_text(
        "".join(
            json.dumps(
                {
                    "problem": f"Prove that {i} squared plus one is never divisible by three "
                    f"for any integer n and label {i}."
                }
            )
            + "\n"
            for i in range(4)
        )
    )
    rows = [
        json.dumps({"problem": f"Show that for every positive integer n the number n^{i} + {i} is odd."})
        for i in range(6)
    ]
    rows[3] = "[1, 2, 3]"  # a non-object line: quarantined, and INPUT must survive it
    data = ("\n".join(rows) + "\n").encode()
    return bench, data


def _aliases(tmp_path: Path, inp: Path) -> list[tuple[str, Path, Path]]:
    """(name, INPUT as given, --output) pairs where the output is INPUT or INPUT's quarantine file."""
    (tmp_path / "sub").mkdir(exist_ok=True)
    link = tmp_path / "link.jsonl"
    link.symlink_to(inp)
    hard = tmp_path / "hard.jsonl"
    os.link(inp, hard)
    q_in = tmp_path / "out.jsonl.quarantine.jsonl"
    shutil.copy(inp, q_in)
    return [
        ("same path", inp, inp),
        ("relative", inp, Path(os.path.relpath(inp))),
        ("dot-dot", inp, tmp_path / "sub" / ".." / inp.name),
        ("symlink", inp, link),
        ("symlink input", link, inp),
        ("hard link", inp, hard),
        ("quarantine file is INPUT", q_in, tmp_path / "out.jsonl"),
    ]


def test_decontaminate_never_overwrites_input(tmp_path, decontam_files, monkeypatch):
    bench, data = decontam_files
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(data)
    monkeypatch.chdir(tmp_path)
    bad = []
    for name, given, out in _aliases(tmp_path, inp):
        content = Path(given).read_bytes()
        result = invoke(["decontaminate", str(given), "--against", str(bench), "--output", str(out)])
        bad += check_clean(result, f"decontaminate --output ({name})", ok_codes=(2,))
        if not Path(given).exists() or Path(given).read_bytes() != content:
            bad.append(f"{name}: INPUT changed or removed")
    assert not bad, "\n".join(bad)


def _special_files(tmp_path: Path):
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    yield "fifo", fifo
    sock_path = tmp_path / "sock.jsonl"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    try:
        yield "socket", sock_path
    finally:
        sock.close()
    for dev in ("/dev/zero", "/dev/null", "/dev/urandom"):
        if os.path.exists(dev):
            yield dev, Path(dev)


def _invoke_timeout(args: list[str], seconds: float, fifo: Path | None = None):
    """``invoke`` in a thread; None when it is still running after ``seconds`` (a reader
    stuck on ``fifo`` is then released so the thread can end)."""
    box: dict = {}
    t = threading.Thread(target=lambda: box.setdefault("r", invoke(args)), daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive() and fifo is not None:
        with open(fifo, "wb"):
            pass
        t.join(5)
    return box.get("r") if "r" in box and not t.is_alive() else None


def test_decontaminate_refuses_special_files(tmp_path, decontam_files):
    """A FIFO, socket or device as INPUT, benchmark or --output: refused with one line, at
    once; a special file given as --output is never replaced."""
    import stat

    bench, data = decontam_files
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(data)
    bad = []
    for name, special in _special_files(tmp_path):
        mode = os.stat(special).st_mode
        out = tmp_path / f"out-{name.replace('/', '_')}.jsonl"
        roles = [
            ("INPUT", [str(special), "--against", str(bench), "--output", str(out)]),
            ("--against", [str(inp), "--against", str(special), "--output", str(out)]),
        ]
        if not name.startswith("/dev/"):  # never point a test at a system device as an output
            roles.append(("--output", [str(inp), "--against", str(bench), "--output", str(special)]))
        for role, args in roles:
            result = _invoke_timeout(["decontaminate", *args], 20, special if name == "fifo" else None)
            if result is None:
                bad.append(f"{role} {name}: hung")
                continue
            bad += check_clean(result, f"{role} {name}", ok_codes=(1, 2))
            if out.exists():
                bad.append(f"{role} {name}: wrote {out.name}")
            if os.stat(special).st_mode != mode or stat.S_ISREG(os.stat(special).st_mode):
                bad.append(f"{role} {name}: replaced the special file")
    assert not bad, "\n".join(bad)
