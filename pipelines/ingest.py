"""Ingest: sources → parse → clean → classify → dedup → decontaminate → problems.

Every stage is a datatrove pipeline run by a datatrove executor (local by default,
slurm/ray on request) with its own logging dir, so completion markers make a re-run
on the same ``out_dir`` reuse finished work (``skip_completed``). Layout of
``out_dir``::

    problems/problems.jsonl        kept problems (``Problem`` records, sorted by id)
    quarantine/<stage>/<step>/     every dropped document with ``metadata.filter_reason``
    reports/ingest.json            counts, drops, decontamination report
    reports/dedup_clusters.json    duplicate clusters (kept copy + merged copies)
    work/final/, logs/             the last step's output and datatrove logs/markers

If the configuration or the benchmark files change, the old work is discarded. Once
every step has finished and the problems are written, the intermediate shards the
later steps consumed (``work/clean``, ``work/minhash``, ``work/dedup``) are removed: a
re-run skips the finished steps and reads only ``work/final`` (:data:`INTERMEDIATE`).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup.minhash import MinhashDedupBuckets, MinhashDedupCluster
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter

from fineproofs import rundir
from fineproofs.config import ExecutorConfig, Profile
from fineproofs.errors import ConfigError, DataError, Submitted
from fineproofs.filters import (
    DecontaminationFilter,
    FigureDependence,
    LanguageFilter,
    LatexSanity,
    LengthFilter,
    MarkupNormaliser,
    MultiPartDetector,
    QuestionTypeClassifier,
    RequireSolution,
    StatementSolutionSeparator,
)
from fineproofs.filters.decontaminate import decontam_settings, load_benchmark
from fineproofs.filters.dedup import CanonicalMinhashSignature, DedupMerge, minhash_config
from fineproofs.pipelines.sources import SourceReader, resolve_sources
from fineproofs.pipelines.sources.parse import ParseFilter
from fineproofs.records import FilterDecision, Problem, problem_id, reason_kind

log = logging.getLogger(__name__)

STAGES = ("read", "parsed", "clean", "classified", "dedup", "decontaminated")
DECONTAM_METHODS = ["ngram", "shingle", "weighted", "math+words"]
NO_BENCHMARK_WARNING = (
    "NOT decontaminated: no benchmark files given; pass --benchmarks FILE (e.g. IMO-ProofBench / "
    "IMO-AnswerBench CSVs) or set decontamination.benchmarks in the profile"
)


@dataclass
class IngestResult:
    problems: list[Problem]
    counts: dict[str, int]
    dropped: dict[str, dict[str, int]]
    decontaminated: bool
    decontam_report: dict
    problems_path: Path
    quarantine_dir: Path
    clusters: list[dict] = field(default_factory=list)


def _writer(folder: Path) -> JsonlWriter:
    return JsonlWriter(str(folder), output_filename="${rank}.jsonl", compression=None)


def check_executor(ex: ExecutorConfig) -> None:
    """Refuse, before anything is written, an executor this machine cannot run."""
    if ex.kind == "slurm" and shutil.which("sbatch") is None:
        raise ConfigError(
            "executor.kind is slurm but `sbatch` is not on PATH: run on a Slurm login node, or use --executor local"
        )
    if ex.kind == "ray" and importlib.util.find_spec("ray") is None:
        raise ConfigError(
            "executor.kind is ray but ray is not installed: `pip install 'ray[default]'`, or use --executor local"
        )


def make_executor(
    ex: ExecutorConfig,
    pipeline: list,
    tasks: int,
    logs: Path,
    name: str,
    depends=None,
    workers: int = 1,
    run_on_dependency_fail: bool = False,
):
    """The datatrove executor the profile's ``executor`` section asks for.
    ``run_on_dependency_fail``: on Slurm, start once ``depends`` has ended even if some of
    its tasks failed (the step then checks what it needs itself)."""
    check_executor(ex)
    common = dict(tasks=tasks, logging_dir=str(logs / name), skip_completed=True, depends=depends)
    if ex.kind == "local":
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return LocalPipelineExecutor(pipeline, workers=max(1, min(tasks, workers, ex.workers or cpus, cpus)), **common)
    if ex.kind == "slurm":
        from datatrove.executor import SlurmPipelineExecutor

        return SlurmPipelineExecutor(
            pipeline,
            time=ex.slurm_time,
            partition=ex.slurm_partition,
            cpus_per_task=ex.cpus_per_task,
            mem_per_cpu_gb=ex.mem_per_cpu_gb,
            job_name=f"fineproofs-{name}",
            run_on_dependency_fail=run_on_dependency_fail,
            **common,
        )
    from datatrove.executor import RayPipelineExecutor

    return RayPipelineExecutor(pipeline, cpus_per_task=ex.cpus_per_task, mem_per_cpu_gb=ex.mem_per_cpu_gb, **common)


def _fingerprint(profile: Profile, benchmarks: list[str], tasks: int) -> str:
    """Everything the ingest output depends on: config, code, and the size and mtime of
    every source and benchmark file (an edited or added source file invalidates it)."""
    files = []
    try:
        sources = [s.path for s in resolve_sources(profile.sources.paths) if s.kind != "hub"]
    except FileNotFoundError:
        sources = []  # reported by the reader with the path
    for b in [*benchmarks, *sources]:
        p = Path(b)
        files.append([b, p.stat().st_size if p.exists() else None, p.stat().st_mtime_ns if p.exists() else None])
    blob = json.dumps(
        [
            profile.sources.model_dump(),
            profile.filters.model_dump(),
            profile.decontamination.model_dump(),
            files,
            tasks,
            _code_version(),
        ],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _code_version() -> str:
    """Hash of the ingest code itself, so a changed filter invalidates cached work."""
    from fineproofs import filters
    from fineproofs.pipelines import sources

    h = hashlib.sha256(Path(__file__).read_bytes())
    for pkg in (filters, sources):
        for f in sorted(Path(pkg.__file__).parent.rglob("*.py")):
            h.update(f.read_bytes())
    return h.hexdigest()[:12]


def _read_jsonl_dir(folder: Path) -> list[dict]:
    """Every record of the JSONL files under ``folder`` (a datatrove writer's output);
    a damaged line stops with its file and line named."""
    out = []
    if folder.exists():
        for f in sorted(folder.rglob("*.jsonl")):
            out += rundir.read_records(f)
    return out


def _to_problem(d: dict) -> Problem:
    m = d.get("metadata", {})
    return Problem(
        statement=d["text"],
        source=m.get("source", ""),
        url=m.get("url", ""),
        competition=m.get("competition", "") or "",
        year=m.get("year"),
        category=m.get("category", "") or "",
        solutions=list(m.get("solutions", [])),
        answer=m.get("answer", "") or "",
        question_type=m.get("question_type", "proof"),
        licence=m.get("licence", "") or "",
        decisions=[FilterDecision(x["step"], bool(x["kept"]), x.get("reason", "")) for x in m.get("decisions", [])],
        candidates=list(m.get("candidates", [])),
        path=m.get("path", "") or "",
    )


def run_ingest(
    profile: Profile,
    out_dir: Path,
    *,
    benchmarks: list[str] | None = None,
    limit: int | None = None,
    executor: str | None = None,
    tasks: int | None = None,
) -> IngestResult:
    """Run (or resume) ingest for ``profile`` into ``out_dir``; keyword overrides fold
    into the profile first (:meth:`Profile.with_overrides`), then only it is read."""
    profile = profile.with_overrides(limit=limit, benchmarks=benchmarks, executor=executor, tasks=tasks)
    check_executor(profile.executor)
    out_dir = rundir.claim(out_dir)
    benchmarks = list(profile.decontamination.benchmarks)
    _start_over_if_changed(out_dir, _fingerprint(profile, benchmarks, profile.executor.tasks))
    if not benchmarks:
        log.warning("!" * 20 + " " + NO_BENCHMARK_WARNING + " " + "!" * 20)
    try:
        _run_pipelines(profile, out_dir)
    except RuntimeError as e:
        if "No files found" not in str(e):
            raise
        # datatrove's reader finds no shard when no row survived a step
        raise DataError(
            f"no problem survived ingest of {', '.join(map(str, profile.sources.paths))}: every row was malformed "
            f"or filtered out (the reasons are in {out_dir / 'quarantine'}); check sources.paths and the filters"
        ) from None
    if profile.executor.kind == "slurm" and not _finished(out_dir):
        raise Submitted(f"ingest submitted to slurm; re-run the same command when the jobs finish to collect {out_dir}")
    result = _collect(profile, out_dir)
    if _finished(out_dir):
        _remove_intermediates(out_dir)
    return result


def _finished(out_dir: Path) -> bool:
    """Whether ingest's last step (one task) has its datatrove completion marker: it runs
    only after every earlier step finished, so then no step will run again."""
    return (out_dir / rundir.LOGS / "decontaminate" / "completions" / "00000").exists()


#: ingest's intermediate shards, each read only by a later step of ingest: once the last
#: step has finished (:func:`_finished`) none of them is read again (a re-run skips every
#: finished step), so they are removed; ``work/final`` stays (it is what ingest returns, cut
#: at ``--limit`` on every run)
INTERMEDIATE = tuple(f"{rundir.WORK}/{d}" for d in ("clean", "minhash", "dedup"))


def _remove_intermediates(out_dir: Path) -> None:
    """Remove :data:`INTERMEDIATE` (ingest's own folders, as a changed configuration removes
    them; a link there is left alone, and so is the rest of ``work/``) once ingest has finished
    and its problems are written; logs what it freed."""
    freed, removed = 0, []
    for rel in INTERMEDIATE:
        path = out_dir / rel
        if not path.is_dir() or path.is_symlink():
            continue
        freed += sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())
        shutil.rmtree(path)
        removed.append(rel)
    if removed:
        log.info(
            "removed ingest's intermediate %s (%.1f MB): every ingest step has finished and %s is written; a "
            "re-run skips those steps",
            ", ".join(removed),
            freed / 1e6,
            rundir.PROBLEMS,
        )


# exactly what ingest creates in the run directory, and so may remove when its configuration
# changes: its intermediate shards, its datatrove logs, its quarantine, its outputs; never the
# folders around them (a build's logs/llm_*, the LLM quarantine, a user's files stay)
_OWN = (
    *(f"{rundir.WORK}/{d}" for d in ("clean", "minhash", "dedup", "final")),
    *(f"{rundir.LOGS}/{d}" for d in ("clean", "minhash_buckets", "minhash_cluster", "dedup", "decontaminate")),
    *(f"{rundir.QUARANTINE}/{st}" for st in STAGES[1:]),
    rundir.PROBLEMS,
    rundir.INGEST_REPORT,
    f"{rundir.REPORTS}/dedup_clusters.json",
    f"{rundir.REPORTS}/decontam_probes.json",
)


def _start_over_if_changed(out_dir: Path, fp: str) -> None:
    fp_file = out_dir / rundir.WORK / "fingerprint"
    if fp_file.exists() and fp_file.read_text() != fp:
        log.warning(
            "ingest configuration changed since the last run in %s: recomputing (removing only ingest's own %s)",
            out_dir,
            ", ".join(_OWN),
        )
        for rel in _OWN:
            path = out_dir / rel
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
    rundir.write_text(fp_file, fp)


def _run_pipelines(profile: Profile, out_dir: Path) -> None:
    f, s, d, ex = profile.filters, profile.sources, profile.decontamination, profile.executor
    work, logs = out_dir / rundir.WORK, out_dir / rundir.LOGS
    quarantine, reports = out_dir / rundir.QUARANTINE, out_dir / rundir.REPORTS

    def q(stage: str, step: str) -> JsonlWriter:
        return _writer(quarantine / stage / step)

    def run(steps: list, tasks: int, name: str, depends=None, workers: int = 1):
        return make_executor(ex, steps, tasks, logs, name, depends, workers)

    mh = minhash_config(f.near_dup_threshold)
    try:
        sources = resolve_sources(s.paths)
    except FileNotFoundError as e:  # a missing, dangling or looping path: one line, not a traceback
        raise DataError(f"{e}: fix sources.paths in the profile") from None
    if not sources:
        raise DataError(
            f"no source file in {', '.join(map(str, s.paths))}: sources.paths must name files or folders of wiki "
            "pages, LaTeX booklets or tables (JSONL/CSV/parquet), or hf:ORG/NAME"
        )
    clean = [
        SourceReader(
            sources,
            columns=s.columns,
            wiki_base_url=s.wiki_base_url,
            licence=s.licence,
            max_bytes=s.max_bytes,
            hub_split=s.hub_split,
        ),
        ParseFilter(q("parsed", "parse")),
        MarkupNormaliser(),
        LatexSanity(q("clean", "latex")),
        StatementSolutionSeparator(q("clean", "separate")),
        *([LanguageFilter(q("clean", "language"))] if f.languages else []),
        LengthFilter(q("clean", "length"), f.min_statement_chars, f.max_statement_chars),
        RequireSolution(q("clean", "solution"), f.require_solution),
        QuestionTypeClassifier(q("classified", "classify"), tuple(f.keep_question_types)),
        MultiPartDetector(q("classified", "multi_part"), f.drop_multi_part),
        FigureDependence(q("classified", "figure"), f.drop_figure_dependent),
        _writer(work / "clean"),
        CanonicalMinhashSignature(str(work / "minhash" / "sigs"), mh),
    ]
    sigs, buckets, clusters = (str(work / "minhash" / x) for x in ("sigs", "buckets", "clusters"))
    e1 = run(clean, ex.tasks, "clean", workers=ex.tasks)
    e2 = run([MinhashDedupBuckets(sigs, buckets, config=mh)], mh.num_buckets, "minhash_buckets", e1, ex.tasks)
    e3 = run([MinhashDedupCluster(buckets, clusters, config=mh, save_cluster_id=True)], 1, "minhash_cluster", e2)
    e4 = run(
        [
            DedupMerge(
                str(work / "clean"), clusters, ex.tasks, str(reports / "dedup_clusters.json"), q("dedup", "dedup")
            ),
            _writer(work / "dedup"),
        ],
        1,
        "dedup",
        e3,
    )
    final = [JsonlReader(str(work / "dedup"), glob_pattern="*.jsonl")]
    if d.benchmarks:
        final.append(
            DecontaminationFilter(list(d.benchmarks), q("decontaminated", "decontaminate"), **decontam_settings(d))
        )
    final.append(_writer(work / "final"))
    run(final, 1, "decontaminate", e4).run()


def _collect(profile: Profile, out_dir: Path) -> IngestResult:
    """Read the pipelines' output back: kept problems (sorted by id, cut at the limit),
    counts and drops per stage, the decontamination report."""
    quarantine, reports = out_dir / rundir.QUARANTINE, out_dir / rundir.REPORTS
    benchmarks = list(profile.decontamination.benchmarks)
    kept = _read_jsonl_dir(out_dir / rundir.WORK / "final")
    problems = sorted((_to_problem(x) for x in kept), key=lambda p: p.id)
    if profile.limit is not None:
        problems = problems[: profile.limit]
    problems_path = out_dir / rundir.PROBLEMS
    rundir.write_jsonl(problems_path, (p.to_dict() for p in problems))
    dropped, flagged = _drops(quarantine)
    counts: dict[str, int] = {}
    n = len(kept) + sum(sum(v.values()) for v in dropped.values())
    counts["read"] = n
    for st in STAGES[1:]:
        n -= sum(dropped[st].values())
        counts[st] = n
    report = _decontam_report(benchmarks, flagged, profile.decontamination, reports)
    clusters_file = reports / "dedup_clusters.json"
    clusters = json.loads(clusters_file.read_text()) if clusters_file.exists() else []
    rundir.write_json(
        out_dir / rundir.INGEST_REPORT,
        {
            "counts": counts,
            "dropped": dropped,
            "decontaminated": bool(benchmarks),
            "decontamination": report,
            "problems": len(problems),
        },
    )
    return IngestResult(problems, counts, dropped, bool(benchmarks), report, problems_path, quarantine, clusters)


def _drops(quarantine: Path) -> tuple[dict[str, dict[str, int]], list[dict]]:
    dropped: dict[str, dict[str, int]] = {}
    flagged = []
    for st in STAGES[1:]:
        c: Counter = Counter()
        for x in _read_jsonl_dir(quarantine / st):
            c[reason_kind(x.get("metadata", {}).get("filter_reason", ""))] += 1
            if st == "decontaminated" and (m := x["metadata"].get("contamination")):
                flagged.append({"id": problem_id(x["text"]), **m})
        dropped[st] = dict(sorted(c.items()))
    flagged.sort(key=lambda r: (r["benchmark"], r["benchmark_id"], r["id"]))
    return dropped, flagged


def _decontam_report(benchmarks: list[str], flagged: list[dict], d=None, reports: Path | None = None) -> dict:
    """Per benchmark, its problems and how many were flagged; the methods; the flagged
    problems; and (``d`` given) the detector measured on the project's probe set with
    these benchmarks indexed (:func:`fineproofs.filters.probes.measure`), kept in
    ``reports/decontam_probes.json`` while the benchmarks and settings stay the same."""
    bench_report = {}
    loaded = []
    for b in benchmarks:
        probs = load_benchmark(b)
        loaded += probs
        name = probs[0].benchmark if probs else Path(b).stem
        bench_report[name] = {"problems": len(probs), "flagged": sum(1 for r in flagged if r["benchmark"] == name)}
    methods = [*DECONTAM_METHODS, *(["retrieval"] if d is not None and d.retrieval else [])]
    out = {"benchmarks": bench_report, "methods": methods if benchmarks else [], "flagged": flagged}
    if d is not None and benchmarks:
        out["probes"] = _probe_figures(loaded, d, reports)
    return out


def _probe_figures(loaded: list, d, reports: Path | None) -> dict:
    from fineproofs.filters.probes import measure, summary

    key = hashlib.sha256(
        json.dumps([[(p.benchmark, p.id, p.text) for p in loaded], d.model_dump(mode="json")], sort_keys=True).encode()
    ).hexdigest()
    cache = reports / "decontam_probes.json" if reports is not None else None
    if cache is not None and cache.exists():
        with contextlib.suppress(ValueError, OSError):
            old = json.loads(cache.read_text())
            if old.get("key") == key:
                return old["figures"]
    figures = summary(measure(loaded, **decontam_settings(d)))
    if cache is not None:
        rundir.write_json(cache, {"key": key, "figures": figures})
    return figures
