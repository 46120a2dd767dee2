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
