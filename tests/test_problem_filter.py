"""The LLM problem filter: strict verdict parsing, the profile's keep rule, retries and
failures handled by ``on_failure``, the final answer only, and re-runs from the store."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from fineproofs import rundir
from fineproofs.config import EngineConfig, ProblemFilterConfig, Profile, RoleConfig, SamplingConfig, load_profile
from fineproofs.engines.base import Completion, Engine, GenerationRequest
from fineproofs.errors import ConfigError
from fineproofs.generation import CachedGenerator
from fineproofs.pipelines.problem_filter import (
    ProblemFilter,
    Verdict,
    VerdictError,
    filter_roles,
    parse_verdict,
    screened_out,
    screener_role,
)
from fineproofs.pipelines.stage import Failed, Recorder, Work
from fineproofs.records import Problem
from fineproofs.store import ResponseStore

CLEAN = {
    "incomplete": False,
    "difficulty": 5,
    "gaps": False,
    "wrong": False,
    "disagreement": False,
    "computational": False,
}


def verdict(**over) -> str:
    """A well-formed reply holding the verdict CLEAN with ``over`` applied."""
    return f"Looks fine.\n\n```json\n{json.dumps({**CLEAN, **over})}\n```"


class Scripted(Engine):
    """Replies from a script, in order (str or Completion); counts the samples asked for."""

    model_id = "scripted-screener"

    def __init__(self, replies):
        self.replies = list(replies)
        self.calls = 0
        self.seen: list[list[dict[str, str]]] = []

    def generate(self, requests: list[GenerationRequest]) -> Iterator[tuple[int, list[Completion]]]:
        for i, r in enumerate(requests):
            self.seen.append(r.messages)
            out = []
            for _ in range(r.n):
                self.calls += 1
                item = self.replies.pop(0)
                out.append(item if isinstance(item, Completion) else Completion(item))
            yield i, out


def problem(n: int = 0, **kw) -> Problem:
    kw.setdefault("solutions", [f"Reference solution {n}."])
    return Problem(statement=f"Prove that the number {n} is the sum of two squares when ...", source="t", **kw)


def stage(engine: Engine, tmp_path, **cfg) -> ProblemFilter:
    role = RoleConfig(engine=EngineConfig(model="x"), sampling=SamplingConfig(max_tokens=64))
    store = ResponseStore(tmp_path / "store.sqlite")
    return ProblemFilter(role, ProblemFilterConfig(enabled=True, **cfg), CachedGenerator(engine, store, progress=False))


def run(st: ProblemFilter, problems: list[Problem]) -> tuple[list[Work], list[Failed]]:
    out = list(st.run([Work(p) for p in problems]))
    return [x for x in out if isinstance(x, Work)], [x for x in out if isinstance(x, Failed)]


def decision(w: Work):
    (d,) = [d for d in w.problem.decisions if d.step == "problem_filter"]
    return d


# -- parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        verdict(),
        f"```\n{json.dumps(CLEAN)}\n```",
        json.dumps(CLEAN),
        f"Some words first.\n```json\n{json.dumps(CLEAN, indent=2)}\n```\n",
    ],
)
def test_parse_accepts_the_format(reply):
    assert parse_verdict(reply) == Verdict(**CLEAN)


@pytest.mark.parametrize(
    "reply, why",
    [
        (verdict(difficulty=0), "difficulty"),
        (verdict(difficulty=11), "difficulty"),
        (verdict(difficulty=5.0), "difficulty"),
        (verdict(difficulty="5"), "difficulty"),
        (verdict(difficulty=True), "difficulty"),
        (verdict(gaps="false"), "gaps"),
        (verdict(wrong=0), "wrong"),
        (verdict(wrong=None), "wrong"),
        (verdict(notes="fine"), "unknown"),
        ("```json\n" + json.dumps({k: v for k, v in CLEAN.items() if k != "gaps"}) + "\n```", "missing"),
        (verdict() + "\n" + verdict(), "2 fenced JSON blocks"),
        ('```json\n{"incomplete": false, "incomplete": true}\n```', "duplicate"),
        ("```json\n{incomplete: false}\n```", "invalid JSON"),
        ("```json\n[1, 2]\n```", "not an object"),
        ("```python\nprint(1)\n```", "no fenced"),
        ("The problem is fine, difficulty 5.", "no fenced"),
        ("```json\n" + json.dumps(CLEAN), "no fenced"),  # the block never closes
        ("", "no fenced"),
    ],
)
def test_parse_refuses_everything_else(reply, why):
    with pytest.raises(VerdictError, match=why):
        parse_verdict(reply)


# -- keep rule -------------------------------------------------------------------------------


def test_keep_and_drop_by_rule(tmp_path):
    replies = [
        verdict(),
        verdict(wrong=True),
        verdict(gaps=True, incomplete=True),
        verdict(difficulty=2),
        verdict(difficulty=9),
        verdict(disagreement=True),
    ]
    st = stage(Scripted(replies), tmp_path, min_difficulty=3, max_difficulty=8)
    works, failed = run(st, [problem(i) for i in range(6)])
    assert not failed
    assert [screened_out(w) for w in works] == [False, True, True, True, True, True]
    assert decision(works[0]).reason == "kept: difficulty 5"
    assert decision(works[1]).reason == "dropped: wrong"
    assert decision(works[2]).reason == "dropped: incomplete, gaps"
    assert "too_easy" in decision(works[3]).reason and "too_hard" in decision(works[4]).reason
    rec = st.records(works[2])[0]
    assert rec["kept"] is False and rec["verdict"] == {**CLEAN, "gaps": True, "incomplete": True}
    assert rec["attempts"] == 1 and rec["prompt_version"] == "problem-filter-v1"
    assert st.tally["kept"] == 1 and st.tally["dropped"] == 5 and st.tally["dropped_by_too_easy"] == 1


def test_drop_flags_choose_what_drops(tmp_path):
    st = stage(Scripted([verdict(gaps=True), verdict(wrong=True)]), tmp_path, drop_flags=["wrong"])
    works, _ = run(st, [problem(0), problem(1)])
    assert [screened_out(w) for w in works] == [False, True]


def test_computational_and_answer_type(tmp_path):
    def problems():
        return [problem(0), problem(1), problem(2, question_type="answer", answer="5")]

    replies = [verdict(computational=True)] * 3
    works, _ = run(stage(Scripted(replies), tmp_path / "a"), problems())
    assert not any(screened_out(w) for w in works)  # drop_computational is off by default

    st = stage(Scripted(replies), tmp_path / "b", drop_computational=True)
    works, _ = run(st, problems())
    assert [screened_out(w) for w in works] == [True, True, True]

    st = stage(Scripted(replies), tmp_path / "c", drop_computational=True, keep_answer_type=True)
    works, _ = run(st, problems())
    assert [screened_out(w) for w in works] == [True, True, False]
    assert st.tally["answer_type_exempt"] == 1
    assert st.records(works[2])[0]["question_type"] == "answer"


# -- failures --------------------------------------------------------------------------------


def test_unparseable_is_retried_then_valid(tmp_path):
    engine = Scripted(["difficulty 5, all fine", verdict(wrong=True)])
    st = stage(engine, tmp_path, max_attempts=3)
    (w,), failed = run(st, [problem()])
    assert not failed and engine.calls == 2 and screened_out(w)
    assert st.records(w)[0]["attempts"] == 2


@pytest.mark.parametrize("on_failure, dropped", [("keep", False), ("drop", True)])
def test_exhausted_screening_is_a_failure_handled_by_on_failure(tmp_path, on_failure, dropped):
    engine = Scripted(["nope", "still no verdict", verdict(difficulty=12)])
    st = stage(engine, tmp_path, max_attempts=3, on_failure=on_failure)
    (w,), (f,) = run(st, [problem()])
    assert engine.calls == 3
    assert f.key == w.id and f.kind == "unparseable_verdict" and "after 3 attempts" in f.reason
    assert screened_out(w) is dropped
    word = "dropped" if dropped else "kept"
    assert decision(w).reason == f"{word}: screening_failed ({word} by on_failure)"
    rec = st.records(w)[0]
    assert rec["verdict"] is None and rec["failure"] == f.reason and rec["attempts"] == 3
    assert st.tally["failed_dropped" if dropped else "failed_kept"] == 1


def test_engine_failure_is_no_attempt_the_next_run_asks_the_same_sample(tmp_path):
    """A server that never answered fails the screening for this run (engine_failure,
    a transient reason) without moving on to the next attempt; the next run asks the
    same sample index again and reads the verdict a fault-free run reads."""
    engine = Scripted(["nope", Completion("", "error", status="failed", reason="http_503 after 4 retries")])
    st = stage(engine, tmp_path, max_attempts=3)
    (w,), (f,) = run(st, [problem()])
    assert engine.calls == 2 and f.kind == "engine_failure" and "attempts" not in f.reason
    engine.replies = [verdict()]
    (w,), failed = run(st, [problem()])
    assert not failed and engine.calls == 3 and not screened_out(w)
    assert st.records(w)[0]["attempts"] == 2


def test_screening_again_replaces_the_verdict(tmp_path):
    p = problem()
    run(stage(Scripted([verdict(wrong=True)]), tmp_path / "a"), [p])
    (w,), _ = run(stage(Scripted([verdict()]), tmp_path / "b"), [p])
    assert not screened_out(w) and decision(w).kept


def test_engine_failure_reason(tmp_path):
    failed = Completion("", "error", status="failed", reason="http_503")
    (w,), (f,) = run(stage(Scripted([failed]), tmp_path, max_attempts=1), [problem()])
    assert f.kind == "engine_failure" and not screened_out(w)


def test_json_in_the_reasoning_is_never_parsed(tmp_path):
    inside = verdict()
    replies = [
        Completion("", reasoning=inside),  # the server returned only reasoning: no answer
        f"<think>\n{inside}\n",  # inline thinking that never closed: no answer
        Completion("All fine, see above.", reasoning=inside),  # an answer without a verdict
        f"<think>\n{inside}\n</think>\nNo JSON here.",
    ]
    st = stage(Scripted(replies), tmp_path, max_attempts=1, on_failure="drop")
    works, failed = run(st, [problem(i) for i in range(4)])
    assert [f.kind for f in failed] == ["no_answer", "no_answer", "unparseable_verdict", "unparseable_verdict"]
    assert all(screened_out(w) for w in works)


def test_the_answer_wins_over_the_reasoning(tmp_path):
    replies = [
        Completion(verdict(), reasoning=verdict(wrong=True)),
        f"<think>\n{verdict(wrong=True)}\n</think>\n{verdict()}",
    ]
    works, failed = run(stage(Scripted(replies), tmp_path), [problem(0), problem(1)])
    assert not failed and not any(screened_out(w) for w in works)


def test_rerun_from_the_store_sends_zero_requests(tmp_path):
    engine = Scripted(["garbage", verdict(wrong=True), verdict()])
    first, _ = run(stage(engine, tmp_path), [problem(0), problem(1)])
    assert engine.calls == 3  # problem 0 needed a second round
    again = Scripted([])
    second, failed = run(stage(again, tmp_path), [problem(0), problem(1)])
    assert again.calls == 0 and not failed
    assert [decision(w) for w in second] == [decision(w) for w in first]


# -- prompt, config, recorder ----------------------------------------------------------------


def test_prompt_shows_source_and_other_posts(tmp_path):
    engine = Scripted([verdict()])
    p = problem(competition="USAMO", year=2001, url="https://example.org/p", solutions=["main", "second way"])
    run(stage(engine, tmp_path), [p])
    (msgs,) = engine.seen
    user = msgs[-1]["content"]
    assert "USAMO 2001 | https://example.org/p" in user and "[1]\nsecond way" in user and "main" in user
    assert "{{" not in user and msgs[0]["role"] == "system"


def test_config_defaults_and_validation():
    assert not load_profile("embedded").problem_filter.enabled
    paper = load_profile("paper").problem_filter  # the release screened its problems (keep rule: ours)
    assert paper.enabled and paper.keep_answer_type and not paper.drop_computational
    cfg = ProblemFilterConfig()
    assert cfg.on_failure == "keep" and not cfg.drop_computational and cfg.max_attempts == 3
    assert set(cfg.drop_flags) == {"incomplete", "wrong", "disagreement", "gaps"}
    with pytest.raises(ValueError, match="drop_computational"):
        ProblemFilterConfig(drop_flags=["computational"])
    with pytest.raises(ValueError, match="max_difficulty"):
        ProblemFilterConfig(min_difficulty=6, max_difficulty=4)
    with pytest.raises(ValueError):
        ProblemFilterConfig(on_failure="skip")


def test_screener_role_falls_back_to_rubric_writer():
    p = load_profile("embedded").with_overrides(**{"problem_filter.enabled": True})
    assert screener_role(p) == "rubric_writer" and filter_roles(p) == []
    data = p.model_dump()
    data["screener"] = {"engine": {"model": "other"}}
    q = Profile.model_validate(data)
    assert screener_role(q) == "screener" and filter_roles(q) == ["screener"]
    with pytest.raises(ConfigError):
        p.with_overrides(**{"problem_filter.drop_flags": ["computational"]})


def test_through_the_recorder(tmp_path):
    st = stage(Scripted([verdict(), "garbage"]), tmp_path, max_attempts=1)
    counts, dropped = {}, {}
    with Recorder(tmp_path / "run", counts, dropped) as rec:
        works = list(rec.through(st, [Work(problem(0)), Work(problem(1))]))
    assert len(works) == 2 and counts["problem_filter"] == 2
    assert dropped["problem_filter"] == {"unparseable_verdict": 1}
    lines = (tmp_path / "run" / rundir.STAGES / "problem_filter.jsonl").read_text().splitlines()
    recs = [json.loads(x) for x in lines]
    assert [r["verdict"] is not None for r in recs] == [True, False] and all(r["kept"] for r in recs)
    quarantine = (tmp_path / "run" / rundir.QUARANTINE / "llm.jsonl").read_text()
    assert '"stage": "problem_filter"' in quarantine


# -- the real embedded model -----------------------------------------------------------------


@pytest.mark.slow
def test_embedded_model_end_to_end(tmp_path, embedded_engine):
    """SmolLM2-135M rarely writes a valid verdict: every problem must still come out
    with one decision, a verdict or a Failed with its reason, never a crash."""
    profile = load_profile("embedded").with_overrides(
        **{"problem_filter.enabled": True, "problem_filter.max_attempts": 2, "rubric_writer.sampling.max_tokens": 24}
    )
    assert profile.rubric_writer.engine.kind == "transformers" and profile.rubric_writer.engine.model == "embedded"
    store = ResponseStore(tmp_path / "store.sqlite")
    st = ProblemFilter.from_profile(profile, lambda role: CachedGenerator(embedded_engine, store, progress=False))
    works, failed = run(st, [problem(0), problem(1)])
    assert len(works) == 2
    for w in works:
        rec = st.records(w)[0]
        assert (rec["verdict"] is None) == any(f.key == w.id for f in failed)
        assert len([d for d in w.problem.decisions if d.step == "problem_filter"]) == 1
    assert st.tally["kept"] + st.tally["dropped"] == 2
