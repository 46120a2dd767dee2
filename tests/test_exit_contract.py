"""The exit contract: a build ends whole (exit 0), or incomplete (non-zero, counts by
reason, "re-run the same command", nothing written from it, nothing pushed), or whole
with deliberate drops. Faults come from :class:`faultproxy.FaultServer` on loopback,
whose replies (:func:`oracle.oracle_reply`) are a function of the request, so a build
that survived a fault can be compared row for row with a fault-free one.

* a server outage mid-build, longer than the retry budget: exit 3 with one line, no
  split, no card, no push; the same command after the outage writes the fault-free rows;
* a judge that answers every call with 503: the breaker stops the build after N
  failed calls with one line naming the role, the endpoint and the error;
* a 200 whose content is empty is a failure, retried alone, never an answer;
* a call left waiting is reported while it waits.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sqlite3
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from buildkit import PAPER_MODELS, paper_profile_file, rows
from faultproxy import FaultServer, fake_reply
from oracle import oracle_reply

from fineproofs.cli import cli
from fineproofs.engines.base import GenerationRequest
from fineproofs.engines.http_engine import HTTPEngine
from fineproofs.generation import CachedGenerator
from fineproofs.store import ResponseStore

ROLES = ("student", "judge", "rubric_writer", "teacher", "grader")
LIMIT = 4
FAST = {"backoff_base_s": 0.01, "backoff_max_s": 0.05, "preflight": False}


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "test-key-not-secret")


def _profile(tmp: Path, urls: dict[str, str], engine: dict, judge: dict | None = None) -> Path:
    overrides = {
        "decontamination": {"benchmarks": [], "required": False},
        **{r: {"engine": dict(engine)} for r in ROLES},
    }
    if judge:
        overrides["judge"]["engine"].update(judge)
    tmp.mkdir(parents=True, exist_ok=True)
    return paper_profile_file(tmp, urls["student"], student_samples=4, role_urls=urls, overrides=overrides)


def _build(profile: Path, out: Path, *extra: str):
    args = ["build", "--split", "rl", "--profile", profile, "--limit", LIMIT, "--output", out, "--no-progress"]
    return CliRunner().invoke(cli, [str(a) for a in [*args, *extra]])


def _fault_free_build(tmp_path: Path, engine: dict) -> Path:
    """The reference run directory: the same build with no fault."""
    with FaultServer(model=PAPER_MODELS, reply_fn=oracle_reply) as clean_srv:
        clean = tmp_path / "clean"
        res = _build(_profile(tmp_path / "p0", dict.fromkeys(ROLES, clean_srv.url), engine), clean)
        assert res.exit_code == 0, res.output
    return clean


class OutageServer(FaultServer):
    """Oracle replies until ``down_from`` chat requests have arrived; every later one gets a
    503 until ``up()`` (decided on arrival, so the outage starts at the same request whatever
    the timing)."""

    def __init__(self, down_from: int):
        super().__init__(model=PAPER_MODELS, reply_fn=oracle_reply, faults=("http_503",))
        self.down_from, self.arrived, self.is_up = down_from, 0, False

    def _fault_for(self, body: dict) -> str | None:
        self.arrived += 1
        if not self.is_up and self.arrived > self.down_from:
            return "http_503"
        return None

    def up(self) -> None:
        self.is_up = True


def test_an_outage_ends_incomplete_and_the_same_command_then_writes_the_fault_free_rows(tmp_path):
    engine = {"retry_budget_s": 0.3, "breaker_failures": 0}  # the outage outlasts the budget; no breaker
    clean = _fault_free_build(tmp_path, engine)
    with OutageServer(down_from=12) as srv:
        profile = _profile(tmp_path / "p1", dict.fromkeys(ROLES, srv.url), engine)
        out = tmp_path / "run"
        res = _build(profile, out, "--push-to", "someone/fineproofs-rl")
        assert res.exit_code == 3, res.output
        lines = [x for x in res.output.strip().splitlines() if x.startswith("fineproofs: ")]
        assert len(lines) == 1 and "Traceback" not in res.output, res.output
        line = lines[0]
        assert "build incomplete" in line and "re-run the same command" in line.lower()
        assert "engine_failure" in line or "judge_failure" in line
        assert "pushed" not in res.output
        assert not (out / "data").exists() and not (out / "README.md").exists() and not (out / "build.json").exists()
        assert srv.injected["http_503"] > 0

        srv.up()  # the server is back: the same command finishes the build
        res = _build(profile, out)
        assert res.exit_code == 0, res.output
    assert rows(out) == rows(clean) and rows(out)


@pytest.fixture
def hub(monkeypatch):
    """huggingface_hub pointed at the loopback Hub (tests/hubserver.py)."""
    import huggingface_hub.constants as c
    from hubserver import HubServer

    with HubServer() as server:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr(c, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        monkeypatch.setattr(c, "HF_HUB_DISABLE_XET", True)
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_TOKEN", "hf_FineproofsTestToken0123456789abcdef")
        yield server


@pytest.mark.parametrize("allow", [False, True], ids=["refused", "allowed"])
def test_an_incomplete_build_is_pushed_only_when_asked_and_then_says_so(tmp_path, hub, allow):
    with OutageServer(down_from=12) as srv:
        profile = _profile(
            tmp_path / "p", dict.fromkeys(ROLES, srv.url), {"retry_budget_s": 0.3, "breaker_failures": 0}
        )
        out = tmp_path / "run"
        res = _build(profile, out, "--push-to", "someone/partial", *(["--allow-incomplete"] if allow else []))
    assert res.exit_code == 3, res.output
    line = [x for x in res.output.splitlines() if x.startswith("fineproofs: ")][-1]
    assert "build incomplete" in line and "re-run the same command" in line.lower()
    if not allow:
        assert not hub.repos and not (out / "data").exists()  # nothing written, nothing pushed
        return
    assert "written and pushed anyway" in line
    files = hub.files("someone/partial")
    assert "README.md" in files and any(f.startswith("data/default/") for f in files)
    assert b"**Incomplete build.**" in files["README.md"]
    assert json.loads((out / "build.json").read_text())["incomplete"]


def test_a_dead_judge_trips_the_breaker_with_one_line(tmp_path):
    with (
        FaultServer(model=PAPER_MODELS, reply_fn=oracle_reply) as ok,
        FaultServer(model=PAPER_MODELS, reply_fn=oracle_reply, fault_rate=1.0, faults=("http_503",)) as dead,
    ):
        urls = dict.fromkeys(ROLES, ok.url) | {"judge": dead.url}
        profile = _profile(
            tmp_path, urls, {"retry_budget_s": 600.0}, judge={"breaker_failures": 6, "max_concurrency": 2}
        )
        res = _build(profile, tmp_path / "run")
    assert res.exit_code == 1, res.output
    lines = [x for x in res.output.strip().splitlines() if x.startswith("fineproofs: ")]
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    assert "judge" in lines[0] and dead.url in lines[0] and "http_503" in lines[0] and "re-run" in lines[0]
    # stopped after the breaker's 6 failures (plus what was in flight), not after every call's budget
    assert len(dead.received) <= 6 + 2
    assert not (tmp_path / "run" / "data").exists()


def test_an_empty_200_is_a_failure_retried_alone_never_an_answer(tmp_path):
    calls = {"n": 0}

    def first_two_empty(messages, prefill, seed, index):
        calls["n"] += 1
        return "" if calls["n"] <= 2 else fake_reply(messages, prefill, seed, index)

    msgs = [{"role": "user", "content": "prove it"}]
    with FaultServer(reply_fn=first_two_empty) as srv, HTTPEngine("fake-model", [srv.url], **FAST) as eng:
        [(_, cs)] = eng.generate([GenerationRequest(msgs, n=3, seeds=[40, 41, 42])])
        assert all(c.ok for c in cs)
        assert [c.text for c in cs] == [fake_reply(msgs, "", s, 0) for s in (40, 41, 42)]
        # the two empty choices were asked for again, each alone with its own seed
        assert sorted((b.get("n", 1), b["seed"]) for b in srv.received[1:]) == [(1, 40), (1, 41)]

    with (
        FaultServer(reply_fn=lambda *a: "  \n") as srv,
        HTTPEngine("fake-model", [srv.url], retry_budget_s=0.3, **FAST) as eng,
        ResponseStore(tmp_path / "s.sqlite") as store,
    ):
        gen = CachedGenerator(eng, store, progress=False)
        ((r,),) = gen.run([GenerationRequest(msgs, n=1)], stage="rollouts", prompt_version="v")
        assert not r.ok and r.reason.startswith("empty_reply")
        assert store.get_many([r.key])[r.key].status == "failed"  # the next run asks again


def test_a_call_left_waiting_is_reported_while_it_waits(caplog):
    msgs = [{"role": "user", "content": "prove it"}]
    with (
        FaultServer(latency=0.5) as srv,
        HTTPEngine("fake-model", [srv.url], watch_s=0.1, **FAST) as eng,
        caplog.at_level(logging.WARNING, logger="fineproofs.engines.http_engine"),
    ):
        [(_, cs)] = eng.generate([GenerationRequest(msgs)])
        assert cs[0].ok
    assert any("waiting on fake-model at " in r.getMessage() for r in caplog.records)


# ----- one writer per run directory -----


def test_a_second_writer_is_refused_in_one_line_naming_the_holder(tmp_path):
    from fineproofs import rundir

    out = rundir.claim(tmp_path / "run")
    with rundir.locked(out):
        res = _build(_profile(tmp_path / "p", dict.fromkeys(ROLES, "http://127.0.0.1:9/v1"), {}), out)
        assert res.exit_code != 0
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and "is being written by pid " in lines[0] and "Traceback" not in res.output, res.output
        assert str(os.getpid()) in lines[0]
    with rundir.locked(out):  # released: the next writer gets it
        pass


def test_a_lock_held_by_another_process_is_refused_and_released_when_it_dies(tmp_path):
    import subprocess

    from fineproofs import rundir
    from fineproofs.errors import DataError

    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from fineproofs import rundir\n"
         f"with rundir.locked({str(out)!r}):\n print('held', flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(DataError, match=f"being written by pid {holder.pid} "):
            with rundir.locked(out):
                pass
    finally:
        holder.kill()
        holder.wait()
    with rundir.locked(out):  # a killed holder leaves no stale lock
        pass


def test_the_other_split_into_a_finished_run_directory_is_refused(tmp_path):
    with FaultServer(model=PAPER_MODELS, reply_fn=oracle_reply) as srv:
        profile = _profile(tmp_path / "p", dict.fromkeys(ROLES, srv.url), {})
        out = tmp_path / "run"
        assert _build(profile, out).exit_code == 0
        before = rows(out)
        res = CliRunner().invoke(
            cli, ["build", "--split", "sft", "--profile", str(profile), "--output", str(out), "--limit", str(LIMIT)]
        )
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "holds a build of the rl split" in lines[0], res.output
    assert rows(out) == before and not (out / "data" / "all").exists()


# ----- disk full, half-written files -----


@pytest.mark.parametrize(
    "error",
    [
        sqlite3.OperationalError("database or disk is full"),
        OSError(errno.ENOSPC, "No space left on device"),
    ],
    ids=["sqlite", "oserror"],
)
def test_disk_full_is_one_line_leaves_no_temporary_file_and_the_rerun_finishes(tmp_path, monkeypatch, error):
    from fineproofs.store import ResponseStore

    with FaultServer(model=PAPER_MODELS, reply_fn=oracle_reply) as srv:
        profile = _profile(tmp_path / "p", dict.fromkeys(ROLES, srv.url), {})
        clean = tmp_path / "clean"
        assert _build(profile, clean).exit_code == 0
        put_many, calls = ResponseStore.put_many, {"n": 0}

        def full_after_some(self, items):
            calls["n"] += 1
            if calls["n"] > 5:  # mid-build, with stage files open
                raise error
            return put_many(self, items)

        monkeypatch.setattr(ResponseStore, "put_many", full_after_some)
        out = tmp_path / "run"
        res = _build(profile, out)
        assert res.exit_code == 1, res.output
        lines = [x for x in res.output.strip().splitlines() if x.startswith("fineproofs: ")]
        assert len(lines) == 1 and lines[0].startswith("fineproofs: disk full while writing"), res.output
        assert "re-run the same command" in lines[0] and "Traceback" not in res.output
        assert not list(out.rglob("*.tmp"))
        monkeypatch.setattr(ResponseStore, "put_many", put_many)
        assert _build(profile, out).exit_code == 0
    assert rows(out) == rows(clean)


def test_a_killed_runs_temporary_files_are_removed_at_the_next_start(tmp_path):
    with FaultServer(model=PAPER_MODELS, reply_fn=oracle_reply) as srv:
        profile = _profile(tmp_path / "p", dict.fromkeys(ROLES, srv.url), {})
        out = tmp_path / "run"
        assert _build(profile, out).exit_code == 0
        stale = [out / "stages" / ".rollouts.jsonl.k2j3h4.tmp", out / "data" / "default" / "train.parquet.tmp"]
        keep = out / "notes.tmp"  # not a name fineproofs writes: left alone
        for p in [*stale, keep]:
            p.write_text("half a line")
        assert _build(profile, out).exit_code == 0
    assert not any(p.exists() for p in stale) and keep.exists()


# ----- a killed shard -----


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def test_a_killed_shard_is_named_the_command_exits_and_the_rerun_finishes(tmp_path):
    import signal
    import subprocess

    env = {**os.environ, "GEMINI_API_KEY": "test-key-not-secret"}
    with FaultServer(model=PAPER_MODELS, reply_fn=oracle_reply, latency=0.05) as srv:
        profile = _profile(tmp_path / "p", dict.fromkeys(ROLES, srv.url), {})
        single = tmp_path / "single"
        assert _build(profile, single).exit_code == 0
        out = tmp_path / "run"
        cmd = [sys.executable, "-m", "fineproofs", "build", "--split", "rl", "--profile", str(profile)]
        cmd += ["--limit", str(LIMIT), "--output", str(out), "--no-progress", "--shards", "2"]
        sent = len(srv.received)
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        victim = None
        while p.poll() is None and victim is None:  # once the shards talk to the server, kill one
            kids = _children(p.pid)
            shards_started = any((out / "shards").glob("*/store.sqlite"))  # ingest is over: kids are shards
            if shards_started and len(srv.received) > sent + 2 and kids:
                victim = kids[0]
                os.kill(victim, signal.SIGKILL)
        stdout, stderr = p.communicate(timeout=300)  # a hang fails here instead of waiting forever
        assert victim is not None, stderr
        assert p.returncode == 1, stderr
        lines = [x for x in stderr.splitlines() if x.startswith("fineproofs: ") and "did not finish" in x]
        assert len(lines) == 1 and "was killed (SIGKILL)" in lines[0] and "re-run the same command" in lines[0]
        assert "Traceback" not in stderr and not (out / "data").exists()

        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr
    assert rows(out) == rows(single)


def test_an_empty_store_file_is_refused_not_taken_for_a_new_store(tmp_path):
    from fineproofs.errors import DataError

    (tmp_path / "store.sqlite").write_bytes(b"")
    with pytest.raises(DataError, match="is empty \\(0 bytes\\), not a response store"):
        ResponseStore(tmp_path / "store.sqlite")
    with ResponseStore(tmp_path / "new.sqlite") as st:  # a missing store is created as before
        assert st.keys() == []


def test_ctrl_c_says_what_was_kept_and_how_to_resume(tmp_path, monkeypatch):
    from fineproofs.pipelines import build as build_mod

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(build_mod.Build, "run", interrupted)
    res = _build(_profile(tmp_path / "p", dict.fromkeys(ROLES, "http://127.0.0.1:9/v1"), {}), tmp_path / "run")
    assert res.exit_code == 130
    assert res.output.strip().startswith("fineproofs: interrupted: everything finished so far is kept")
    assert "re-run the same command" in res.output and "Aborted!" not in res.output


def test_a_configured_key_is_redacted_whatever_its_shape(monkeypatch):
    from fineproofs.errors import redact

    monkeypatch.setenv("PLAIN_KEY", "correct-horse-battery")  # not key-shaped: no pattern catches it
    assert "correct-horse-battery" in redact("server says: correct-horse-battery is not valid")
    HTTPEngine("m", ["http://127.0.0.1:9/v1"], api_key_env="PLAIN_KEY", preflight=False)._headers()
    assert redact("server says: correct-horse-battery is not valid") == "server says: *** is not valid"


def test_the_ingest_lock_never_writes_through_a_planted_symlink(tmp_path):
    from fineproofs.errors import DataError
    from fineproofs.pipelines.build import _ingest_lock

    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".ingest.lock").symlink_to(victim)
    with pytest.raises(DataError, match="is a symbolic link"):
        with _ingest_lock(tmp_path / "run"):
            pass
    assert victim.read_text() == "keep me"


# ----- bad inputs: one line, never a traceback -----


@pytest.mark.parametrize("case", ["missing", "dangling", "looping", "empty_dir", "unsupported", "all_malformed"])
def test_an_ingest_with_nothing_to_read_is_one_line(tmp_path, case):
    src = tmp_path / "src"
    if case == "dangling":
        src.symlink_to(tmp_path / "gone")
    elif case == "looping":
        src.symlink_to(src)
    elif case in ("empty_dir", "unsupported", "all_malformed"):
        src.mkdir()
        if case == "unsupported":
            (src / "notes.docx").write_bytes(b"PK\x03\x04")
        if case == "all_malformed":
            (src / "rows.jsonl").write_text('{"problem": 3}\nnot json\n{"no_problem": "x"}\n')
    profile = tmp_path / "p.yaml"
    profile.write_text(
        f"extends: embedded\nsources:\n  paths: [{str(src)!r}]\ndecontamination:\n  benchmarks: []\n  required: false\n"
    )
    res = CliRunner().invoke(cli, ["ingest", "--profile", str(profile), "--output", str(tmp_path / "run")])
    assert res.exit_code == 1, res.output
    lines = [x for x in res.output.strip().splitlines() if x.startswith("fineproofs: ")]
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    assert any(w in lines[0] for w in ("does not exist", "no source file", "no problem survived")), lines[0]


def test_rate_limiting_never_trips_the_breaker():
    """429s say the server is alive: they are retried within the budget, never counted as a dead server."""
    msgs = [{"role": "user", "content": "prove it"}]
    with (
        FaultServer(fault_rate=0.6, faults=("http_429",), seed=3) as srv,
        HTTPEngine("fake-model", [srv.url], breaker_failures=1, max_concurrency=1, **FAST) as eng,
    ):
        out = dict(eng.generate([GenerationRequest(msgs, seeds=[i]) for i in range(6)]))
    assert srv.injected["http_429"] > 0 and not eng.tripped
    assert all(cs[0].ok for cs in out.values())


def test_sharded_builds_keep_the_contract_and_merge_incomplete_shards_only_when_asked(tmp_path):
    """--shards under an outage: exit 3 and nothing merged; with --allow-incomplete the
    shards are written and merged marked incomplete (still exit 3); once the server is
    back the same command re-runs the incomplete shards and writes the fault-free rows."""
    engine = {"retry_budget_s": 0.3, "breaker_failures": 0}
    clean = _fault_free_build(tmp_path, engine)
    with OutageServer(down_from=12) as srv:
        profile = _profile(tmp_path / "p1", dict.fromkeys(ROLES, srv.url), engine)
        out = tmp_path / "run"
        res = _build(profile, out, "--shards", "2")
        assert res.exit_code == 3, res.output
        assert "re-run the same command" in res.output.lower() and not (out / "data").exists()

        res = _build(profile, out, "--shards", "2", "--allow-incomplete")
        assert res.exit_code == 3, res.output
        line = [x for x in res.output.splitlines() if x.startswith("fineproofs: ")][-1]
        assert "build incomplete" in line and "marked incomplete" in line
        assert json.loads((out / "build.json").read_text())["incomplete"]
        assert "**Incomplete build.**" in (out / "README.md").read_text()

        res = _build(profile, out, "--merge", "2")  # the incomplete shards are not merged unless asked
        assert res.exit_code == 3 and "--allow-incomplete" in res.output, res.output

        srv.up()
        res = _build(profile, out, "--shards", "2")
        assert res.exit_code == 0, res.output
    assert not json.loads((out / "build.json").read_text())["incomplete"]
    assert rows(out) == rows(clean) and rows(out)
