"""Split builders: FineProofs-SFT and FineProofs-RL rows, the selection policy as code.

SFT (``SFTSplitConfig``): a teacher sample is kept when its grade is valid and at
least ``min_grade``, it carries no injection flag, and it is not truncated unless
``keep_truncated``. Config ``all`` holds every kept sample; ``default`` one row per
problem: the best grade, ties broken by (not truncated, lowest sample index).
``messages`` is user = problem, assistant = ``<think>reasoning</think>`` + proof.

RL (``RLSplitConfig``): problems with a valid rubric and at least
``min_num_rewards`` graded rollouts, ``reward_mean`` within
[``min_reward_mean``, ``max_reward_mean``], and, with ``drop_all_same``, a non-zero
reward spread (a GRPO group whose rewards are all equal has zero advantage);
shuffled with ``seed``.

Joins and statistics run in polars; rows are written as parquet in the Hub
layout ``data/<config>/train-00000-of-00001.parquet`` with the exact published
features.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import polars as pl

from fineproofs.config import RLSplitConfig, SFTSplitConfig
from fineproofs.records import (
    RL_FEATURES,
    Grade,
    Message,
    Problem,
    ProofSample,
    RLRow,
    Rubric,
    SFTRow,
    features_of,
    to_row,
)
from fineproofs.pipelines.difficulty import Difficulty


@dataclass
class SplitResult:
    configs: dict[str, Path]  # config name -> parquet file
    rows: dict[str, int]
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> count


def assistant_content(reasoning: str, proof: str) -> str:
    if reasoning:
        return f"<think>\n{reasoning}\n</think>\n\n{proof}"
    return proof


def shard_path(out_dir: Path, config: str) -> Path:
    return out_dir / "data" / config / "train-00000-of-00001.parquet"


def write_parquet(rows: list[dict], features: datasets.Features, path: Path) -> None:
    """Atomic: a crash never leaves a half-written shard where a loader finds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    datasets.Dataset.from_list(rows, features=features).to_parquet(str(tmp))
    os.replace(tmp, path)


def build_sft(
    problems: list[Problem],
    samples: list[ProofSample],
    grades: list[Grade],
    difficulty: dict[str, Difficulty],
    cfg: SFTSplitConfig,
    out_dir: Path,
    rename: dict[str, str],
) -> SplitResult:
    probs = {p.id: p for p in problems}
    g = {x.sample_key: x for x in grades}
    recs, dropped = [], {}

    def drop(reason: str) -> None:
        dropped[reason] = dropped.get(reason, 0) + 1

    for s in samples:
        grade = g.get(s.key)
        if grade is None or grade.score is None:
            drop("no_valid_grade")
            continue
        if grade.flags:
            drop("injection_flagged")
            continue
        if s.truncated and not cfg.keep_truncated:
            drop("truncated")
            continue
        if not s.proof.strip():
            drop("empty_proof")
            continue
        if grade.score < cfg.min_grade:
            drop(f"grade_below_{cfg.min_grade}")
            continue
        recs.append({"problem_id": s.problem_id, "sample_index": s.sample_index, "grade": grade.score,
                     "truncated": s.truncated, "reasoning": s.reasoning_content, "proof": s.proof})
    frame = pl.DataFrame(
        recs,
        schema={"problem_id": pl.String, "sample_index": pl.Int64, "grade": pl.Int64, "truncated": pl.Boolean,
                "reasoning": pl.String, "proof": pl.String},
    ).sort(["problem_id", "grade", "truncated", "sample_index"], descending=[False, True, False, False])
    best = frame.unique(subset="problem_id", keep="first", maintain_order=True)

    features = features_of(SFTRow, rename)

    def rows_of(df: pl.DataFrame) -> list[dict]:
        out = []
        for r in df.iter_rows(named=True):
            p = probs[r["problem_id"]]
            d = difficulty.get(p.id)
            reward = d.reward_mean if d and d.num_rewards else None
            row = SFTRow(
                problem=p.statement,
                reasoning_content=r["reasoning"],
                proof=r["proof"],
                category=p.category,
                competition=p.competition,
                grade=r["grade"],
                reward=reward,
                source=p.source,
                messages=[Message("user", p.statement), Message("assistant", assistant_content(r["reasoning"], r["proof"]))],
            )
            out.append(to_row(row, rename))
        return out

    paths = {}
    for name, df in (("default", best), ("all", frame)):
        paths[name] = shard_path(out_dir, name)
        write_parquet(rows_of(df), features, paths[name])
    return SplitResult(paths, {"default": best.height, "all": frame.height}, dropped)


def build_rl(
    problems: list[Problem],
    rubrics: dict[str, Rubric],
    difficulty: dict[str, Difficulty],
    cfg: RLSplitConfig,
    out_dir: Path,
) -> SplitResult:
    dropped: dict[str, int] = {}
    recs = []
    for p in problems:
        reason = None
        d = difficulty.get(p.id)
        if p.id not in rubrics:
            reason = "no_valid_rubric"
        elif d is None or d.num_rewards < cfg.min_num_rewards:
            reason = "too_few_graded_rollouts"
        elif not cfg.min_reward_mean <= d.reward_mean <= cfg.max_reward_mean:
            reason = "reward_mean_outside_band"
        elif cfg.drop_all_same and d.reward_std == 0:
            reason = "all_rewards_equal"
        if reason:
            dropped[reason] = dropped.get(reason, 0) + 1
            continue
        recs.append(
            to_row(
                RLRow(
                    problem=p.statement,
                    source=p.source,
                    rubrics=rubrics[p.id].render(),
                    scores=d.scores,
                    rewards=d.rewards,
                    num_rewards=d.num_rewards,
                    reward_mean=d.reward_mean,
                    reward_std=d.reward_std,
                )
            )
        )
    rows = pl.DataFrame(recs).sample(fraction=1.0, shuffle=True, seed=cfg.seed).to_dicts() if recs else []
    path = shard_path(out_dir, "default")
    write_parquet(rows, RL_FEATURES, path)
    return SplitResult({"default": path}, {"default": len(rows)}, dropped)
