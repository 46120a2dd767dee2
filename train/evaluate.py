"""``fineproofs eval``: IMO-ProofBench with a judge on the 0/1/6/7 scale.

* Benchmark: a file with the IMO-ProofBench columns (``Problem ID, Problem, Solution,
  Grading guidelines, Category, Level, Short Answer, Source``; ids ``PB-Basic-xxx`` /
  ``PB-Advanced-xxx``) or a Hub dataset ``hf:<id>[@split]`` with the same columns, read by
  :func:`fineproofs.tables.benchmark_rows` like the decontamination benchmarks.
* Modes, as the released harness runs them: ``single`` (one proof from the ``rollout``
  prompt, "Generate a rigorous proof to the following question:" + problem) and ``rc``
  (the reasoning cache at test time, ``rc_turns`` turns; :mod:`fineproofs.train.rc`): turn
  1 already uses the ``rc_reason`` prompt, its summary section holding
  :data:`~fineproofs.train.rc.NO_SUMMARY_EVAL`, so ``rc@1`` is its own generation, not
  the single pass. The summariser (the paper config: the policy itself, with its own
  sampling) reads each turn's thinking; every RC turn's proof is graded, so the results
  give the score after each turn. ``prompts:`` replaces ``eval_grade``, ``rc_reason`` or
  ``rc_summarize`` with a file.
* Judge: :class:`fineproofs.judging.Grader` on the ``proofbench`` scale, the one
  ProofBench grading path: the ``eval_grade`` prompt (problem, reference solution, the
  benchmark's grading guidelines, the proof fenced as data after
  :func:`~fineproofs.judging.neutralise`), read as ``grading.score_parse`` and
  ``grading.structured`` say, N in {0, 1, 6, 7}; anything else is unparseable and retried
  with a new sample, up to ``grading.max_attempts``. A proof still without a valid score
  is a **judge failure: reported, and excluded from the means, never scored 0**. An empty
  or unterminated proof is a real 0 (the model produced nothing gradable).
* Output (in ``--output``): ``results.parquet`` (one row per problem x sample x
  mode/turn), ``results.json`` (summary table, failures, token figures, config) and
  the table printed. Scores are reported as mean points (0-7) and as a percentage
  of 7, overall and for Basic / Advanced.
* Every completion (policy, summariser, judge) goes through the response store
  ``<output>/eval_store.sqlite``: an interrupted eval resumes where it stopped and a
  finished one re-runs with zero requests.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from fineproofs import prompts
from fineproofs.config import ConfigError, GradingConfig, RoleConfig
from fineproofs.engines import EnginePool
from fineproofs.generation import CachedGenerator
from fineproofs.judging import GradeJob, Grader
from fineproofs.records import Problem, ProofSample
from fineproofs.store import ResponseStore
from fineproofs.tables import benchmark_rows
from fineproofs.train.config import EvalRunConfig
from fineproofs.train.rc import NO_SUMMARY_EVAL, Summarizer, engine_generate, run_chains
from fineproofs.train.reward import proof_or_none

log = logging.getLogger(__name__)

COLUMNS = ("Problem ID", "Problem", "Solution", "Grading guidelines")


@dataclass
class BenchProblem:
    id: str
    problem: str
    solution: str
    guidelines: str
    category: str = ""
    level: str = ""
    split: str = ""  # Basic | Advanced


def load_proofbench(
    source: str, split: str = "train", levels=("Basic", "Advanced"), limit: int | None = None, base: Path | None = None
) -> list[BenchProblem]:
    """The IMO-ProofBench problems of ``source`` (a file, relative to the working directory
    or ``base``, or ``hf:<id>[@split]``: :func:`fineproofs.tables.benchmark_rows`, the
    reader the decontamination benchmarks use too), Basic and Advanced interleaved."""
    rows = [
        {k: "" if v is None else v for k, v in row.items()} for _, row in benchmark_rows(source, split=split, base=base)
    ]
    if rows and (missing := [c for c in COLUMNS if c not in rows[0]]):
        raise ConfigError(f"benchmark {source} lacks the IMO-ProofBench column(s) {missing}")
    out = []
    for r in rows:
        pid = str(r["Problem ID"])
        which = "Advanced" if "advanced" in pid.lower() else "Basic" if "basic" in pid.lower() else ""
        if levels and which not in levels:
            continue
        out.append(
            BenchProblem(
                pid,
                str(r["Problem"]),
                str(r.get("Solution", "")),
                str(r.get("Grading guidelines", "")),
                str(r.get("Category", "")),
                str(r.get("Level", "")),
                which,
            )
        )
    # interleave Basic and Advanced so a --limit run still reports both
    basic = [p for p in out if p.split == "Basic"]
    adv = [p for p in out if p.split != "Basic"]
    mixed = [x for pair in zip(basic, adv) for x in pair] + basic[len(adv) :] + adv[len(basic) :]
    return mixed[:limit] if limit else mixed


@dataclass
class EvalVerdict:
    """The judge's verdict on one evaluated proof (``status``: ok | failed | empty)."""

    score: int | None
    status: str
    reason: str = ""
    flags: list[str] = field(default_factory=list)


class ProofBenchGrader:
    """The eval's side of the one ProofBench grading path: each (problem, proof) becomes a
    :class:`~fineproofs.judging.GradeJob` for a :class:`~fineproofs.judging.Grader` on the
    ``proofbench`` scale (the ``eval_grade`` prompt or its ``prompts:`` file, the guard,
    ``grading.score_parse`` and ``grading.structured``, retries, the ensemble snapped back
    onto 0/1/6/7). An empty or unterminated proof is a real 0 and is never sent."""

    def __init__(
        self, role: RoleConfig, cfg: GradingConfig, generator: CachedGenerator, prompt_files: dict | None = None
    ):
        self.grader = Grader(
            "judge", role, cfg, generator, scale="proofbench", stage="eval_grade", prompt_files=prompt_files
        )

    @staticmethod
    def job(p: BenchProblem, proof: str) -> GradeJob:
        problem = Problem(p.problem, "proofbench", id=p.id, solutions=[p.solution] if p.solution else [])
        sample = ProofSample(p.id, "policy", 0, "", "", proof, "stop")
        return GradeJob(problem, None, sample, guidelines=p.guidelines)

    def run(self, items: list[tuple[BenchProblem, str | None]]) -> list[EvalVerdict]:
        todo = [i for i, (_p, proof) in enumerate(items) if proof is not None]
        grades = iter(self.grader.run([self.job(*items[i]) for i in todo]))
        out = []
        for _p, proof in items:
            if proof is None:
                out.append(EvalVerdict(0, "empty", "empty or unterminated proof"))
                continue
            g = next(grades)
            out.append(EvalVerdict(g.score, g.status, g.reason, g.flags))
        return out


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def summarise(rows: list[dict]) -> list[dict]:
    table = []
    for mode in dict.fromkeys(r["mode"] for r in rows):
        sel = [r for r in rows if r["mode"] == mode]
        entry = {"mode": mode}
        for part, keep in (
            ("overall", lambda r: True),
            ("Basic", lambda r: r["split"] == "Basic"),
            ("Advanced", lambda r: r["split"] == "Advanced"),
        ):
            rs = [r for r in sel if keep(r)]
            m = _mean([r["score"] for r in rs if r["status"] != "failed"])
            entry[f"{part}_points"] = m
            entry[f"{part}_pct"] = None if m is None else 100 * m / 7
            entry[f"{part}_n"] = sum(r["status"] != "failed" for r in rs)
        entry["judge_failures"] = sum(r["status"] == "failed" for r in sel)
        entry["mean_max_context_tokens"] = _mean([r["max_context_tokens"] for r in sel])
        entry["mean_total_reasoning_tokens"] = _mean([r["total_reasoning_tokens"] for r in sel])
        table.append(entry)
    return table


def print_table(table: list[dict], title: str = "IMO-ProofBench") -> None:
    from rich.console import Console
    from rich.table import Table

    def pct(v):
        return "-" if v is None else f"{v:.1f}%"

    t = Table(title=title)
    for col in ("mode", "overall", "Basic", "Advanced", "graded", "judge failed", "max ctx", "reasoning"):
        t.add_column(col, justify="right" if col != "mode" else "left")
    for e in table:
        t.add_row(
            e["mode"],
            pct(e["overall_pct"]),
            pct(e["Basic_pct"]),
            pct(e["Advanced_pct"]),
            str(e["overall_n"]),
            str(e["judge_failures"]),
            f"{e['mean_max_context_tokens'] or 0:.0f}",
            f"{e['mean_total_reasoning_tokens'] or 0:.0f}",
        )
    Console().print(t)


def run_eval(
    cfg: EvalRunConfig,
    output_dir: str | Path,
    *,
    model: str | None = None,
    benchmark: str | None = None,
    pool: EnginePool | None = None,
    print_results: bool = True,
) -> dict:
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    policy = cfg.policy
    if model:
        policy = policy.model_copy(update={"engine": policy.engine.model_copy(update={"model": model})})
    problems = load_proofbench(benchmark or cfg.benchmark, cfg.benchmark_split, cfg.levels, cfg.limit, base=Path.cwd())
    if not problems:
        raise ConfigError("the benchmark selection is empty")
    own_pool = pool is None
    pool = pool or EnginePool()
    store = ResponseStore(out / "eval_store.sqlite")
    try:
        gen = CachedGenerator(pool.get(policy.engine), store, progress=False)
        judge = ProofBenchGrader(
            cfg.judge, cfg.grading, CachedGenerator(pool.get(cfg.judge.engine), store, progress=False), cfg.prompts
        )
        summarizer = Summarizer(
            cfg.summarizer,
            pool.get(cfg.summarizer.engine),
            store,
            cfg.summary_max_words,
            prompt=prompts.pick("rc_summarize", cfg.prompts),
            empty=NO_SUMMARY_EVAL,
        )
        single_prompt = prompts.load("rollout")
        rc_prompt = prompts.pick("rc_reason", cfg.prompts)
        turns = cfg.rc_turns if "rc" in cfg.modes else 0
        statements = [p.problem for p in problems]
        rows = []
        for s in range(cfg.samples):
            summarizer.sample_index = s
            if "single" in cfg.modes:
                single = engine_generate(
                    gen, policy, sample_index=s, stage="eval_single", prompt_version=single_prompt.version
                )
                chains = run_chains(statements, 1, single, summarizer, summarize_last=False, prompt=single_prompt)
                rows += _sample_rows(problems, chains, judge, s, single=True)
            if turns:
                rc_gen = engine_generate(gen, policy, sample_index=s, prompt_version=rc_prompt.version)
                chains = run_chains(
                    statements, turns, rc_gen, summarizer, summarize_last=False, prompt=rc_prompt, empty=NO_SUMMARY_EVAL
                )
                rows += _sample_rows(problems, chains, judge, s, single=False)
        table = summarise(rows)
        failures = _failures(rows)
        result = {
            "benchmark": benchmark or cfg.benchmark,
            "model": policy.engine.model,
            "judge": cfg.judge.engine.model,
            "problems": len(problems),
            "samples": cfg.samples,
            "rc_turns": turns or None,
            "table": table,
            "judge_failures": failures,
            "config": cfg.model_dump(),
            "store": store.summary(),
        }
        import pandas as pd

        pd.DataFrame(rows).to_parquet(out / "results.parquet", index=False)
        (out / "results.json").write_text(json.dumps(result, indent=2, default=str))
        if print_results:
            print_table(table, f"IMO-ProofBench: {policy.engine.model} ({len(problems)} problems x {cfg.samples})")
            if failures:
                print(f"{len(failures)} judge failure(s), excluded from the means (see results.json)")
        return result
    finally:
        store.close()
        if own_pool:
            pool.close()


__all__ = ["BenchProblem", "EvalVerdict", "ProofBenchGrader", "load_proofbench", "run_eval", "summarise"]


def _sample_rows(problems: list, chains: list, judge: ProofBenchGrader, s: int, single: bool) -> list[dict]:
    """One row per problem x turn of sample ``s`` (mode ``single``, or ``rc@<turn>``): the
    judge's verdict on every turn's proof (a turn the policy could not generate is a failure,
    excluded and reported, never a 0)."""
    items, meta = [], []
    for p, c in zip(problems, chains):
        for t in c.turns:
            items.append((p, proof_or_none(t.text)))
            meta.append((p, c, t))
    graded = iter(judge.run([it for it, (_, _, t) in zip(items, meta) if not t.failed]))
    verdicts = [
        EvalVerdict(None, "failed", f"policy_failure: {t.failed}") if t.failed else next(graded) for _, _, t in meta
    ]
    rows = []
    for k, ((p, c, t), v) in enumerate(zip(meta, verdicts)):
        upto = c.turns[: t.turn]
        for mode in ["single"] if single else [f"rc@{t.turn}"]:
            rows.append({
                "mode": mode, "problem_id": p.id, "split": p.split, "level": p.level, "category": p.category,
                "sample": s, "turn": t.turn, "score": v.score, "status": v.status, "reason": v.reason,
                "flags": ",".join(v.flags), "proof": items[k][1] or "", "prompt_tokens": t.prompt_tokens,
                "completion_tokens": t.completion_tokens,
                "max_context_tokens": max(x.context_tokens for x in upto),
                "total_reasoning_tokens": sum(x.completion_tokens for x in upto),
            })  # fmt: skip
    return rows


def _failures(rows: list[dict]) -> list[dict]:
    """Each failed (problem, sample, turn) once, with its reason."""
    seen, failures = set(), []
    for r in rows:
        if r["status"] == "failed" and (r["problem_id"], r["sample"], r["turn"]) not in seen:
            seen.add((r["problem_id"], r["sample"], r["turn"]))
            failures.append({k: r[k] for k in ("problem_id", "sample", "turn", "reason")})
    return failures
