"""The run directory is the typed seam, a split is a recipe.

- a new stage is one class, one record type and one registry line: the example stage
  below (``proof_lengths``) runs inside a real build over loopback servers, its file is
  named by the registry and read back typed;
- ``Build(...).run()`` from Python writes the run directory the command line writes,
  card included;
- the one reader of run-directory JSONL: strict (a ``DataError`` at ``file:line``) or
  tolerant (skips and counts);
- nothing outside the recipes branches on a split's name.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from buildkit import PAPER_MODELS, paper_profile_file, rows
from click.testing import CliRunner
from faultproxy import FaultServer
from oracle import oracle_reply

from fineproofs import rundir
from fineproofs.cli import cli
from fineproofs.config import load_profile
from fineproofs.errors import ConfigError, DataError
from fineproofs.pipelines.build import Build
from fineproofs.pipelines.recipes import RECIPES, recipe, rl_stages
from fineproofs.pipelines.stage import Failed, Work
from fineproofs.records import Difficulty, Grade, ProofSample, StageRecord

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def server():
    with FaultServer(model=PAPER_MODELS, reply_fn=oracle_reply) as s:
        yield s


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "test-key-not-secret")


def _profile(tmp_path: Path, url: str):
    overrides = {"decontamination": {"benchmarks": [], "required": False}}
    return paper_profile_file(tmp_path, url, student_samples=4, overrides=overrides)


# --- the example stage: one record type, one class, one registry line -------------------


@dataclass
class ProofLengths(StageRecord):
    problem_id: str
    characters: list[int]


class ProofLengthStage:
    """The lengths of a problem's rollouts (before difficulty releases their text)."""

    name = "proof_lengths"
    record = ProofLengths
    key_name = "problem_id"

    def run(self, items: Iterable[Work]) -> Iterator[Work | Failed]:
        for w in items:
            if not w.rollouts and not w.dropped:
                yield Failed(w.id, "no_rollouts: nothing to measure")
            yield w

    def records(self, work: Work) -> list[dict]:
        lengths = [len(s.proof) for s in sorted(work.rollouts, key=lambda s: s.sample_index)]
        return [ProofLengths(work.id, lengths).to_dict()] if lengths else []


@pytest.fixture
def registered():
    rundir.register_stage("proof_lengths", ProofLengths)  # the registry line
    yield
    del rundir.STAGE_FILES["proof_lengths"]


def test_a_new_stage_is_one_class_one_record_type_one_registry_line(tmp_path, server, registered):
    base = RECIPES["rl"]

    def stages(p, gen):
        *before, difficulty = rl_stages(p, gen)
        return [*before, ProofLengthStage(), difficulty]

    measured = dataclasses.replace(base, stages=stages)
    out = tmp_path / "run"
    res = Build(load_profile(str(_profile(tmp_path, server.url))), out, measured, limit=3, progress=False).run()
    assert res.split == "rl" and res.rows["default"] >= 0
    # the file the registry names, read back typed
    assert rundir.stage("proof_lengths").path(out) == out / "stages" / "proof_lengths.jsonl"
    recs = list(rundir.stage("proof_lengths").read(out / rundir.STAGES))
    assert recs and all(isinstance(r, ProofLengths) and len(r.characters) == 4 for r in recs)
    assert res.counts["proof_lengths"] == len(recs)
    # the other stage files read back through the same registry
    assert all(isinstance(d, Difficulty) for d in rundir.stage("difficulty").read(out / rundir.STAGES))
    assert all(isinstance(s, ProofSample) for s in rundir.stage("rollouts").read(out / rundir.STAGES))
    assert all(isinstance(g, Grade) for g in rundir.stage("rollout_grades").read(out / rundir.STAGES))
    assert (out / rundir.CARD).is_file()  # the card, written by the build


def test_python_build_writes_the_run_directory_the_cli_writes(tmp_path, server):
    profile = _profile(tmp_path, server.url)
    py, cl = tmp_path / "py", tmp_path / "cli"
    res = Build(load_profile(str(profile)), py, "rl", limit=3, progress=False).run()
    assert res.card == py / rundir.CARD and res.card.is_file()
    r = CliRunner().invoke(
        cli, ["build", "--split", "rl", "--profile", str(profile), "--limit", "3", "-o", str(cl), "--no-progress"]
    )
    assert r.exit_code == 0, r.output

    def files(d: Path) -> set[str]:
        return {str(p.relative_to(d)) for p in d.rglob("*") if p.is_file()}

    assert files(py) == files(cl)
    assert rows(py) == rows(cl)
    for name in (rundir.CARD, rundir.CARD_DATA):
        assert (py / name).read_text() == (cl / name).read_text()


def test_recipes_name_their_stages_roles_and_inputs():
    rl, sft = RECIPES["rl"], RECIPES["sft"]
    assert rl.judging == ("judge",) and sft.judging == ("judge", "grader")
    assert set(rl.inputs) < set(sft.inputs) and all(n in rundir.STAGE_FILES for n in sft.inputs)
    prof = load_profile("paper")
    assert sft.steps(prof)[: len(rl.steps(prof))] == rl.steps(prof)
    assert rl.rename(prof) == {} and rl.card.split == "rl" and sft.card.configs == ("default", "all")
    assert recipe(rl) is rl
    with pytest.raises(ConfigError, match="split must be one of"):
        recipe("dpo")


# --- the one reader -----------------------------------------------------------------


def test_the_reader_is_strict_at_file_and_line_or_tolerant_and_counted(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"a": 1}\n\n{"a": 2\n[1, 2]\n{"a": 3}\n')
    with pytest.raises(DataError, match=re.escape(f"{path}:3 is damaged")):
        list(rundir.read_records(path))
    tolerant = rundir.read_records(path, strict=False)
    assert [d["a"] for d in tolerant] == [1, 3] and tolerant.skipped == 2
    at = list(rundir.read_records(path, strict=False, offsets=True))
    raw = path.read_bytes()
    assert [raw[o : o + n] for o, n, _ in at] == [b'{"a": 1}\n', b'{"a": 3}\n']
    assert list(rundir.read_records(tmp_path / "missing.jsonl")) == []


def test_no_split_branch_outside_the_recipes():
    """``split == "rl"`` and the like: the recipes (and the cards they name) answer instead.
    (``fineproofs train sft|rl|rc`` names training stages, not splits: train/ and its
    command are not scanned.)"""
    pattern = re.compile(r"""split\s*[!=]=|[!=]=\s*["'](rl|sft)["']""")
    hits = []
    for folder in ("fineproofs", "pipelines", "cards", "filters", "viewer"):
        for f in (ROOT / folder).rglob("*.py"):
            if f == ROOT / "fineproofs" / "cli" / "train.py":
                continue
            hits += [f"{f.relative_to(ROOT)}:{i}" for i, line in enumerate(f.read_text().splitlines(), 1)
                     if pattern.search(line)]  # fmt: skip
    assert hits == []


def test_typed_readers_for_problems_quarantine_and_the_manifest(tmp_path):
    from fineproofs.records import Problem

    p = Problem(statement="Prove that 1 + 1 = 2.", source="t")
    rundir.write_jsonl(tmp_path / rundir.PROBLEMS, [p.to_dict()])
    assert list(rundir.read_problems(tmp_path)) == [p] == list(rundir.read_problems(tmp_path / rundir.PROBLEMS))
    (tmp_path / rundir.QUARANTINE).mkdir(exist_ok=True)
    (tmp_path / rundir.LLM_QUARANTINE).write_text('{"stage": "rubrics", "problem_id": "x", "reason": "r: y"}\n{oops\n')
    q = rundir.read_quarantine(tmp_path)
    assert [r["stage"] for r in q] == ["rubrics"] and q.skipped == 1
    (tmp_path / rundir.MANIFEST).write_text('{"split": "rl"}')
    assert rundir.read_manifest(tmp_path / rundir.MANIFEST) == {"split": "rl"}
    (tmp_path / rundir.MANIFEST).write_text("[1]")
    with pytest.raises(DataError, match="not a JSON object"):
        rundir.read_manifest(tmp_path / rundir.MANIFEST)
