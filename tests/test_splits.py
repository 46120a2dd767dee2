"""Split policy: SFT `default`/`all`, RL reward band, features, sharding, loading back.

``make_records`` / ``make_run`` build small record sets and run directories (split +
card) without any LLM; test_card, test_stats and test_push import them from here.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fineproofs.config import RLSplitConfig, SFTSplitConfig, load_profile
from fineproofs.pipelines.difficulty import Difficulty
from fineproofs.pipelines.splits import assistant_content, build_rl, build_sft, shuffle_key
from fineproofs.records import (
    RL_FEATURES,
    SFT_FEATURES,
    Grade,
    Problem,
    ProofSample,
    Rubric,
    RubricItem,
    SFTRow,
    features_of,
    sft_column_names,
)

CATS = ["Algebra", "Combinatorics", "Geometry", "Number Theory"]


def make_records(n: int = 6):
    """n problems; teacher samples with varied grades; difficulty with varied scores."""
    problems = [
        Problem(
            statement=f"Prove that for every integer $n \\geq {i}$, the number $n^{i + 2} - n$ has property P{i}.",
            source="demo_booklet" if i % 2 else "aops_wiki",
            competition=f"DMO {2020 + i}",
            year=2020 + i,
            category=CATS[i % 4],
            solutions=[f"Reference solution {i}."],
            licence="Apache-2.0 (demo)",
        )
        for i in range(n)
    ]
    rubrics = {
        p.id: Rubric(
            p.id,
            [RubricItem(f"step {j} of problem {i}", p) for j, p in enumerate((3, 4))],
            zero_credit=["restating the problem"],
        )
        for i, p in enumerate(problems)
        if i != 1
    }  # problem 1: no valid rubric
    samples, grades = [], []
    # per problem: grades of its teacher samples (None = grader failed)
    plan = {0: [7, 5, 7], 1: [6], 2: [3, 4], 3: [None, 6], 4: [5, 5], 5: [7]}
    for i, p in enumerate(problems):
        for j, g in enumerate(plan.get(i, [7])):
            s = ProofSample(
                p.id,
                "teacher",
                j,
                "teacher-model",
                f"\nthinking {i}.{j}\n",
                f"Proof {i}.{j}. QED",
                "stop",
                truncated=(i == 4 and j == 0),
            )
            samples.append(s)
            grades.append(
                Grade(
                    s.key,
                    g,
                    "grader",
                    "ok" if g is not None else "failed",
                    reason="" if g is not None else "unparseable: no score",
                )
            )
    # rollout scores per problem: mixed, never solved, always solved, constant 3, mixed, none
    scores = {0: [7, 0, 3, 4], 1: [1, 2], 2: [0, 0, 0, 0], 3: [7, 7, 7, 7], 4: [3, 3, 3, 3], 5: []}
    difficulty = {}
    for i, p in enumerate(problems):
        d = Difficulty(p.id, list(scores.get(i, [2, 5])))
        if i == 5:
            d.failed = 4
        difficulty[p.id] = d
    return problems, rubrics, samples, grades, difficulty


def make_run(
    out: Path,
    split: str,
    *,
    profile_name: str = "paper-plus",
    n: int = 6,
    rename: dict | None = None,
    decontam: bool = True,
    **split_overrides,
) -> Path:
    """A run directory as a build leaves it: split shards, card, plots, plus the
    non-pushable parts (store.sqlite, stages/, quarantine/) for the push tests."""
    from fineproofs.cards.card import CardFacts, write_card
    from fineproofs.rubric import rubric_hash

    prof = load_profile(profile_name)
    # a selection policy that exercises every drop reason (paper-plus, SFT grades >= 5, population std)
    split_overrides = {**({"min_grade": 5} if split == "sft" else {"reward_std_ddof": 0}), **split_overrides}
    data = prof.model_dump()
    data["splits"][split].update(split_overrides)
    prof = type(prof).model_validate(data)
    problems, rubrics, samples, grades, difficulty = make_records(n)
    rename = rename or {}
    if split == "rl":
        res = build_rl(problems, rubrics, difficulty, prof.splits.rl, out)
    else:
        res = build_sft(problems, samples, grades, difficulty, prof.splits.sft, out, rename)
    (out / "problems").mkdir(parents=True, exist_ok=True)
    import json

    (out / "problems" / "problems.jsonl").write_text("".join(json.dumps(p.to_dict()) + "\n" for p in problems))
    (out / "store.sqlite").write_bytes(b"SQLite format 3\x00 not for the hub")
    (out / "stages").mkdir(exist_ok=True)
    (out / "stages" / "rollouts.jsonl").write_text('{"secret": "stage data"}\n')
    (out / "quarantine").mkdir(exist_ok=True)
    (out / "quarantine" / "llm.jsonl").write_text('{"reason": "unparseable"}\n')
    report = {
        "benchmarks": {"IMO-ProofBench": {"problems": 60, "flagged": 2}},
        "methods": ["ngram", "shingle", "weighted", "math+words"],
        "flagged": [
            {"id": "x", "benchmark": "IMO-ProofBench", "benchmark_id": "PB-1", "method": "ngram"},
            {"id": "y", "benchmark": "IMO-ProofBench", "benchmark_id": "PB-2", "method": "shingle"},
        ],
    }
    write_card(
        out,
        prof,
        CardFacts(
            split=split,
            rows=res.rows,
            counts={"read": n + 3, "decontaminated": n, "rubrics": len(rubrics), "split": res.rows["default"]},
            dropped={
                "decontaminated": {"contaminated": 2},
                "parsed": {"no_statement": 1},
                "rubrics": {"invalid_rubric": 1},
                "split": res.dropped,
            },
            decontaminated=decontam,
            decontam_report=report if decontam else {"benchmarks": {}, "methods": []},
            rubric_hash=rubric_hash(r.render() for r in rubrics.values()),
            source_licences={p.source: p.licence for p in problems},
            rename=rename,
            benchmark_args=["proofbench_v2.csv"] if decontam else [],
            limit=None,
        ),
    )
    return out


def _load(run_dir: Path, config: str):
    """One config's shards as written (no card yet: load the parquet files directly)."""
    import datasets

    files = sorted(str(p) for p in (Path(run_dir) / "data" / config).glob("*.parquet"))
    return datasets.load_dataset("parquet", data_files=files, split="train")


# ---------------------------------------------------------------------------
# SFT
# ---------------------------------------------------------------------------


def test_sft_policy_default_and_all(tmp_path):
    problems, rubrics, samples, grades, difficulty = make_records()
    res = build_sft(problems, samples, grades, difficulty, SFTSplitConfig(min_grade=5), tmp_path, {})
    # kept: p0 (7,5,7), p1 (6), p3 (6; one grade failed), p4 (5 untruncated; truncated one dropped), p5 (7)
    assert res.rows == {"default": 5, "all": 7}
    assert res.dropped == {"grade_below_5": 2, "no_valid_grade": 1, "truncated": 1}
    default = _load(tmp_path, "default")
    every = _load(tmp_path, "all")
    assert default.features == SFT_FEATURES and every.features == SFT_FEATURES
    # default: best grade, ties -> lowest sample index; rows in problem order
    assert [r["proof"] for r in default] == [
        "Proof 0.0. QED",
        "Proof 1.0. QED",
        "Proof 3.1. QED",
        "Proof 4.1. QED",
        "Proof 5.0. QED",
    ]
    assert [r["gemini-3-pro-grade"] for r in every] == [7, 7, 5, 6, 6, 5, 7]
    r0 = default[0]
    assert r0["problem"] == problems[0].statement and r0["category"] == "Algebra" and r0["competition"] == "DMO 2020"
    assert r0["qwen3-4b-thinking-reward@128"] == pytest.approx(14 / 28)
    assert r0["messages"] == [
        {"role": "user", "content": problems[0].statement},
        {"role": "assistant", "content": "<think>\nthinking 0.0\n</think>\n\nProof 0.0. QED"},
    ]
    # no graded rollout -> reward is null, not 0
    assert default[4]["qwen3-4b-thinking-reward@128"] is None


def test_sft_incomplete_and_truncated_switches(tmp_path):
    problems, rubrics, samples, grades, difficulty = make_records()
    res = build_sft(
        problems,
        samples,
        grades,
        difficulty,
        SFTSplitConfig(min_grade=5, keep_incomplete=False, keep_truncated=True),
        tmp_path,
        {},
    )
    assert res.dropped["incomplete_not_kept"] == 5  # 5 (p0), 6 (p1), 6 (p3), 5, 5 (p4)
    assert res.rows == {"default": 2, "all": 3}
    res = build_sft(
        problems, samples, grades, difficulty, SFTSplitConfig(min_grade=0, keep_truncated=True), tmp_path, {}
    )
    assert res.rows["all"] == 10 and res.dropped == {"no_valid_grade": 1}
    # tie at grade 5 for p4: the untruncated sample wins
    d = _load(tmp_path, "default")
    assert "Proof 4.1. QED" in d["proof"] and "Proof 4.0. QED" not in d["proof"]


def test_sft_model_named_columns(tmp_path):
    problems, rubrics, samples, grades, difficulty = make_records()
    rename = sft_column_names("models", "gpt-oss-20b", "qwen3-4b-thinking-2507", 16)
    build_sft(problems, samples, grades, difficulty, SFTSplitConfig(), tmp_path, rename)
    ds = _load(tmp_path, "all")
    assert ds.features == features_of(SFTRow, rename)
    assert "gpt-oss-20b-grade" in ds.column_names and "qwen3-4b-thinking-2507-reward@16" in ds.column_names


def test_assistant_content_matches_qwen3_thinking_template():
    assert assistant_content("\n\nr\n", "\np") == "<think>\nr\n</think>\n\np"
    assert assistant_content("", "p") == "<think>\n\n</think>\n\np"


def test_sharding_and_stale_shards_removed(tmp_path):
    problems, rubrics, samples, grades, difficulty = make_records()
    build_sft(
        problems,
        samples,
        grades,
        difficulty,
        SFTSplitConfig(min_grade=0, keep_truncated=True, max_rows_per_shard=3),
        tmp_path,
        {},
    )
    names = sorted(p.name for p in (tmp_path / "data" / "all").glob("*"))
    assert names == [f"train-0000{i}-of-00004.parquet" for i in range(4)]
    build_sft(problems, samples, grades, difficulty, SFTSplitConfig(min_grade=0, keep_truncated=True), tmp_path, {})
    assert sorted(p.name for p in (tmp_path / "data" / "all").glob("*")) == ["train-00000-of-00001.parquet"]


# ---------------------------------------------------------------------------
# RL
# ---------------------------------------------------------------------------


def test_rl_policy_reward_band_and_reasons(tmp_path):
    problems, rubrics, samples, grades, difficulty = make_records(8)
    res = build_rl(problems, rubrics, difficulty, RLSplitConfig(), tmp_path)
    # p0 mixed kept; p1 no rubric; p2 never solved; p3 always solved; p4 constant 3s; p5 no graded rollouts
    assert res.dropped == {
        "all_rewards_equal": 1,
        "always_solved": 1,
        "never_solved": 1,
        "no_valid_rubric": 1,
        "too_few_graded_rollouts": 1,
    }
    assert res.rows == {"default": 3}
    ds = _load(tmp_path, "default")
    assert ds.features == RL_FEATURES
    kept_ids = {problems[i].id for i in (0, 6, 7)}
    expected = sorted(kept_ids, key=lambda i: shuffle_key(42, i))
    by_statement = {p.statement: p.id for p in problems}
    assert [by_statement[r["problem"]] for r in ds] == expected
    row = next(r for r in ds if r["problem"] == problems[0].statement)
    assert row["scores"] == [7, 0, 3, 4] and row["rewards"] == [1.0, 0.0, 3 / 7, 4 / 7]
    assert row["num_rewards"] == 4 and row["reward_mean"] == pytest.approx(0.5)
    assert row["rubrics"] == rubrics[problems[0].id].render()


def test_rl_band_configurable_and_seed(tmp_path):
    problems, rubrics, samples, grades, difficulty = make_records(8)
    keep_all = RLSplitConfig(drop_never_solved=False, drop_always_solved=False, drop_all_same=False)
    res = build_rl(problems, rubrics, difficulty, keep_all, tmp_path)
    assert res.rows["default"] == 6 and res.dropped == {"no_valid_rubric": 1, "too_few_graded_rollouts": 1}
    band = RLSplitConfig(min_reward_mean=0.4, max_reward_mean=0.6)
    res = build_rl(problems, rubrics, difficulty, band, tmp_path)
    assert res.rows["default"] == 3 and "reward_mean_outside_band" not in res.dropped
    tight = RLSplitConfig(min_reward_mean=0.6, max_reward_mean=0.9)
    res = build_rl(problems, rubrics, difficulty, tight, tmp_path)
    # p0, p6, p7 (0.5) and p4 (3/7: the band is checked before the constant-group rule)
    assert res.rows["default"] == 0 and res.dropped["reward_mean_outside_band"] == 4
    # an empty split is still a valid shard with the exact schema (datasets 5.2 cannot
    # load a split with no rows at all; pyarrow / polars read it)
    import pyarrow.parquet as pq

    t = pq.read_table(tmp_path / "data" / "default" / "train-00000-of-00001.parquet")
    assert t.num_rows == 0 and t.schema.equals(RL_FEATURES.arrow_schema, check_metadata=False)
    with pytest.raises(ValueError):
        RLSplitConfig(min_reward_mean=0.8, max_reward_mean=0.2)


def test_rl_shuffle_is_deterministic_and_seeded(tmp_path):
    problems, rubrics, samples, grades, difficulty = make_records(12)
    cfg = RLSplitConfig(drop_never_solved=False, drop_always_solved=False, drop_all_same=False)
    build_rl(problems, rubrics, difficulty, cfg, tmp_path / "a")
    build_rl(list(reversed(problems)), rubrics, difficulty, cfg, tmp_path / "b")
    build_rl(problems, rubrics, difficulty, cfg.model_copy(update={"seed": 7}), tmp_path / "c")
    a, b, c = (_load(tmp_path / x, "default")["problem"] for x in "abc")
    assert a == b and sorted(a) == sorted(c) and a != c


def test_run_dir_loads_with_datasets(tmp_path):
    """Done-when: datasets.load_dataset(RUN_DIR, "default"/"all") with the published features."""
    sft = make_run(tmp_path / "sft", "sft")
    rl = make_run(tmp_path / "rl", "rl")
    import datasets

    assert datasets.load_dataset(str(sft), "default", split="train").features == SFT_FEATURES
    assert datasets.load_dataset(str(sft), "all", split="train").features == SFT_FEATURES
    assert datasets.load_dataset(str(rl), split="train").features == RL_FEATURES
    assert datasets.load_dataset(str(rl), "default", split="train").features == RL_FEATURES
    assert os.path.exists(sft / "README.md") and os.path.exists(rl / "plots" / "grade_histogram.png")


def test_competition_label_carries_the_year_as_published():
    from fineproofs.pipelines.splits import competition_label

    assert competition_label(Problem(statement="p", source="s", competition="IMO", year=2023)) == "IMO-2023"
    assert competition_label(Problem(statement="p", source="s", competition="DMO 2020", year=2020)) == "DMO 2020"
    assert competition_label(Problem(statement="p", source="s", competition="IMO")) == "IMO"
    assert competition_label(Problem(statement="p", source="s")) == ""
