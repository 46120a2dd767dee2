"""A build cut into shards by problem id, against the paper profile on a loopback server.

Every role of ``profiles/paper.yaml`` is served by one :class:`faultproxy.FaultServer`
answering with :func:`oracle.oracle_reply` (deterministic in the request), so a
single-process build and a sharded one can be compared row for row. Checks:

* ``--shard 0/2``, ``--shard 1/2`` then ``--merge 2`` (the CLI) give the rows of the
  single-process build; ``--merge`` refuses in one line while a shard is missing;
  a finished shard re-run sends zero requests; ``fineproofs status`` shows both shards;
* a shard SIGKILLed mid-generation and re-run resumes on its own: it never asks again
  for a sample already stored, and the merge is unchanged;
* ``--shards 2`` runs both shards as tasks of datatrove's local executor and merges them.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from buildkit import PAPER_MODELS, paper_profile_file, rows, run_killed_after, store_keys
from faultproxy import FaultServer
from oracle import oracle_reply

from fineproofs.cli import cli
from fineproofs.config import load_profile
from fineproofs.pipelines.build import Build, in_shard, shard_dir

LIMIT = 6
K = 4  # student rollouts per problem


@pytest.fixture(scope="module")
def server():
    with FaultServer(model=PAPER_MODELS, reply_fn=oracle_reply) as s:
        yield s


@pytest.fixture(scope="module")
def env():
    mp = pytest.MonkeyPatch()
    mp.setenv("GEMINI_API_KEY", "test-key-not-secret")
    yield
    mp.undo()


@pytest.fixture(scope="module")
def profile(tmp_path_factory, server, env):
    return paper_profile_file(tmp_path_factory.mktemp("profile"), server.url, student_samples=K)


@pytest.fixture(scope="module")
def single(tmp_path_factory, profile):
    """The reference: every problem in one process."""
    out = tmp_path_factory.mktemp("single") / "run"
    res = Build(load_profile(str(profile)), out, "rl", limit=LIMIT, progress=False).run()
    assert res.generated > 0 and res.rows["default"] > 0
    return out


def _cli(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args], env={"COLUMNS": "400"})  # rich tables unwrapped


def _flat(text: str) -> str:
    return " ".join(text.split())


def _build_args(profile: Path, out: Path) -> list:
    return ["build", "--split", "rl", "--profile", profile, "--limit", LIMIT, "--output", out, "--no-progress"]


def _problem_ids(out: Path) -> list[str]:
    import json

    return [json.loads(line)["id"] for line in (out / "problems" / "problems.jsonl").read_text().splitlines()]


def test_shards_then_merge_give_the_single_process_rows(tmp_path, profile, single, server):
    out = tmp_path / "sharded"
    ids = _problem_ids(single)
    assert all(any(in_shard(x, i, 2) for x in ids) for i in range(2)), "each shard needs a problem"

    res = _cli(*_build_args(profile, out), "--shard", "0/2")
    assert res.exit_code == 0, res.output
    assert "shard 0 of 2" in res.output

    # the merge refuses, in one line, while shard 1 has not run
    res = _cli(*_build_args(profile, out), "--merge", "2")
    assert res.exit_code != 0
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fineproofs: "), res.output
    assert "1 of 2 shards" in lines[0] and "shard 1" in lines[0] and "Traceback" not in res.output
    assert not (out / "data").exists()

    res = _cli(*_build_args(profile, out), "--shard", "1/2")
    assert res.exit_code == 0, res.output
    res = _cli(*_build_args(profile, out), "--merge", "2")
    assert res.exit_code == 0, res.output
    assert rows(out) == rows(single)
    assert (out / "README.md").exists()

    # each finished shard re-run on its own sends nothing
    for i in range(2):
        sent = len(server.received)
        res = _cli(*_build_args(profile, out), "--shard", f"{i}/2")
        assert res.exit_code == 0, res.output
        assert f"shard {i} of 2: 0 generated" in res.output
        assert len(server.received) == sent
    # the shards' stores hold exactly the single build's samples, split between them
    assert sorted(store_keys(out, (0, 2)) + store_keys(out, (1, 2))) == store_keys(single)

    res = _cli("status", out)
    assert res.exit_code == 0, res.output
    assert "2 shards, 2 finished" in _flat(res.output)
    for stage in ("rubrics", "rollouts"):
        assert stage in res.output


def test_status_shows_an_unfinished_shard(tmp_path, profile):
    out = tmp_path / "half"
    res = _cli(*_build_args(profile, out), "--shard", "1/2")
    assert res.exit_code == 0, res.output
    res = _cli("status", out)
    assert res.exit_code == 0, res.output
    assert "1 shards, 1 finished" in _flat(res.output)


def test_a_sigkilled_shard_resumes_alone_and_never_asks_twice(tmp_path, profile, single, server):
    out = tmp_path / "killed"
    shard = (1, 2)
    res = _cli(*_build_args(profile, out), "--shard", "0/2")
    assert res.exit_code == 0, res.output
    total = len(store_keys(single)) - len(store_keys(out, (0, 2)))  # the samples of shard 1
    at_kill: list[set[int]] = []
    sent_at_kill: list[int] = []

    def on_kill():  # the seeds of every sample committed before the kill, and what was sent until then
        at_kill.append({int(k[:8], 16) for k in store_keys(out, shard)})
        sent_at_kill.append(len(server.received))

    server.latency = 0.02  # so the kill lands mid-generation
    try:
        kills = run_killed_after(
            profile, out, [random.Random(1).randrange(1, total)], limit=LIMIT, shard=shard, on_kill=on_kill
        )
    finally:
        server.latency = 0.0
    assert kills == 1
    (stored,) = at_kill
    assert 0 < len(stored) < total
    # every request of the resumed run asked only for samples that were not stored at the kill
    resumed = server.received[sent_at_kill[0] :]
    assert resumed and not any(b.get("seed") in stored for b in resumed if b.get("seed") is not None)
    res = _cli(*_build_args(profile, out), "--merge", "2")
    assert res.exit_code == 0, res.output
    assert rows(out) == rows(single)
    assert sorted(store_keys(out, (0, 2)) + store_keys(out, shard)) == store_keys(single)  # none lost, none twice
    assert (shard_dir(out, *shard) / "build.json").exists()


def test_shards_with_the_local_executor_end_to_end(tmp_path, profile, single):
    """The shards as tasks of datatrove's local executor, then the merge: the single-process rows."""
    from fineproofs.pipelines.build import merge_shards
    from fineproofs.pipelines.shards import run_shards

    out = tmp_path / "local"
    prof = load_profile(str(profile)).with_overrides(limit=LIMIT)
    run_shards(prof, out, "rl", 4)  # 4 tasks standing in for a cluster's array
    assert all((shard_dir(out, i, 4) / "build.json").exists() for i in range(4))
    merge_shards(prof, out, "rl", 4)
    assert rows(out) == rows(single)


def test_cli_shards_runs_them_and_merges(tmp_path, profile, single):
    out = tmp_path / "cli"
    res = _cli(*_build_args(profile, out), "--shards", "2")
    assert res.exit_code == 0, res.output
    assert rows(out) == rows(single)
    res = _cli("status", out)
    assert "2 shards, 2 finished" in _flat(res.output)


def test_the_merge_task_names_a_shard_that_did_not_finish(tmp_path, profile):
    """What the merge job of a cluster run does when a shard task died: one error naming
    the shard and its logs, exit code 3 (incomplete, resumable), nothing merged."""
    from fineproofs.errors import IncompleteBuild
    from fineproofs.pipelines.shards import merge_task

    out = tmp_path / "dead"
    res = _cli(*_build_args(profile, out), "--shard", "1/2")
    assert res.exit_code == 0, res.output
    prof = load_profile(str(profile)).with_overrides(limit=LIMIT)
    with pytest.raises(IncompleteBuild) as e:
        merge_task(prof, out, "rl", 2)
    msg = str(e.value)
    assert "1 of 2 shards did not finish: shard 0 " in msg and "llm_rl_2" in msg and "re-run the same command" in msg
    assert e.value.exit_code == 3 and "\n" not in msg
    assert not (out / "data").exists() and (shard_dir(out, 1, 2) / "build.json").exists()


def test_on_slurm_the_merge_job_starts_after_a_failed_shard_job(tmp_path, profile, monkeypatch):
    """Slurm's ``afterok`` would leave the merge pending forever behind a dead shard: the
    merge job is submitted ``afterany`` the shards' array job (and then names the dead
    shards itself, as above). ``sbatch`` here is a script that records its arguments and
    the job script, and answers as Slurm does."""
    import functools

    from fineproofs.pipelines import shards as shards_mod

    bin_dir, log = tmp_path / "bin", tmp_path / "sbatch.log"
    bin_dir.mkdir()
    sbatch = bin_dir / "sbatch"
    sbatch.write_text(
        "#!/bin/sh\n"
        f'log="{log}"\n'
        'n=$(( $(cat "$log.n" 2>/dev/null || echo 100) + 1 )); echo "$n" > "$log.n"\n'
        'for a; do f="$a"; done\n'
        '{ echo "=== job $n"; echo "args: $*"; cat "$f"; } >> "$log"\n'
        'echo "Submitted batch job $n"\n'
    )
    sbatch.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    monkeypatch.setattr(shards_mod, "run_ingest", lambda *a, **k: None)  # ingest is not the subject here
    prof = load_profile(str(profile)).with_overrides(limit=LIMIT, executor="slurm")
    out = tmp_path / "slurm"
    shards_mod.run_shards(prof, out, "rl", 2, merge=functools.partial(shards_mod.merge_task, prof, out, "rl", 2))
    jobs = {}
    for chunk in log.read_text().split("=== job ")[1:]:
        n, script = chunk.split("\n", 1)
        jobs[int(n)] = script
    shard_job = next(n for n, s in jobs.items() if "fineproofs-llm_rl_2" in s)
    merge_job = next(n for n, s in jobs.items() if "fineproofs-merge_rl_2" in s)
    assert f"--dependency=afterany:{shard_job}" in jobs[merge_job]
    assert "--array=0-1" in jobs[shard_job]
