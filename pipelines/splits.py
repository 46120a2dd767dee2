"""Split builders: FineProofs-SFT and FineProofs-RL rows, the selection policy as code.

SFT (:class:`~fineproofs.config.SFTSplitConfig`), per graded teacher sample, in this
order (the first rule that applies is the recorded drop reason):

1. ``unknown_problem``: the sample's problem is not in the problem set;
   ``no_category``: the ``category`` stage quarantined the problem (``on_failure:
   quarantine``): a row never has an empty ``category``;
2. ``no_valid_grade``: no grade, or the grader failed (quarantined, never a 0);
3. ``injection_flagged``: the grader flagged the proof (e.g. a prompt injection);
4. ``truncated``: cut at ``max_tokens``, unless ``keep_truncated``;
5. ``empty_proof``: nothing after the thinking block;
6. ``grade_below_<min_grade>``;
7. ``incomplete_not_kept``: graded in [``min_grade``, ``correct_grade``) while
   ``keep_incomplete`` is off. FineProofs keeps correct *and* incomplete proofs.

Config ``all`` holds every kept sample; ``default`` one row per problem: with
``default_pick: best`` the best grade, ties broken by (untruncated first, lowest sample
index); with ``first`` the kept sample of lowest index.

``category`` is the ``category`` stage's label (``stages/category.jsonl``); a problem
the stage never saw (a run from before it) gets the rule's label
(:func:`fineproofs.pipelines.category.from_tags`, else
:func:`~fineproofs.pipelines.category.from_keywords`), so it is never empty. Rows follow the
problem order of the problem set, then grade (best first) and sample index.
``messages`` is what the student's chat template (Qwen3-Thinking) renders for an
assistant turn with ``reasoning_content``: user = problem, assistant =
``"<think>\\n" + reasoning + "\\n</think>\\n\\n" + proof``.

RL (:class:`~fineproofs.config.RLSplitConfig`), per problem:

1. ``screened_out``: the LLM problem filter dropped it (``stages/problem_filter.jsonl``);
   ``no_valid_rubric``: no rubric passed validation;
2. ``too_few_graded_rollouts``: fewer than ``min_num_rewards`` validly graded rollouts
   (the difficulty measurement is missing);
3. ``never_solved`` (every rollout graded 0) / ``always_solved`` (every rollout 7/7)
   with ``drop_never_solved`` / ``drop_always_solved``: a GRPO group whose rewards are
   all equal has zero advantage;
4. ``reward_mean_outside_band``: ``reward_mean`` not in
   [``min_reward_mean``, ``max_reward_mean``];
5. ``all_rewards_equal`` with ``drop_all_same``.

Kept problems are shuffled with ``seed``: they are ordered by
``sha256(f"{seed}:{problem_id}")``, which depends on nothing but the seed and the ids
(no RNG, same order on every machine and library version).

Joins and counts run in polars; rows are written as parquet in the Hub layout
``data/<config>/train-XXXXX-of-YYYYY.parquet`` (``max_rows_per_shard`` rows each) with
the exact published features (:data:`fineproofs.records.RL_FEATURES`,
``features_of(SFTRow, rename)``). Shards are written to temporary names first and
stale shards of an earlier build are removed, so a loader never sees a mix.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import polars as pl

from fineproofs import rundir
from fineproofs.config import RLSplitConfig, SFTSplitConfig
from fineproofs.pipelines.category import from_keywords, from_tags
from fineproofs.records import (
    PUBLISHED_CATEGORIES,
    RL_FEATURES,
    Difficulty,
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


@dataclass
class SplitResult:
    configs: dict[str, Path]  # config name -> first parquet shard
    rows: dict[str, int]
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> count
    shards: dict[str, list[Path]] = field(default_factory=dict)  # config name -> every shard


def assistant_content(reasoning: str, proof: str) -> str:
    """The assistant turn as Qwen3-Thinking's chat template renders ``reasoning_content``
    + ``content``: the thinking block is always present (empty when the teacher gave no
    reasoning), so the student learns one format."""
    return f"<think>\n{reasoning.strip(chr(10))}\n</think>\n\n{proof.lstrip(chr(10))}"


def shard_name(index: int, total: int) -> str:
    return f"train-{index:05d}-of-{total:05d}.parquet"


ROW_GROUP = 256  # rows per parquet row group: a config is written without holding it in memory


def _write_rows(rows: Iterator[dict], n: int, features: datasets.Features, path: Path) -> None:
    """``n`` rows from ``rows`` as parquet with the exact Arrow schema of ``features`` (and
    the ``huggingface`` schema metadata ``datasets`` reads the features from), written in
    row groups of :data:`ROW_GROUP`; with no row, a file with the schema and no row group."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = features.arrow_schema
    with pq.ParquetWriter(str(path), schema) as w:
        batch: list[dict] = []
        for _ in range(n):
            batch.append(features.encode_example(next(rows)))
            if len(batch) == ROW_GROUP:
                w.write_table(pa.Table.from_pylist(batch, schema=schema))
                batch = []
        if batch:
            w.write_table(pa.Table.from_pylist(batch, schema=schema))


def write_config(
    rows: Iterable[dict],
    features: datasets.Features,
    out_dir: Path,
    config: str,
    max_rows_per_shard: int,
    total: int | None = None,
) -> list[Path]:
    """Write one config's rows (``total`` of them, or a list) as shards, streaming; remove
    the shards of an earlier build once the new ones are in place."""
    if total is None:
        rows = list(rows)
        total = len(rows)
    it = iter(rows)
    count = max(1, -(-total // max_rows_per_shard))
    folder = Path(out_dir) / "data" / config
    folder.mkdir(parents=True, exist_ok=True)
    tmps = []
    for i in range(count):
        final = folder / shard_name(i, count)
        tmp = final.with_suffix(".parquet.tmp")
        _write_rows(it, min(max_rows_per_shard, total - i * max_rows_per_shard), features, tmp)
        tmps.append((tmp, final))
    for tmp, final in tmps:  # new shards in place first, then the stale ones go
        os.replace(tmp, final)
    keep = {final.name for _, final in tmps}
    for old in folder.glob("*.parquet"):
        if old.name not in keep:
            old.unlink()
    return [final for _, final in tmps]


def _counts(frame: pl.DataFrame, column: str = "reason") -> dict[str, int]:
    if frame.height == 0:
        return {}
    c = frame.group_by(column).len().sort(column)
    return {r[column]: r["len"] for r in c.iter_rows(named=True)}


def _problem_frame(problems: list[Problem]) -> pl.DataFrame:
    return pl.DataFrame(
        [{"problem_id": p.id, "order": i} for i, p in enumerate(problems)],
        schema={"problem_id": pl.String, "order": pl.Int64},
    ).unique(subset="problem_id", keep="first", maintain_order=True)


def _difficulty_frame(difficulty: dict[str, Difficulty]) -> pl.DataFrame:
    return pl.DataFrame(
        [{"problem_id": k, "scores": list(d.scores), "num_rewards": d.num_rewards} for k, d in difficulty.items()],
        schema={"problem_id": pl.String, "scores": pl.List(pl.Int64), "num_rewards": pl.Int64},
    )


# ---------------------------------------------------------------------------
# SFT
# ---------------------------------------------------------------------------


def select_sft(
    problems: list[Problem],
    samples: list[ProofSample],
    grades: list[Grade],
    cfg: SFTSplitConfig,
    texts: TextIndex | None = None,
    uncategorised: set[str] = frozenset(),
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, int]]:
    """The SFT policy: (kept samples = config ``all``, one per problem = ``default``, drops).
    With ``texts`` the samples carry no text: it is read from the stage files.
    ``uncategorised``: problems the category stage quarantined."""
    empty = texts.empty if texts else {s.key for s in samples if not s.proof.strip()}
    sample_frame = pl.DataFrame(
        [
            {
                "sample_key": s.key,
                "problem_id": s.problem_id,
                "sample_index": s.sample_index,
                "truncated": bool(s.truncated),
                "empty": s.key in empty,
                "no_category": s.problem_id in uncategorised,
                "pos": i,
            }
            for i, s in enumerate(samples)
        ],
        schema={
            "sample_key": pl.String,
            "problem_id": pl.String,
            "sample_index": pl.Int64,
            "truncated": pl.Boolean,
            "empty": pl.Boolean,
            "no_category": pl.Boolean,
            "pos": pl.Int64,
        },
    )
    grade_frame = pl.DataFrame(
        [{"sample_key": g.sample_key, "grade": g.score, "flagged": bool(g.flags)} for g in grades],
        schema={"sample_key": pl.String, "grade": pl.Int64, "flagged": pl.Boolean},
    ).unique(subset="sample_key", keep="last", maintain_order=True)
    joined = sample_frame.join(grade_frame, on="sample_key", how="left").join(
        _problem_frame(problems), on="problem_id", how="left"
    )
    reason = (
        pl.when(pl.col("order").is_null())
        .then(pl.lit("unknown_problem"))
        .when(pl.col("no_category"))
        .then(pl.lit("no_category"))
        .when(pl.col("grade").is_null())
        .then(pl.lit("no_valid_grade"))
        .when(pl.col("flagged"))
        .then(pl.lit("injection_flagged"))
        .when(pl.col("truncated") & pl.lit(not cfg.keep_truncated))
        .then(pl.lit("truncated"))
        .when(pl.col("empty"))
        .then(pl.lit("empty_proof"))
        .when(pl.col("grade") < cfg.min_grade)
        .then(pl.lit(f"grade_below_{cfg.min_grade}"))
        .when((pl.col("grade") < cfg.correct_grade) & pl.lit(not cfg.keep_incomplete))
        .then(pl.lit("incomplete_not_kept"))
        .otherwise(pl.lit(None, dtype=pl.String))
    )
    joined = joined.with_columns(reason.alias("reason"))
    dropped = _counts(joined.filter(pl.col("reason").is_not_null()))
    kept = joined.filter(pl.col("reason").is_null()).sort(
        ["order", "grade", "truncated", "sample_index", "pos"], descending=[False, True, False, False, False]
    )
    pick = kept if cfg.default_pick == "best" else kept.sort(["order", "sample_index", "pos"])
    best = pick.unique(subset="problem_id", keep="first", maintain_order=True)
    return kept, best, dropped


def build_sft(
    problems: list[Problem],
    samples: list[ProofSample],
    grades: list[Grade],
    difficulty: dict[str, Difficulty],
    cfg: SFTSplitConfig,
    out_dir: Path,
    rename: dict[str, str],
    texts: TextIndex | None = None,
    categories: dict[str, str] | None = None,
    uncategorised: set[str] = frozenset(),
) -> SplitResult:
    """Both SFT configs; with ``texts`` the proofs are read from the stage files row by
    row, so no config is ever held in memory. ``categories``: the category stage's label
    per problem; ``uncategorised``: problems it quarantined (their samples are dropped)."""
    probs = {p.id: p for p in problems}
    by_key = {s.key: s for s in samples}
    kept, best, dropped = select_sft(problems, samples, grades, cfg, texts, uncategorised)
    features = features_of(SFTRow, rename)

    def rows_of(df: pl.DataFrame) -> Iterator[dict]:
        for r in df.iter_rows(named=True):
            p, s = probs[r["problem_id"]], by_key[r["sample_key"]]
            reasoning, proof = texts.get(s.key) if texts else (s.reasoning_content, s.proof)
            d = difficulty.get(p.id)
            row = SFTRow(
                problem=p.statement,
                reasoning_content=reasoning,
                proof=proof,
                category=(categories or {}).get(p.id) or category_rule(p),
                competition=competition_label(p),
                grade=r["grade"],
                reward=d.reward_mean if d and d.num_rewards else None,
                source=p.source,
                messages=[
                    Message(role="user", content=p.statement),
                    Message(role="assistant", content=assistant_content(reasoning, proof)),
                ],
            )
            yield to_row(row, rename)

    shards = {}
    for name, df in (("default", best), ("all", kept)):
        shards[name] = write_config(rows_of(df), features, out_dir, name, cfg.max_rows_per_shard, total=df.height)
    return SplitResult(
        {k: v[0] for k, v in shards.items()}, {"default": best.height, "all": kept.height}, dropped, shards
    )


# ---------------------------------------------------------------------------
# RL
# ---------------------------------------------------------------------------


def shuffle_key(seed: int, problem_id: str) -> str:
    return hashlib.sha256(f"{seed}:{problem_id}".encode()).hexdigest()


def select_rl(
    problems: list[Problem],
    rubrics: dict[str, Rubric | str],
    difficulty: dict[str, Difficulty],
    cfg: RLSplitConfig,
    screened: set[str] = frozenset(),
) -> tuple[pl.DataFrame, dict[str, int]]:
    """The RL policy: (kept problems in shuffled order, drops). ``screened``: problems the
    problem filter dropped (they never got a rubric: counted as ``screened_out``)."""
    rub = pl.DataFrame({"problem_id": list(rubrics)}, schema={"problem_id": pl.String}).with_columns(
        pl.lit(True).alias("has_rubric")
    )
    out = pl.DataFrame({"problem_id": sorted(screened)}, schema={"problem_id": pl.String}).with_columns(
        pl.lit(True).alias("screened")
    )
    frame = (
        _problem_frame(problems)
        .join(rub, on="problem_id", how="left")
        .join(out, on="problem_id", how="left")
        .join(_difficulty_frame(difficulty), on="problem_id", how="left")
        .with_columns(
            pl.col("num_rewards").fill_null(0),
            (pl.col("scores").list.sum() / pl.col("num_rewards") / 7).alias("mean"),
        )
    )
    reason = (
        pl.when(pl.col("screened").is_not_null())
        .then(pl.lit("screened_out"))
        .when(pl.col("has_rubric").is_null())
        .then(pl.lit("no_valid_rubric"))
        .when(pl.col("num_rewards") < cfg.min_num_rewards)
        .then(pl.lit("too_few_graded_rollouts"))
        .when((pl.col("scores").list.max() == 0) & pl.lit(cfg.drop_never_solved))
        .then(pl.lit("never_solved"))
        .when((pl.col("scores").list.min() == 7) & pl.lit(cfg.drop_always_solved))
        .then(pl.lit("always_solved"))
        .when((pl.col("mean") < cfg.min_reward_mean - 1e-12) | (pl.col("mean") > cfg.max_reward_mean + 1e-12))
        .then(pl.lit("reward_mean_outside_band"))
        .when((pl.col("scores").list.n_unique() == 1) & pl.lit(cfg.drop_all_same))
        .then(pl.lit("all_rewards_equal"))
        .otherwise(pl.lit(None, dtype=pl.String))
    )
    frame = frame.with_columns(reason.alias("reason"))
    dropped = _counts(frame.filter(pl.col("reason").is_not_null()))
    kept = (
        frame.filter(pl.col("reason").is_null())
        .with_columns(
            pl.col("problem_id")
            .map_elements(lambda i: shuffle_key(cfg.seed, i), return_dtype=pl.String)
            .alias("shuffle")
        )
        .sort("shuffle")
    )
    return kept, dropped


def build_rl(
    problems: list[Problem],
    rubrics: dict[str, Rubric | str],
    difficulty: dict[str, Difficulty],
    cfg: RLSplitConfig,
    out_dir: Path,
    screened: set[str] = frozenset(),
) -> SplitResult:
    probs = {p.id: p for p in problems}
    kept, dropped = select_rl(problems, rubrics, difficulty, cfg, screened)
    rows = []
    for pid in kept["problem_id"].to_list():
        p, d = probs[pid], difficulty[pid]
        rows.append(
            to_row(
                RLRow(
                    problem=p.statement,
                    source=p.source,
                    rubrics=_text(rubrics[pid]),
                    scores=list(d.scores),
                    rewards=d.rewards,
                    num_rewards=d.num_rewards,
                    reward_mean=d.reward_mean,
                    reward_std=d.std(cfg.reward_std_ddof),
                )
            )
        )
    shards = write_config(rows, RL_FEATURES, out_dir, "default", cfg.max_rows_per_shard)
    return SplitResult({"default": shards[0]}, {"default": len(rows)}, dropped, {"default": shards})


def category_rule(p: Problem) -> str:
    """The published category of a problem no category stage decided: its source's tag
    mapped onto the published labels, else the keyword rule (never empty)."""
    return from_tags(p.category, PUBLISHED_CATEGORIES) or from_keywords(p.statement, PUBLISHED_CATEGORIES)


def competition_label(p: Problem) -> str:
    """The SFT ``competition`` column as FineProofs-SFT writes it, competition and year
    together (``IMO-2023``): the year is appended when the competition name lacks it."""
    if p.year and p.competition and str(p.year) not in p.competition:
        return f"{p.competition}-{p.year}"
    return p.competition


def _text(rubric: Rubric | str) -> str:
    return rubric if isinstance(rubric, str) else rubric.render()


# ---------------------------------------------------------------------------
# inputs read back from the stage files
# ---------------------------------------------------------------------------


class TextIndex:
    """Where each teacher sample's text lies in the stage files (file and byte offset):
    the split reads a proof when it writes its row, so memory holds no proof text."""

    def __init__(self) -> None:
        self.at: dict[str, tuple[Path, int]] = {}
        self.empty: set[str] = set()  # samples with nothing after the thinking block

    def add(self, key: str, path: Path, offset: int, proof: str) -> None:
        self.at[key] = (path, offset)
        if not proof.strip():
            self.empty.add(key)

    def get(self, key: str) -> tuple[str, str]:
        d = rundir.read_at(*self.at[key])
        return d["reasoning_content"], d["proof"]


@dataclass
class SplitInputs:
    """What the split builders need, read back from a run's (or its shards') stage
    files: a single-process build and a merge of shards give the same rows."""

    problems: list[Problem] = field(default_factory=list)
    rubrics: dict[str, str] = field(default_factory=dict)  # problem id -> the rubric text the judge saw
    difficulty: dict[str, Difficulty] = field(default_factory=dict)
    proofs: list[ProofSample] = field(default_factory=list)  # teacher samples (SFT), without their text
    grades: list[Grade] = field(default_factory=list)  # valid grades of the teacher samples (SFT)
    texts: TextIndex = field(default_factory=TextIndex)  # where the teacher samples' text is
    screened: set[str] = field(default_factory=set)  # problems the problem filter dropped
    categories: dict[str, str] = field(default_factory=dict)  # problem id -> SFT category (category stage)
    uncategorised: set[str] = field(default_factory=set)  # problems the category stage quarantined


# what each split's writer reads from the stage files (besides the problem set)
RL_INPUTS = ("rubrics", "problem_filter", "difficulty")
SFT_INPUTS = (*RL_INPUTS, "category", "distill", "proof_grades")
_INPUTS = {"rl": RL_INPUTS, "sft": SFT_INPUTS}


def read_inputs(problems_path: Path, stage_dirs: list[Path], inputs: str | Collection[str]) -> SplitInputs:
    """The split's inputs from ``problems.jsonl`` and the ``stages/`` folders given:
    ``inputs`` names the stages to read (a split's name reads that split's,
    :data:`RL_INPUTS` / :data:`SFT_INPUTS`). A damaged line stops with the file and line named."""
    wanted = set(_INPUTS[inputs] if isinstance(inputs, str) else inputs)
    out = SplitInputs(problems=list(rundir.read_problems(problems_path)))

    def read(st: Path, name: str, **kw) -> Iterator:
        return rundir.stage(name).read(st, **kw) if name in wanted else iter(())

    for st in stage_dirs:
        for r in read(st, "rubrics"):
            out.rubrics[r.problem_id] = r.rubric
        out.screened.update(r.problem_id for r in read(st, "problem_filter") if not r.kept)
        for d in read(st, "difficulty"):
            out.difficulty[d.problem_id] = d
        for c in read(st, "category"):
            if c.category:
                out.categories[c.problem_id] = c.category
                out.uncategorised.discard(c.problem_id)
            else:
                out.uncategorised.add(c.problem_id)
        for at, _, s in read(st, "distill", offsets=True):
            out.texts.add(s.key, st / rundir.stage("distill").filename, at, s.proof)
            s.reasoning_content, s.proof = "", ""
            out.proofs.append(s)
        out.grades.extend(read(st, "proof_grades"))
    return out
