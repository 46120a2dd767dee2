"""`fineproofs eval`: IMO-ProofBench CSV, 0/1/6/7 judge, RC at test time, failures excluded."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from fineproofs.engines.base import Completion, Engine
from fineproofs.train.config import load_stage_config

CSV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "imobench" / "proofbench_v2.csv"
pytestmark = pytest.mark.skipif(not CSV.exists(), reason="IMO-ProofBench CSV not present")


class ScriptedJudge(Engine):
    model_id = "scripted-judge"

    def __init__(self, replies):
        self.replies = list(replies)
        self.n = 0

    def generate(self, requests):
        for i, _r in enumerate(requests):
            reply = self.replies[self.n % len(self.replies)]
            self.n += 1
            if reply is None:
                yield i, [Completion("", "error", status="failed", reason="timeout")]
            else:
                yield i, [Completion(reply)]


def test_load_benchmark_splits():
    from fineproofs.train.evaluate import load_proofbench

    probs = load_proofbench(str(CSV))
    assert len(probs) == 60 and {p.split for p in probs} == {"Basic", "Advanced"}
    four = load_proofbench(str(CSV), limit=4)
    assert [p.split for p in four] == ["Basic", "Advanced", "Basic", "Advanced"]
    assert all(p.guidelines for p in four)


def test_judge_scale_and_failures():
    """Only 0/1/6/7 are accepted; a 5 is unparseable and retried; failures are excluded."""
    from fineproofs.config import GradingConfig, RoleConfig
    from fineproofs.generation import CachedGenerator
    from fineproofs.store import ResponseStore
    from fineproofs.train.evaluate import ProofBenchGrader, load_proofbench, summarise

    p = load_proofbench(str(CSV), limit=2)
    judge = ScriptedJudge(["<score>7</score> ok", "<score>5</score>", "<score>6</score> almost"])
    g = ProofBenchGrader(
        RoleConfig(), GradingConfig(max_attempts=2), CachedGenerator(judge, ResponseStore(":memory:"), progress=False)
    )
    v = g.run([(p[0], "Proof A."), (p[1], "Proof B."), (p[0], None)])
    assert v[0].score == 7 and v[1].score == 6  # 5 rejected, retried -> 6
    assert v[2].status == "empty" and v[2].score == 0
    judge2 = ScriptedJudge([None])
    g2 = ProofBenchGrader(
        RoleConfig(), GradingConfig(max_attempts=2), CachedGenerator(judge2, ResponseStore(":memory:"), progress=False)
    )
    (f,) = g2.run([(p[0], "Proof.")])
    assert f.status == "failed" and f.score is None
    rows = [
        dict(mode="single", split="Basic", score=7, status="ok", max_context_tokens=1, total_reasoning_tokens=1),
        dict(
            mode="single", split="Advanced", score=None, status="failed", max_context_tokens=1, total_reasoning_tokens=1
        ),
    ]
    (t,) = summarise(rows)
    assert t["overall_pct"] == 100.0 and t["judge_failures"] == 1 and t["Advanced_points"] is None


def test_eval_tiny_policy_end_to_end(tiny, tmp_path):
    from fineproofs.engines import EnginePool
    from fineproofs.train.evaluate import run_eval

    cfg = load_stage_config(
        "eval",
        "embedded",
        [
            f"policy.engine.model={tiny}",
            f"summarizer.engine.model={tiny}",
            "policy.sampling.max_tokens=16",
            "summarizer.sampling.max_tokens=12",
            "limit=2",
            "grading.max_attempts=1",
        ],
    )
    pool = EnginePool()
    judge = ScriptedJudge(["<score>7</score>", "<score>1</score>", None])
    pool._engines[cfg.judge.engine.model_dump_json(exclude={"label"})] = judge
    try:
        res = run_eval(cfg, tmp_path / "ev", benchmark=str(CSV), pool=pool)
        modes = [e["mode"] for e in res["table"]]
        assert modes == ["single", "rc@1", "rc@2"]
        assert (tmp_path / "ev" / "results.parquet").exists()
        saved = json.loads((tmp_path / "ev" / "results.json").read_text())
        assert saved["table"][0]["overall_n"] + saved["table"][0]["judge_failures"] == 2
        import pandas as pd

        df = pd.read_parquet(tmp_path / "ev" / "results.parquet")
        failed = df[df.status == "failed"][["problem_id", "sample", "turn"]].drop_duplicates()
        n_req = judge.n
        run_eval(cfg, tmp_path / "ev", benchmark=str(CSV), pool=pool, print_results=False)
        # resumed from the store: policy and summariser not asked again, only judge failures retried
        assert judge.n - n_req == len(failed)
    finally:
        pool.close()


def test_policy_failure_is_reported_never_scored_zero(tiny, tmp_path):
    from fineproofs.engines import EnginePool
    from fineproofs.train.evaluate import run_eval

    class DownPolicy(Engine):
        model_id = "down-policy"

        def generate(self, requests):
            for i, r in enumerate(requests):
                yield i, [Completion("", "error", status="failed", reason="http_503 after 4 retries")] * r.n

    cfg = load_stage_config(
        "eval",
        "embedded",
        [
            f"policy.engine.model={tiny}",
            f"summarizer.engine.model={tiny}",
            "limit=2",
            "grading.max_attempts=1",
        ],
    )
    pool = EnginePool()
    judge = ScriptedJudge(["<score>7</score>"])
    pool._engines[cfg.judge.engine.model_dump_json(exclude={"label"})] = judge
    pool._engines[cfg.policy.engine.model_dump_json(exclude={"label"})] = DownPolicy()
    try:
        res = run_eval(cfg, tmp_path / "ev", benchmark=str(CSV), pool=pool, print_results=False)
    finally:
        pool.close()
    assert judge.n == 0  # nothing to grade
    for entry in res["table"]:
        assert entry["overall_points"] is None and entry["overall_n"] == 0 and entry["judge_failures"] == 2
    import pandas as pd

    df = pd.read_parquet(tmp_path / "ev" / "results.parquet")
    assert set(df.status) == {"failed"} and df.reason.str.startswith("policy_failure").all()


@pytest.mark.slow
def test_eval_embedded_smollm2(tmp_path):
    from fineproofs.train.evaluate import run_eval

    cfg = load_stage_config("eval", "embedded", ["limit=1"])
    res = run_eval(cfg, tmp_path / "ev", benchmark=str(CSV))
    assert {e["mode"] for e in res["table"]} == {"single", "rc@1", "rc@2"}


def test_single_and_rc_as_the_harness_runs_them(tmp_path):
    """`single` is one proof from the rollout prompt; RC turn 1 already uses the RC prompt
    (so rc@1 is its own generation); the summariser reads the turn's thinking with no word
    cap and sees the eval's note for "no summary yet"; the paper config summarises with the
    policy at the policy's own sampling, one sample per problem."""
    from fineproofs.engines import EnginePool
    from fineproofs.train.evaluate import run_eval
    from fineproofs.train.rc import NO_SUMMARY_EVAL

    paper = load_stage_config("eval", "paper", [])
    assert paper.summarizer.engine.model == paper.policy.engine.model
    assert paper.summarizer.sampling == paper.policy.sampling and paper.summarizer.sampling.max_tokens == 229376
    assert paper.summary_max_words is None and paper.samples == 1

    class Recorder(Engine):
        def __init__(self, model_id, reply):
            self.model_id, self.reply, self.seen = model_id, reply, []

        def generate(self, requests):
            for i, r in enumerate(requests):
                self.seen.append(r.messages[-1]["content"])
                yield i, [Completion(self.reply)] * r.n

    cfg = load_stage_config(
        "eval",
        "embedded",
        ["limit=1", "rc_turns=2", "summarizer.engine.model=summ", "policy.engine.model=pol", "summary_max_words=null"],
    )
    policy = Recorder("pol", "<think>I tried induction.</think>\n\nProof by induction.")
    summ = Recorder("summ", "I tried induction.")
    judge = ScriptedJudge(["<score>7</score>"])
    pool = EnginePool()
    for role, eng in ((cfg.policy, policy), (cfg.summarizer, summ), (cfg.judge, judge)):
        pool._engines[role.engine.model_dump_json(exclude={"label"})] = eng
    try:
        res = run_eval(cfg, tmp_path / "ev", benchmark=str(CSV), pool=pool, print_results=False)
    finally:
        pool.close()
    assert [e["mode"] for e in res["table"]] == ["single", "rc@1", "rc@2"]
    single, rc1, rc2 = policy.seen
    assert single.startswith("Generate a rigorous proof to the following question:")
    assert "## Summary of the earlier attempt" in rc1 and NO_SUMMARY_EVAL in rc1
    assert "I tried induction." in rc2.split("## Summary of the earlier attempt")[1]
    (asked,) = summ.seen
    assert NO_SUMMARY_EVAL in asked and "I tried induction." in asked and "Proof by induction" not in asked
    assert "words long" not in asked and "two paragraphs" in asked
