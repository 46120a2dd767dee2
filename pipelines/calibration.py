"""Calibration of a judge against human grades: how far can its grades be trusted?

A calibration set is any table (CSV / JSONL / parquet, read by
:func:`fineproofs.tables.iter_table`) of human-graded proofs in the columns of
IMO-GradingBench: ``problem_id, problem, proof, human_grade`` (0..7), optionally
``id, human_category, grading_guidelines, reference_solution, rubric``; other names
are mapped with ``columns`` (``{our_name: their_column}``). ``fineproofs view`` exports
human grades in this format (:func:`fineproofs.viewer.export_calibration`).

:func:`calibrate` runs a profile's judging role over the set through the build's own
path (:class:`fineproofs.judging.Grader`: same prompt, scale, structured outputs,
sampling, retries, strict parsing, ensemble and quorum; the :class:`CachedGenerator`
and the response store ``OUTPUT/store.sqlite``, stage ``calibrate_<role>``, so a
re-run costs no request and the build's keys are the calibration's keys). A row's
marking text is its ``rubric``, else its ``grading_guidelines``; the reference solution
is shown when the profile's ``grading.with_reference`` says so.

Figures (:func:`metrics`), each with a 95 % percentile interval from a seeded bootstrap
over **problems** (rows of one problem are correlated; resampling rows would make the
intervals too narrow):

- ``mae``: mean absolute error on 0..7; ``bias``: mean (judge - human);
- ``pass_accuracy``: agreement on pass (>= 6) / fail; ``exact_accuracy``; ``within_1``;
- ``category_accuracy``: four categories, the set's own (``human_category`` with the
  IMO-Bench names incorrect / partial / almost / correct) or, without them, bins of the
  human grade 0 / 1-3 / 4-6 / 7; the judge's category is always the bin of its score;
- ``qwk``: quadratic weighted kappa on 0..7; ``pearson``;
- ``parse_failure_rate``: rows whose judge gave no valid score (after every retry)
  over all rows. Those rows are **left out** of every agreement figure, never counted
  as a 0.

Also a confusion table (human grade x judge score, plus ``failed``) and the worst
disagreements. :func:`write_report` writes ``calibration/<role>.json``, ``.md`` and
``.rows.jsonl`` in the output directory.

:func:`calibrate_roles` is what a build runs first: every judging role with a
``grading.calibration.<role>.file`` is calibrated, and a missed threshold raises
:class:`CalibrationMiss` (unless ``continue_on_miss``) before any expensive stage.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fineproofs import rundir
from fineproofs.config import CalibrationConfig, Profile
from fineproofs.errors import ConfigError, DataError, FineproofsError
from fineproofs.records import reason_kind
from fineproofs.tables import iter_table

log = logging.getLogger(__name__)

ROLES = ("judge", "grader")
CATEGORIES = ("incorrect", "partial", "almost", "correct")
FIELDS = (
    "id",
    "problem_id",
    "problem",
    "proof",
    "human_grade",
    "human_category",
    "grading_guidelines",
    "reference_solution",
    "rubric",
)
REQUIRED = ("problem", "proof", "human_grade")
FIGURES = (
    "mae",
    "bias",
    "pass_accuracy",
    "exact_accuracy",
    "within_1",
    "category_accuracy",
    "qwk",
    "pearson",
    "parse_failure_rate",
)
THRESHOLDS = {  # config key -> (figure, the figure must be <= (max) or >= (min) the threshold)
    "max_mae": ("mae", "max"),
    "min_qwk": ("qwk", "min"),
    "min_pass_accuracy": ("pass_accuracy", "min"),
    "max_abs_bias": ("abs_bias", "max"),
    "max_parse_failure_rate": ("parse_failure_rate", "max"),
}
DIR = "calibration"


class CalibrationMiss(FineproofsError):
    """A judging role missed a calibration threshold of the profile: the build stops
    before its expensive stages (set ``continue_on_miss`` to go on)."""


@dataclass
class CalibrationRow:
    id: str
    problem_id: str
    problem: str
    proof: str
    human_grade: int
    human_category: str  # one of CATEGORIES
    guidelines: str = ""
    reference_solution: str = ""
    category_given: bool = False  # human_category came from the set (else the bin of the grade)


def category_of(grade: int) -> str:
    """The four-category bin of a 0..7 grade: 0 / 1-3 / 4-6 / 7."""
    return CATEGORIES[0 if grade == 0 else 1 if grade <= 3 else 2 if grade <= 6 else 3]


def expand_path(text: str) -> Path:
    """A path from a profile: ``${VAR}`` / ``${VAR:-default}`` from the environment, ``~``."""

    def var(m: re.Match) -> str:
        value = os.environ.get(m.group(1))
        if value:
            return value
        if m.group(2) is not None:
            return m.group(2)
        raise ConfigError(f"calibration file {text!r} names ${{{m.group(1)}}}, which is not set in the environment")

    return Path(re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", var, text)).expanduser()


# ----- reading a calibration set -----


def load_rows(
    path: str | Path, columns: dict[str, str] | None = None, limit: int | None = None, max_chars: int | None = None
) -> list[CalibrationRow]:
    """The usable rows of a calibration set; ``limit`` keeps that many, round-robin over
    problems (in file order), so a small sample still spans many problems; ``max_chars``
    leaves out (and counts) proofs longer than that, for judges with a short context."""
    columns = dict(columns or {})
    unknown = sorted(set(columns) - set(FIELDS))
    if unknown:
        raise ConfigError(f"--column names unknown field(s) {unknown}: use {list(FIELDS)}")
    rows, bad = [], Counter()
    for line, raw, err in iter_table(path, what="calibration set"):
        if err:
            bad[err.split(":")[0]] += 1
            continue
        row = _row(raw, columns, line)
        if isinstance(row, str):
            bad[row] += 1
        elif max_chars and len(row.proof) > max_chars:
            bad[f"proof_over_{max_chars}_chars"] += 1
        else:
            rows.append(row)
    if bad:
        log.warning("calibration set %s: %d row(s) left out (%s)", path, sum(bad.values()), dict(bad))
    if not rows:
        raise DataError(
            f"calibration set {path} has no usable row (needs {list(REQUIRED)}"
            f"{'; left out: ' + str(dict(bad)) if bad else ''}); map other names with --column k=v"
        )
    return _round_robin(rows, limit) if limit else rows


def _row(raw: dict, columns: dict[str, str], line: int) -> CalibrationRow | str:
    """A row, or the reason it is unusable."""
    get = {f: raw.get(columns.get(f, f)) for f in FIELDS}
    missing = [f for f in REQUIRED if get[f] in (None, "")]
    if missing:
        return f"missing {'/'.join(missing)}"
    try:
        grade = float(get["human_grade"])
    except (TypeError, ValueError):
        return "human_grade not a number"
    if grade != int(grade) or not 0 <= grade <= 7:
        return "human_grade not a whole number 0..7"
    category = str(get["human_category"] or "").strip().lower()
    text = lambda f: "" if get[f] is None else str(get[f])  # noqa: E731
    problem_id = text("problem_id") or hashlib.sha256(text("problem").encode()).hexdigest()[:12]
    return CalibrationRow(
        id=text("id") or f"row-{line}",
        problem_id=problem_id,
        problem=text("problem"),
        proof=text("proof"),
        human_grade=int(grade),
        human_category=category if category in CATEGORIES else category_of(int(grade)),
        guidelines=text("rubric") or text("grading_guidelines"),
        reference_solution=text("reference_solution"),
        category_given=category in CATEGORIES,
    )


def _round_robin(rows: list[CalibrationRow], limit: int) -> list[CalibrationRow]:
    by_problem: dict[str, list[CalibrationRow]] = {}
    for r in rows:
        by_problem.setdefault(r.problem_id, []).append(r)
    out: list[CalibrationRow] = []
    depth = 0
    while len(out) < min(limit, len(rows)):
        out += [rs[depth] for rs in by_problem.values() if depth < len(rs)][: limit - len(out)]
        depth += 1
    return out


# ----- metrics -----


def _counts(human: list[int], judge: list[int | None], problems: list[str], categories: list[str]):
    """Per problem: the 8x8 (human, judge) confusion of valid rows, failures, rows and
    category agreements, as arrays with the problem on the first axis."""
    ids = sorted(set(problems))
    index = {p: k for k, p in enumerate(ids)}
    conf = np.zeros((len(ids), 8, 8))
    failed, total, agree = np.zeros(len(ids)), np.zeros(len(ids)), np.zeros(len(ids))
    for h, j, p, c in zip(human, judge, problems, categories):
        k = index[p]
        total[k] += 1
        if j is None:
            failed[k] += 1
        else:
            conf[k, h, j] += 1
            agree[k] += category_of(j) == c
    return conf, failed, total, agree


def _figures(conf, failed, total, agree) -> dict[str, np.ndarray]:
    """Every figure from summed counts; leading axes are batch axes (bootstrap)."""
    h = np.arange(8)[:, None]
    j = np.arange(8)[None, :]
    n = conf.sum((-1, -2))
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = lambda mask: (conf * mask).sum((-1, -2)) / n  # noqa: E731
        out = {
            "mae": frac(np.abs(h - j)),
            "bias": frac(j - h),
            "pass_accuracy": frac((h >= 6) == (j >= 6)),
            "exact_accuracy": frac(h == j),
            "within_1": frac(np.abs(h - j) <= 1),
            "category_accuracy": agree / n,
            "parse_failure_rate": failed / total,
        }
        p = conf / n[..., None, None]
        ph, pj = p.sum(-1), p.sum(-2)
        w = (h - j) ** 2 / 49.0
        expected = (w * ph[..., :, None] * pj[..., None, :]).sum((-1, -2))
        out["qwk"] = np.where(expected > 0, 1 - (w * p).sum((-1, -2)) / expected, np.nan)
        g = np.arange(8)
        mh, mj = (ph * g).sum(-1), (pj * g).sum(-1)
        cov = (p * (h - mh[..., None, None]) * (j - mj[..., None, None])).sum((-1, -2))
        vh, vj = (ph * (g - mh[..., None]) ** 2).sum(-1), (pj * (g - mj[..., None]) ** 2).sum(-1)
        out["pearson"] = np.where((vh > 0) & (vj > 0), cov / np.sqrt(vh * vj), np.nan)
    out["abs_bias"] = np.abs(out["bias"])
    return out


def _num(x) -> float | None:
    x = float(x)
    return None if np.isnan(x) else round(x, 4)


def metrics(
    human: list[int],
    judge: list[int | None],
    problems: list[str],
    categories: list[str] | None = None,
    *,
    bootstrap: int = 1000,
    seed: int = 0,
) -> dict:
    """The agreement figures of ``judge`` (None = the judge failed on that row) with
    ``human``, each with ``<figure>_ci``: a 95 % percentile interval from ``bootstrap``
    resamples of the problems (numpy ``default_rng(seed)``: deterministic)."""
    if not (len(human) == len(judge) == len(problems)):
        raise ValueError("human, judge and problems must have one entry per row")
    categories = categories or [category_of(h) for h in human]
    conf, failed, total, agree = _counts(human, judge, problems, categories)
    point = _figures(conf.sum(0), failed.sum(0), total.sum(0), agree.sum(0))
    out: dict = {
        "n": int(conf.sum()),
        "n_rows": len(human),
        "n_failed": int(failed.sum()),
        "n_problems": len(total),
        "bootstrap": bootstrap,
        "seed": seed,
    }
    out.update({k: _num(v) for k, v in point.items()})
    if bootstrap and len(total):
        idx = np.random.default_rng(seed).integers(0, len(total), size=(bootstrap, len(total)))
        boot = _figures(conf[idx].sum(1), failed[idx].sum(1), total[idx].sum(1), agree[idx].sum(1))
        for k in FIGURES:
            vals = boot[k][~np.isnan(boot[k])]
            out[f"{k}_ci"] = [_num(np.percentile(vals, 2.5)), _num(np.percentile(vals, 97.5))] if len(vals) else None
    return out


def confusion(human: list[int], judge: list[int | None]) -> dict:
    """Human grade (rows, those present) x judge score (0..7, then ``failed``)."""
    grades = sorted(set(human))
    cols = [*range(8), "failed"]
    counts = [
        [sum(1 for h, j in zip(human, judge) if h == g and (j == c if c != "failed" else j is None)) for c in cols]
        for g in grades
    ]
    return {"rows": grades, "columns": cols, "counts": counts}


# ----- running a judging role over a calibration set -----


def grade_rows(rows: list[CalibrationRow], role: str, profile: Profile, generator) -> list:
    """The role's grades of ``rows`` through the build's :class:`~fineproofs.judging.Grader`
    (stage ``calibrate_<role>``)."""
    from fineproofs.judging import GradeJob, Grader
    from fineproofs.records import Problem, ProofSample

    grader = Grader(role, getattr(profile, role), profile.grading, generator, stage=f"calibrate_{role}",
                    prompt_files=profile.prompts)  # fmt: skip
    jobs = []
    for i, r in enumerate(rows):
        problem = Problem(
            statement=r.problem,
            source="calibration",
            id=r.problem_id,
            solutions=[r.reference_solution] if r.reference_solution else [],
        )
        sample = ProofSample(r.problem_id, "calibration", i, "", "", r.proof, "stop")
        jobs.append(GradeJob(problem, None, sample, guidelines=r.guidelines))
    return grader.run(jobs), grader


def calibrate(
    profile: Profile,
    role: str,
    against: str | Path,
    out_dir: str | Path,
    *,
    columns: dict[str, str] | None = None,
    limit: int | None = None,
    max_chars: int | None = None,
    pool=None,
    store=None,
    bootstrap: int = 1000,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Calibrate ``profile``'s ``role`` (judge | grader) against the human grades in
    ``against``; writes the report into ``out_dir`` and returns it (a JSON-able dict)."""
    from fineproofs.engines import EnginePool
    from fineproofs.generation import CachedGenerator
    from fineproofs.store import ResponseStore

    if role not in ROLES:
        raise ConfigError(f"--role must be one of {ROLES}, got {role!r}")
    out_dir = Path(out_dir)
    rows = load_rows(against, columns, limit, max_chars)
    own_pool, own_store = pool is None, store is None
    pool = pool or EnginePool()
    store = store or ResponseStore(out_dir / rundir.STORE)
    try:
        gen = CachedGenerator(pool.get(getattr(profile, role).engine), store, progress=progress)
        grades, grader = grade_rows(rows, role, profile, gen)
    finally:
        if own_store:
            store.close()
        if own_pool:
            pool.close()
    judge = [g.score for g in grades]
    result = {
        "role": role,
        "model": getattr(profile, role).engine.display_name,
        "profile": profile.name,
        "scale": grader.scale,
        "structured": grader.structured,
        "prompt_version": grader.prompt_version,
        "against": str(against),
        "sha256": _sha256(against),
        "limit": limit,
        "categories_from": "set" if any(r.category_given for r in rows) else "grade bins",
        **metrics(
            [r.human_grade for r in rows],
            judge,
            [r.problem_id for r in rows],
            [r.human_category for r in rows],
            bootstrap=bootstrap,
            seed=seed,
        ),
        "requests": {"generated": gen.stats.generated, "cached": gen.stats.cached},
        "failure_reasons": dict(Counter(reason_kind(g.reason) for g in grades if g.score is None)),
        "confusion": confusion([r.human_grade for r in rows], judge),
        "worst": _worst(rows, grades),
    }
    write_report(out_dir, result, rows, grades)
    return result


def _sha256(path: str | Path) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return ""


def _worst(rows: list[CalibrationRow], grades: list, k: int = 10) -> list[dict]:
    pairs = [(r, g) for r, g in zip(rows, grades) if g.score is not None and g.score != r.human_grade]
    pairs.sort(key=lambda rg: (-abs(rg[1].score - rg[0].human_grade), rg[0].id))
    return [
        {
            "id": r.id,
            "problem_id": r.problem_id,
            "human": r.human_grade,
            "judge": g.score,
            "gap": g.score - r.human_grade,
            "flags": g.flags,
            "proof_start": r.proof[:160],
        }
        for r, g in pairs[:k]
    ]


def figures_of(result: dict) -> dict:
    """The figures of a calibration result (no tables): what ``--json`` prints and the
    build records in ``build.json["calibration"][role]``."""
    return {k: v for k, v in result.items() if k not in ("confusion", "worst")}


# ----- report -----


def write_report(
    out_dir: str | Path, result: dict, rows: list[CalibrationRow] | None = None, grades: list | None = None
) -> Path:
    """``<out_dir>/calibration/<role>.json`` (the result), ``.md`` (the report) and,
    given the rows, ``.rows.jsonl`` (human vs judge per row). Returns the JSON path."""
    base = Path(out_dir) / DIR
    base.mkdir(parents=True, exist_ok=True)
    role = result["role"]
    rundir.write_text(base / f"{role}.json", json.dumps(result, indent=1, ensure_ascii=False))
    rundir.write_text(base / f"{role}.md", markdown(result))
    if rows is not None and grades is not None:
        rundir.write_jsonl(
            base / f"{role}.rows.jsonl",
            (
                {
                    "id": r.id,
                    "problem_id": r.problem_id,
                    "human_grade": r.human_grade,
                    "judge_grade": g.score,
                    "status": g.status,
                    "reason": g.reason,
                    "flags": g.flags,
                }
                for r, g in zip(rows, grades)
            ),
        )
    return base / f"{role}.json"


def _fmt(result: dict, key: str, pct: bool = False) -> str:
    v, ci = result.get(key), result.get(f"{key}_ci")
    if v is None:
        return "n/a"

    def f(x):
        return fmt_figure(x, pct)

    return f"{f(v)} [{f(ci[0])}, {f(ci[1])}]" if ci and None not in ci else f(v)


FIGURE_LABELS = [
    ("mae", "MAE (0-7)", False),
    ("bias", "mean bias (judge − human)", False),
    ("pass_accuracy", "pass/fail accuracy (≥ 6)", True),
    ("category_accuracy", "four-category accuracy", True),
    ("exact_accuracy", "exact agreement", True),
    ("within_1", "within 1 point", True),
    ("qwk", "quadratic weighted kappa", False),
    ("pearson", "Pearson r", False),
    ("parse_failure_rate", "parse-failure rate", True),
]


def markdown(result: dict) -> str:
    """The calibration report as Markdown."""
    lines = [
        f"# Calibration of the {result['role']}: {result['model']}",
        "",
        f"Against `{result['against']}`: {result['n_rows']} rows of {result['n_problems']} problems, "
        f"{result['n']} graded, {result['n_failed']} without a valid score (left out of the agreement "
        f"figures, never counted as 0). Scale `{result['scale']}`, prompt `{result['prompt_version']}`, "
        f"structured outputs {'on' if result['structured'] else 'off'}; categories from the "
        f"{result['categories_from']}. Intervals: 95 %, {result['bootstrap']} bootstrap resamples of the "
        f"problems (seed {result['seed']}).",
        "",
        "| figure | value [95 % CI] |",
        "|---|---|",
    ]
    lines += [f"| {label} | {_fmt(result, key, pct)} |" for key, label, pct in FIGURE_LABELS]
    conf = result["confusion"]
    lines += [
        "",
        "## Confusion (rows: human grade, columns: judge score)",
        "",
        "| human \\ judge | " + " | ".join(map(str, conf["columns"])) + " |",
        "|---|" + "---|" * len(conf["columns"]),
    ]
    lines += [f"| {g} | " + " | ".join(map(str, c)) + " |" for g, c in zip(conf["rows"], conf["counts"])]
    if result.get("failure_reasons"):
        lines += ["", "Failures by reason: " + ", ".join(f"{k} {v}" for k, v in result["failure_reasons"].items())]
    if result["worst"]:
        lines += ["", "## Worst disagreements", "", "| id | problem | human | judge | gap |", "|---|---|---|---|---|"]
        lines += [
            f"| {w['id']} | {w['problem_id']} | {w['human']} | {w['judge']} | {w['gap']:+d} |" for w in result["worst"]
        ]
    if result.get("thresholds"):
        lines += ["", "## Thresholds", ""] + [f"- `{k}`: {v}" for k, v in result["thresholds"].items()]
        lines += [f"- **missed**: {m}" for m in result.get("missed", [])] or ["- all met"]
    return "\n".join(lines) + "\n"


# ----- calibration in the build -----


def check_thresholds(result: dict, cfg: CalibrationConfig) -> list[str]:
    """The thresholds of ``cfg`` that ``result`` misses, as sentences."""
    missed = []
    for key, limit in cfg.thresholds.items():
        figure, side = THRESHOLDS[key]
        value = abs(result["bias"]) if figure == "abs_bias" and result["bias"] is not None else result.get(figure)
        if value is None:
            missed.append(f"{figure} could not be measured (no validly graded row), {key} is {limit}")
        elif (side == "max" and value > limit) or (side == "min" and value < limit):
            missed.append(f"{figure} {value:.3f} {'exceeds' if side == 'max' else 'is below'} {key} {limit}")
    return missed


def role_settings(profile: Profile, role: str, **overrides) -> CalibrationConfig:
    """The calibration settings of ``role``: the profile's ``grading.calibration.<role>``
    (defaults where it has none) with every override that is not ``None`` applied
    (``file``, ``columns``, ``limit``, ``max_chars``, ``bootstrap``, ``seed``). The build and
    ``fineproofs calibrate`` both read their settings here, so the same profile measures
    the same rows the same way."""
    if role not in ROLES:
        raise ConfigError(f"--role must be one of {ROLES}, got {role!r}")
    cfg = profile.grading.calibration.get(role) or CalibrationConfig()
    given = {k: v for k, v in overrides.items() if v is not None and v != {}}
    return cfg.model_copy(update=given) if given else cfg


def calibrate_role(
    profile: Profile, role: str, cfg: CalibrationConfig, out_dir: str | Path, *, pool=None, store=None,
    progress: bool = True,
) -> dict:  # fmt: skip
    """Calibrate one role with the settings ``cfg`` (:func:`role_settings`): the rows,
    the thresholds checked, the report written. Returns the full result (``missed``
    lists the thresholds missed)."""
    result = calibrate(
        profile,
        role,
        expand_path(cfg.file),
        out_dir,
        columns=cfg.columns,
        limit=cfg.limit,
        max_chars=cfg.max_chars,
        pool=pool,
        store=store,
        bootstrap=cfg.bootstrap,
        seed=cfg.seed,
        progress=progress,
    )
    result["max_chars"] = cfg.max_chars
    result["thresholds"], result["missed"] = cfg.thresholds, check_thresholds(result, cfg)
    write_report(out_dir, result)
    return result


def calibrate_roles(
    profile: Profile,
    out_dir: str | Path,
    *,
    roles: tuple[str, ...] | None = None,
    pool=None,
    store=None,
    continue_on_miss: bool | None = None,
    progress: bool = True,
) -> dict:
    """Calibrate every judging role that has ``grading.calibration.<role>.file`` (of
    ``roles``, default both) into ``out_dir``; returns ``{role: figures}`` for
    ``build.json["calibration"]`` (a role whose file is missing and that has no
    threshold: ``{"skipped": reason}``). Raises :class:`CalibrationMiss` when a role
    misses a threshold, unless ``continue_on_miss`` (default: the role's setting)."""
    out: dict[str, dict] = {}
    misses = []
    for role in roles or ROLES:
        cfg = profile.grading.calibration.get(role)
        if cfg is None or not cfg.file:
            continue
        path = expand_path(cfg.file)
        if not path.is_file():
            if cfg.thresholds:
                raise ConfigError(f"grading.calibration.{role}.file {cfg.file!r}: {path} is not a file")
            log.warning("calibration of the %s skipped: %s is not a file", role, path)
            out[role] = {"role": role, "skipped": f"calibration file {path} not found"}
            continue
        result = calibrate_role(profile, role, role_settings(profile, role), out_dir, pool=pool, store=store,
                                progress=progress)  # fmt: skip
        out[role] = figures_of(result)
        go_on = cfg.continue_on_miss if continue_on_miss is None else continue_on_miss
        if result["missed"] and not go_on:
            misses.append(f"{role}: " + "; ".join(result["missed"]))
        elif result["missed"]:
            log.warning("calibration of the %s missed %s (continuing)", role, result["missed"])
    if misses:
        raise CalibrationMiss(
            "calibration threshold missed, the build stops before its expensive stages ("
            + " | ".join(misses)
            + f"; report in {Path(out_dir) / DIR}); set "
            "grading.calibration.<role>.continue_on_miss: true to build anyway"
        )
    return out


def fmt_figure(x: float, pct: bool = False) -> str:
    """A figure as printed: 3 decimals (or a percentage with 1); never ``-0.000``."""
    digits = 1 if pct else 3
    v = round(100 * x if pct else x, digits) + 0.0  # + 0.0 turns -0.0 into 0.0
    return f"{v:.{digits}f} %" if pct else f"{v:.{digits}f}"


def one_line(figures: dict) -> str:
    """The calibration of one role in one line, for the build's summary: rows, MAE, QWK,
    pass/fail accuracy, parse failures (or why it was skipped)."""
    if figures.get("skipped"):
        return f"skipped ({figures['skipped']})"

    def f(key: str, pct: bool = False) -> str:
        v = figures.get(key)
        return "n/a" if v is None else fmt_figure(v, pct)

    cut = f", proofs over {figures['max_chars']} chars left out" if figures.get("max_chars") else ""
    return (
        f"{figures.get('n', 0)} of {figures.get('n_rows', 0)} proofs graded{cut}: MAE {f('mae')}, "
        f"QWK {f('qwk')}, pass/fail accuracy {f('pass_accuracy', True)}, "
        f"parse failures {f('parse_failure_rate', True)}"
    )
