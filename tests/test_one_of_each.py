"""One of each: one benchmark spelling and reader, one ProofBench grading path (the eval's
judge is the build's :class:`~fineproofs.judging.Grader`, so it honours
``grading.structured``, ``grading.score_parse`` and the profile's prompt files)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fineproofs.config import GradingConfig, RoleConfig
from fineproofs.engines.base import Completion, Engine
from fineproofs.generation import CachedGenerator
from fineproofs.store import ResponseStore
from fineproofs.tables import benchmark_rows, benchmark_source
from fineproofs.train.evaluate import BenchProblem, ProofBenchGrader, load_proofbench

PROBLEM = BenchProblem("PB-Basic-001", "Show that 2a + 2b is even.", "Factor out 2.", "7 for the factoring")


class Recording(Engine):
    model_id = "recording-judge"

    def __init__(self, reply: str):
        self.reply, self.requests = reply, []

    def generate(self, requests):
        for i, r in enumerate(requests):
            self.requests.append(r)
            yield i, [Completion(self.reply)]


def _grader(reply: str, **grading) -> tuple[ProofBenchGrader, Recording]:
    eng = Recording(reply)
    gen = CachedGenerator(eng, ResponseStore(":memory:"), progress=False)
    return ProofBenchGrader(RoleConfig(), GradingConfig(**grading), gen, grading.pop("prompts", None)), eng


def test_benchmark_spellings(tmp_path: Path):
    f = tmp_path / "pb.csv"
    f.write_text("Problem ID,Problem,Solution,Grading guidelines\nPB-Basic-001,Show it.,Done.,all\n")
    assert benchmark_source("hf:lm-provers/IMOProofBench@test") == "hf:lm-provers/IMOProofBench@test"
    assert benchmark_source("lm-provers/IMOProofBench") == "hf:lm-provers/IMOProofBench"  # the old eval spelling
    assert benchmark_source(str(f)) == str(f)
    assert benchmark_source("pb.csv", base=tmp_path) == str(f)
    assert benchmark_source("./missing.csv") == "./missing.csv"  # a path stays a path (and fails as one)
    ((line, row),) = benchmark_rows("pb.csv", base=tmp_path)
    assert line == 2 and row["Problem ID"] == "PB-Basic-001"
    (p,) = load_proofbench("pb.csv", base=tmp_path)
    assert (p.id, p.split, p.guidelines) == ("PB-Basic-001", "Basic", "all")


def test_eval_judge_honours_structured_grading():
    g, eng = _grader('{"score": 6, "assessment": "one gap"}', structured=True)
    (v,) = g.run([(PROBLEM, "2a + 2b = 2(a + b).")])
    assert (v.score, v.status) == (6, "ok")
    assert eng.requests[0].sampling.json_schema["properties"]["score"] == {"enum": [0, 1, 6, 7]}
    g, _ = _grader('{"score": 5}', structured=True, max_attempts=1)  # off the 0/1/6/7 scale: a failure, never a 5
    (v,) = g.run([(PROBLEM, "proof")])
    assert v.score is None and v.status == "failed"


def test_eval_judge_reads_the_score_as_configured():
    two = "<score>7</score> or maybe <score>1</score>"
    (strict,) = _grader(two, max_attempts=1)[0].run([(PROBLEM, "proof")])
    (first,) = _grader(two, max_attempts=1, score_parse="first")[0].run([(PROBLEM, "proof")])
    assert strict.status == "failed" and first.score == 7


def test_eval_judge_sees_guidelines_and_never_sends_an_empty_proof():
    g, eng = _grader("<score>1</score>")
    v = g.run([(PROBLEM, None), (PROBLEM, "an attempt")])
    assert [(x.score, x.status) for x in v] == [(0, "empty"), (1, "ok")]
    (req,) = eng.requests
    text = req.messages[-1]["content"]
    assert "7 for the factoring" in text and "Factor out 2." in text and "an attempt" in text


@pytest.mark.parametrize("name", ["load_benchmark", "Verdict", "PROOFBENCH_SCORES"])
def test_the_old_second_copies_are_gone(name):
    import fineproofs.train.evaluate as ev

    assert not hasattr(ev, name)


def test_one_override_syntax_and_one_walker():
    from fineproofs.config import load_profile, parse_override
    from fineproofs.errors import ConfigError
    from fineproofs.fieldpath import dig, set_dotted
    from fineproofs.train.config import load_stage_config

    assert parse_override("grading.judges=3") == ("grading.judges", 3)
    assert parse_override("trainer.x=[a, b]") == ("trainer.x", ["a", "b"])
    assert parse_override("description=") == ("description", "")
    for bad in ("no_equals", "=3", "k=[unclosed"):
        with pytest.raises(ConfigError, match="--set"):
            parse_override(bad)
    prof = load_profile("embedded").with_overrides(**dict([parse_override("grading.judges=3")]))
    assert dig(prof, "grading.judges") == 3 and dig(prof.model_dump(), "grading.judges") == 3
    with pytest.raises(ConfigError, match="unknown profile setting 'grading.judgess'"):
        prof.with_overrides(**dict([parse_override("grading.judgess=3")]))
    cfg = load_stage_config("eval", "embedded", ["grading.judges=3", "limit=2"])
    assert dig(cfg, "grading.judges") == 3 and dig(cfg, "limit") == 2
    with pytest.raises(ConfigError, match="limit is not a mapping"):
        load_stage_config("eval", "embedded", ["limit.x=1"])
    assert dig(prof, "nope.x", None) is None
    with pytest.raises(AttributeError):
        dig(prof, "nope")
    data = {"a": {"b": 1}}
    assert set_dotted(data, "a.c", 2) == "c is not a key" and set_dotted(data, "a.b", 2) == ""
    assert set_dotted(data, "x.y", 1, create=True) == "" and data == {"a": {"b": 2}, "x": {"y": 1}}


def test_build_takes_set_like_train(tmp_path):
    from click.testing import CliRunner

    from fineproofs.cli import cli

    res = CliRunner().invoke(cli, ["build", "-o", str(tmp_path / "r"), "--set", "grading.judgess=3"])
    assert res.exit_code != 0 and "unknown profile setting 'grading.judgess'" in res.output
    assert not (tmp_path / "r").exists()  # refused before any work
