"""A judge that reasons: the score comes from its final answer alone, whether the
server returns the reasoning apart (vLLM reasoning parsers, gpt-oss) or inline in
``<think>`` tags, and whatever score the reasoning mentions — in the build's judge,
the RL reward and IMO-ProofBench evaluation, each over a loopback server."""

from __future__ import annotations

import pytest
from faultproxy import FaultServer

from fineproofs.config import EngineConfig, GradingConfig, RoleConfig
from fineproofs.engines import make_engine
from fineproofs.generation import CachedGenerator
from fineproofs.judging import GradeJob, Grader
from fineproofs.records import Problem, ProofSample, Rubric, RubricItem
from fineproofs.store import ResponseStore

DRAFT = "Drafting: a full proof would get <score>7</score>; checking the second step..."


def _forms(answer: str):
    """(reply_fn, reasoning_fn, field) for each way a reasoning judge's reply arrives."""
    return [
        pytest.param(lambda *a: answer, lambda *a: DRAFT, "reasoning_content", id="vllm-reasoning-parser"),
        pytest.param(lambda *a: answer, lambda *a: DRAFT, "reasoning", id="gpt-oss"),
        pytest.param(lambda *a: f"<think>\n{DRAFT}\n</think>\n\n{answer}", None, "reasoning_content", id="inline"),
    ]


def _role(url: str) -> RoleConfig:
    return RoleConfig(engine=EngineConfig(kind="http", model="fake-model", endpoints=[url], max_retries=0))


PROBLEM = Problem(
    statement="Prove that the sum of two even integers is even.", source="t", solutions=["Write them as 2a and 2b."]
)
RUBRIC = Rubric(PROBLEM.id, [RubricItem("writes both as multiples of 2", 3), RubricItem("concludes", 4)])


@pytest.mark.parametrize("reply, reasoning, field", _forms("The second step is thin.\n<score>3</score>"))
@pytest.mark.parametrize("parse", ["strict", "first"])
def test_build_judge(tmp_path, reply, reasoning, field, parse):
    with (
        FaultServer(reply_fn=reply, reasoning_fn=reasoning, reasoning_field=field) as srv,
        ResponseStore(tmp_path / "s.sqlite") as store,
    ):
        role = _role(srv.url)
        eng = make_engine(role.engine)
        grader = Grader("judge", role, GradingConfig(score_parse=parse), CachedGenerator(eng, store, progress=False))
        sample = ProofSample(PROBLEM.id, "student", 0, "m", "", "2a + 2b = 2(a + b).", "stop")
        (g,) = grader.run([GradeJob(PROBLEM, RUBRIC, sample)])
        eng.close()
    assert g.score == 3 and g.status == "ok"


@pytest.mark.parametrize("reply, reasoning, field", _forms("The second step is thin.\n<score>3</score>"))
def test_rl_reward(tmp_path, reply, reasoning, field):
    from fineproofs.train.reward import RubricReward

    with FaultServer(reply_fn=reply, reasoning_fn=reasoning, reasoning_field=field) as srv:
        role = _role(srv.url)
        reward = RubricReward(role, GradingConfig(), tmp_path / "r.sqlite", engine=make_engine(role.engine))
        try:
            (r,) = reward.score(["<think>plan</think>\n2a + 2b = 2(a + b)."], [PROBLEM.statement], [RUBRIC.render()])
        finally:
            reward.close()
    assert r == pytest.approx(3 / 7)


@pytest.mark.parametrize("reply, reasoning, field", _forms("Almost complete.\n<score>6</score>"))
def test_eval_judge(tmp_path, reply, reasoning, field):
    from fineproofs.train.evaluate import BenchProblem, ProofBenchGrader

    with (
        FaultServer(reply_fn=reply, reasoning_fn=reasoning, reasoning_field=field) as srv,
        ResponseStore(tmp_path / "e.sqlite") as store,
    ):
        role = _role(srv.url)
        eng = make_engine(role.engine)
        judge = ProofBenchGrader(role, GradingConfig(), CachedGenerator(eng, store, progress=False))
        (v,) = judge.run(
            [(BenchProblem("PB-1", PROBLEM.statement, "2a+2b", "full marks for the identity"), "2a + 2b = 2(a + b).")]
        )
        eng.close()
    assert v.score == 6 and v.status == "ok"


def test_a_judge_cut_inside_its_reasoning_is_never_a_grade(tmp_path):
    with (
        FaultServer(reply_fn=lambda *a: "", reasoning_fn=lambda *a: DRAFT, finish_reason="length") as srv,
        ResponseStore(tmp_path / "s.sqlite") as store,
    ):
        role = _role(srv.url)
        eng = make_engine(role.engine)
        grader = Grader(
            "judge",
            role,
            GradingConfig(max_attempts=2, score_parse="first"),
            CachedGenerator(eng, store, progress=False),
        )
        sample = ProofSample(PROBLEM.id, "student", 0, "m", "", "2a + 2b = 2(a + b).", "stop")
        (g,) = grader.run([GradeJob(PROBLEM, RUBRIC, sample)])
        eng.close()
    assert g.score is None and g.status == "failed" and g.reason.startswith("no_answer")
