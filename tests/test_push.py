"""`fineproofs push` against the loopback Hub (tests/hubserver.py, a test double of
the Hub HTTP protocol): one commit with only the publishable files, a round trip
through `datasets.load_dataset` comparing every row, atomic failure, no token leak."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hubserver import HubServer
from test_splits import make_run

TOKEN = "hf_FineproofsTestToken0123456789abcdef"
PUBLISHED = {
    "README.md",
    "profile.yaml",
    "plots/grade_histogram.png",
    "plots/reward_mean.png",
    "plots/problems_per_source.png",
    "plots/problems_per_category.png",
}


@pytest.fixture(scope="module")
def hub():
    with HubServer() as server:
        yield server


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("runs")
    return {"sft": make_run(base / "sft", "sft"), "rl": make_run(base / "rl", "rl")}


@pytest.fixture
def online(hub, monkeypatch):
    """huggingface_hub pointed at the loopback Hub (constants read at import are patched)."""
    import huggingface_hub.constants as c

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setattr(c, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    return hub


def _child_env(hub: HubServer, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    env.update(
        HF_ENDPOINT=hub.url,
        HF_HUB_DISABLE_XET="1",
        HF_HOME=str(home),
        HF_TOKEN=TOKEN,
        HF_HUB_DISABLE_TELEMETRY="1",
        PYTHONPATH=str(Path(__file__).resolve().parents[1]),
    )
    return env


_LOAD = r"""
import json, sys
import datasets
datasets.config.USE_PARQUET_EXPORT = False  # no dataset-viewer calls (it is not on loopback)
out = {}
for repo, config in json.loads(sys.argv[1]):
    ds = datasets.load_dataset(repo, config, split="train")
    out[f"{repo}:{config}"] = {"features": ds.features.to_dict(), "rows": ds.to_list()}
print("RESULT" + json.dumps(out))
"""


def _load_remote(hub, home, pairs):
    r = subprocess.run(
        [sys.executable, "-c", _LOAD, json.dumps(pairs)],
        env=_child_env(hub, home),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert r.returncode == 0, r.stderr[-4000:]
    return json.loads(r.stdout.split("RESULT", 1)[1])


def test_push_and_load_back_every_row(online, runs, tmp_path):
    import datasets

    from fineproofs.cards.hub import push_plan, push_run
    from fineproofs.records import RL_FEATURES, SFT_FEATURES

    hub = online
    url = push_run(runs["sft"], "fineproofs/sft-test")
    assert url == f"{hub.url}/datasets/fineproofs/sft-test"
    push_run(runs["rl"], "fineproofs/rl-test", private=True)
    assert hub.repo("fineproofs/rl-test").private

    # exactly the publishable files, in one commit; nothing from store/stages/quarantine/problems
    files = hub.files("fineproofs/sft-test")
    assert set(files) - {".gitattributes"} == PUBLISHED | {
        "data/default/train-00000-of-00001.parquet",
        "data/all/train-00000-of-00001.parquet",
    }
    assert len(hub.repo("fineproofs/sft-test").commits) == 2  # repo creation + the push
    plan = {f.path_in_repo: f.data for f in push_plan(runs["sft"], "fineproofs/sft-test")}
    assert all(files[p] == data for p, data in plan.items())
    assert 'load_dataset("fineproofs/sft-test", "all"' in files["README.md"].decode()
    assert "ORG/NAME" not in files["README.md"].decode()

    remote = _load_remote(
        hub,
        tmp_path / "hf",
        [["fineproofs/sft-test", "default"], ["fineproofs/sft-test", "all"], ["fineproofs/rl-test", "default"]],
    )
    for run, config, features in (
        ("sft", "default", SFT_FEATURES),
        ("sft", "all", SFT_FEATURES),
        ("rl", "default", RL_FEATURES),
    ):
        local = datasets.load_dataset(str(runs[run]), config, split="train")
        got = remote[f"fineproofs/{run}-test:{config}"]
        assert datasets.Features.from_dict(got["features"]) == features == local.features
        assert got["rows"] == json.loads(json.dumps(local.to_list()))
        assert len(got["rows"]) > 0


def test_failed_commit_leaves_remote_unchanged(online, runs, tmp_path):
    from fineproofs.cards.hub import PushError, push_run

    hub = online
    repo = "fineproofs/atomic"
    push_run(runs["sft"], repo)
    before_files, before_head = hub.files(repo), hub.repo(repo).refs["main"]
    other = make_run(tmp_path / "other", "sft", min_grade=0, keep_truncated=True, max_rows_per_shard=4)
    # 500 on the commit (not retried by huggingface_hub), 403 on an LFS upload and on
    # preupload (4xx: not retried either, keeps the test fast)
    for kind, status in (("commit", 500), ("lfs_upload", 403), ("preupload", 403)):
        hub.lfs.clear()  # forget blobs uploaded by the previous attempt, so every attempt uploads
        hub.fail(kind, status=status)
        with pytest.raises(PushError, match="remote is unchanged"):
            push_run(other, repo)
        hub.faults.clear()
        assert hub.files(repo) == before_files and hub.repo(repo).refs["main"] == before_head, kind

    # a push that creates the repo and then fails removes the repo again
    hub.fail("commit")
    with pytest.raises(PushError):
        push_run(other, "fineproofs/never-created")
    assert ("dataset", "fineproofs/never-created") not in hub.repos

    # the retried push lands; stale shards of the first push are deleted in the same commit
    push_run(other, repo)
    after = hub.files(repo)
    assert "data/all/train-00000-of-00001.parquet" not in after
    assert sorted(p for p in after if p.startswith("data/all/")) == [
        f"data/all/train-0000{i}-of-00003.parquet" for i in range(3)
    ]


def test_branch_and_pull_request(online, runs):
    from fineproofs.cards.hub import push_run

    hub = online
    repo = "fineproofs/branches"
    push_run(runs["rl"], repo)
    main = hub.repo(repo).refs["main"]
    url = push_run(runs["sft"], repo, revision="v2")
    assert url.endswith("/datasets/fineproofs/branches/tree/v2")
    assert hub.repo(repo).refs["main"] == main and "data/all/train-00000-of-00001.parquet" in hub.files(repo, "v2")
    pr = push_run(runs["sft"], repo, create_pr=True)
    assert pr.endswith("/discussions/1") and hub.repo(repo).refs["main"] == main
    assert "data/all/train-00000-of-00001.parquet" in hub.files(repo, "refs/pr/1")


def test_cli_push_never_leaks_the_token(hub, runs, tmp_path):
    """`fineproofs -v push` in a fresh process (HF_TOKEN from the environment, verbose
    logs): the token reaches the server, and appears in no output and no file."""
    env = _child_env(hub, tmp_path / "hf")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "fineproofs.cli",
            "-v",
            "push",
            str(runs["rl"]),
            "--repo-id",
            "fineproofs/cli-test",
            "--revision",
            "dev",
            "-m",
            "from the CLI",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"pushed to {hub.url}/datasets/fineproofs/cli-test/tree/dev" in r.stdout
    assert TOKEN in hub.tokens  # the push was authenticated with it
    assert TOKEN not in r.stdout + r.stderr
    assert "pushing" in r.stderr  # verbose logging was on
    for f in runs["rl"].rglob("*"):
        if f.is_file():
            assert TOKEN.encode() not in f.read_bytes(), f
    for data in hub.files("fineproofs/cli-test", "dev").values():
        assert TOKEN.encode() not in data
    commit = hub.repo("fineproofs/cli-test").commits[hub.repo("fineproofs/cli-test").refs["dev"]]
    assert commit.message == "from the CLI"


def test_push_refuses_bad_runs(online, runs, tmp_path):
    import shutil

    from fineproofs.cards.hub import PushError, push_run

    with pytest.raises(PushError, match="no README.md"):
        push_run(tmp_path, "fineproofs/empty")
    leaky = tmp_path / "leaky"
    shutil.copytree(runs["rl"], leaky)
    (leaky / "profile.yaml").write_text((leaky / "profile.yaml").read_text() + f"# {TOKEN}\n")
    with pytest.raises(PushError, match="contains the Hub token") as e:
        push_run(leaky, "fineproofs/leaky")
    assert TOKEN not in str(e.value)
    broken = tmp_path / "broken"
    shutil.copytree(runs["rl"], broken)
    (broken / "plots" / "reward_mean.png").unlink()
    with pytest.raises(PushError, match="reward_mean.png"):
        push_run(broken, "fineproofs/broken")
    with pytest.raises(PushError, match="ORG/NAME"):
        push_run(runs["rl"], "not a repo id")
    assert ("dataset", "fineproofs/leaky") not in online.repos and ("dataset", "fineproofs/broken") not in online.repos


def test_push_validates_every_file_before_the_first_request(online, runs, tmp_path):
    """A half card, a truncated profile.yaml and a parquet of another schema are refused
    offline: no request reaches the Hub, no repo is created."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from fineproofs.cards.hub import PushError, push_run

    def copy(name):
        d = tmp_path / name
        shutil.copytree(runs["rl"], d)
        return d

    half = copy("half")
    text = (half / "README.md").read_text()
    (half / "README.md").write_text(text[: len(text) * 2 // 3])  # metadata whole, body cut
    with pytest.raises(PushError, match="README.md is incomplete"):
        push_run(half, "fineproofs/half")

    prof = copy("profile")
    body = (prof / "profile.yaml").read_text()
    (prof / "profile.yaml").write_text(body[: len(body) // 2] + "\n  student: {engine: [\n")
    with pytest.raises(PushError, match="profile.yaml is damaged"):
        push_run(prof, "fineproofs/profile")

    schema = copy("schema")
    shard = next((schema / "data").rglob("*.parquet"))
    table = pq.read_table(shard)
    pq.write_table(table.drop_columns(["reward_std"]).append_column("extra", pa.array([1] * table.num_rows)), shard)
    with pytest.raises(PushError, match=r"does not have the features .*differs in: extra, reward_std"):
        push_run(schema, "fineproofs/schema")

    for name in ("half", "profile", "schema"):
        assert ("dataset", f"fineproofs/{name}") not in online.repos
        assert not any(f"fineproofs/{name}" in path for _, path, _ in online.requests)


def test_a_commit_that_landed_with_its_answer_lost_is_not_called_unchanged(online, runs):
    from fineproofs.cards.hub import PushError, push_run

    hub = online
    repo = "fineproofs/lost-answer"
    push_run(runs["rl"], repo)
    head = hub.repo(repo).refs["main"]
    hub.fail("commit_lost")  # the commit is applied, then the server answers 500
    with pytest.raises(PushError) as e:
        push_run(runs["sft"], repo)
    hub.faults.clear()
    assert hub.repo(repo).refs["main"] != head  # it did land
    assert "unchanged" not in str(e.value) and "may have landed" in str(e.value)
