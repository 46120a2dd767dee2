"""Ingest: sources → parse → clean → classify → dedup → decontaminate → problems.

Every stage is a datatrove pipeline run by a datatrove executor (local by default,
slurm/ray on request) with its own logging dir, so completion markers make a re-run
on the same ``out_dir`` reuse finished work (``skip_completed``). Layout of
``out_dir``::

    problems/problems.jsonl        kept problems (``Problem`` records, sorted by id)
    quarantine/<stage>/<step>/     every dropped document with ``metadata.filter_reason``
    reports/ingest.json            counts, drops, decontamination report
    reports/dedup_clusters.json    duplicate clusters (kept copy + merged copies)
    work/, logs/                   intermediate shards and datatrove logs/markers

If the configuration or the benchmark files change, the old work is discarded.
"""

from __future__ import annotations

import hashlib
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

from fineproofs.config import Profile
from fineproofs.filters import (
    DecontaminationFilter,
    FigureDependence,
    LanguageFilter,
    LatexSanity,
    LengthFilter,
    MarkupNormaliser,
    MultiPartDetector,
    ParseFilter,
    QuestionTypeClassifier,
    RequireSolution,
    StatementSolutionSeparator,
)
from fineproofs.filters.decontaminate import load_benchmark
from fineproofs.filters.dedup import CanonicalMinhashSignature, DedupMerge, minhash_config
from fineproofs.pipelines.sources import SourceReader, resolve_sources
from fineproofs.records import FilterDecision, Problem

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


def _executor(kind: str, pipeline: list, tasks: int, logs: Path, name: str, depends=None, workers: int = 1):
    if kind == "local":
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return LocalPipelineExecutor(pipeline, tasks=tasks, workers=max(1, min(tasks, workers, cpus)),
                                     logging_dir=str(logs / name), skip_completed=True, depends=depends)
    if kind == "slurm":
        from datatrove.executor import SlurmPipelineExecutor

        return SlurmPipelineExecutor(pipeline, tasks=tasks, time=os.environ.get("FINEPROOFS_SLURM_TIME", "04:00:00"),
                                     partition=os.environ.get("FINEPROOFS_SLURM_PARTITION", "cpu"),
                                     logging_dir=str(logs / name), job_name=f"fineproofs-{name}",
                                     skip_completed=True, depends=depends)
    if kind == "ray":
        from datatrove.executor import RayPipelineExecutor

        return RayPipelineExecutor(pipeline, tasks=tasks, logging_dir=str(logs / name), skip_completed=True, depends=depends)
    raise ValueError(f"executor must be local, slurm or ray, got {kind!r}")


def _reason_key(reason: str) -> str:
    return reason.split(":")[0].split(" (")[0].strip() or "unspecified"


def _fingerprint(profile: Profile, benchmarks: list[str], tasks: int) -> str:
    """Everything the ingest output depends on: config, code, and the size and mtime of
    every source and benchmark file (an edited or added source file invalidates it)."""
    from fineproofs.pipelines.sources.reader import resolve_sources

    files = []
    try:
        sources = [s.path for s in resolve_sources(profile.sources.paths) if s.kind != "hub"]
    except FileNotFoundError:
        sources = []  # reported by the reader with the path
    for b in [*benchmarks, *sources]:
        p = Path(b)
        files.append([b, p.stat().st_size if p.exists() else None, p.stat().st_mtime_ns if p.exists() else None])
    blob = json.dumps([profile.sources.model_dump(), profile.filters.model_dump(), profile.decontamination.model_dump(),
                       files, tasks, _code_version()], sort_keys=True, default=str)
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
    out = []
    if folder.exists():
        for f in sorted(folder.rglob("*.jsonl")):
            with open(f) as fh:
                out += [json.loads(line) for line in fh if line.strip()]
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
    )


def run_ingest(profile: Profile, out_dir: Path, *, benchmarks: list[str] | None = None, limit: int | None = None,
               executor: str = "local", tasks: int = 1) -> IngestResult:
    """Run (or resume) ingest for ``profile`` into ``out_dir``."""
    out_dir = Path(out_dir)
    benchmarks = list(benchmarks if benchmarks is not None else profile.decontamination.benchmarks)
    tasks = max(1, int(tasks))
    limit = limit if limit is not None else profile.limit
    work, logs, quarantine = out_dir / "work", out_dir / "logs", out_dir / "quarantine"
    problems_path = out_dir / "problems" / "problems.jsonl"
    reports = out_dir / "reports"

    fp = _fingerprint(profile, benchmarks, tasks)
    fp_file = out_dir / "work" / "fingerprint"
    if fp_file.exists() and fp_file.read_text() != fp:
        log.warning("ingest configuration changed since the last run in %s: starting over", out_dir)
        for d in (work, logs, quarantine, out_dir / "problems", reports):
            shutil.rmtree(d, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    fp_file.write_text(fp)
    if not benchmarks:
        log.warning("!" * 20 + " " + NO_BENCHMARK_WARNING + " " + "!" * 20)

    f, s = profile.filters, profile.sources
    q = lambda stage, step: _writer(quarantine / stage / step)  # noqa: E731
    mh = minhash_config(f.near_dup_threshold)
    sources = resolve_sources(s.paths)
    clean = [
        SourceReader(sources, columns=s.columns, wiki_base_url=s.wiki_base_url, licence=s.licence,
                     max_bytes=s.max_bytes, hub_split=s.hub_split),
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
    e1 = _executor(executor, clean, tasks, logs, "clean", workers=tasks)
    e2 = _executor(executor, [MinhashDedupBuckets(str(work / "minhash" / "sigs"), str(work / "minhash" / "buckets"), config=mh)],
                   mh.num_buckets, logs, "minhash_buckets", depends=e1, workers=tasks)
    e3 = _executor(executor, [MinhashDedupCluster(str(work / "minhash" / "buckets"), str(work / "minhash" / "clusters"),
                                                  config=mh, save_cluster_id=True)], 1, logs, "minhash_cluster", depends=e2)
    e4 = _executor(executor, [DedupMerge(str(work / "clean"), str(work / "minhash" / "clusters"), tasks,
                                         str(reports / "dedup_clusters.json"), q("dedup", "dedup")),
                              _writer(work / "dedup")], 1, logs, "dedup", depends=e3)
    d = profile.decontamination
    final = [JsonlReader(str(work / "dedup"), glob_pattern="*.jsonl")]
    if benchmarks:
        final.append(DecontaminationFilter(benchmarks, q("decontaminated", "decontaminate"), ngram=d.ngram,
                                           ngram_overlap=d.ngram_overlap, shingle_similarity=d.shingle_similarity,
                                           shingle_size=d.shingle_size, weighted_overlap=d.weighted_overlap,
                                           math_overlap=d.math_overlap, paraphrase_words=d.paraphrase_words))
    final.append(_writer(work / "final"))
    e5 = _executor(executor, final, 1, logs, "decontaminate", depends=e4)
    e5.run()
    if executor == "slurm" and not (logs / "decontaminate" / "completions" / "00000").exists():
        raise RuntimeError(f"ingest submitted to slurm; re-run the same command when the jobs finish to collect {out_dir}")

    # ---- collect -------------------------------------------------------------------
    kept = _read_jsonl_dir(work / "final")
    problems = sorted((_to_problem(x) for x in kept), key=lambda p: p.id)
    if limit is not None:
        problems = problems[:limit]
    problems_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = problems_path.with_suffix(".tmp")
    with open(tmp, "w") as fh:
        for p in problems:
            fh.write(json.dumps(p.to_dict(), ensure_ascii=False) + "\n")
    tmp.replace(problems_path)

    dropped: dict[str, dict[str, int]] = {st: {} for st in STAGES[1:]}
    flagged = []
    for st in STAGES[1:]:
        c = Counter()
        for x in _read_jsonl_dir(quarantine / st):
            c[_reason_key(x.get("metadata", {}).get("filter_reason", ""))] += 1
            if st == "decontaminated" and (m := x["metadata"].get("contamination")):
                from fineproofs.records import problem_id

                flagged.append({"id": problem_id(x["text"]), **m})
        dropped[st] = dict(sorted(c.items()))
    counts: dict[str, int] = {}
    n = len(kept) + sum(sum(v.values()) for v in dropped.values())
    counts["read"] = n
    for st in STAGES[1:]:
        n -= sum(dropped[st].values())
        counts[st] = n
    flagged.sort(key=lambda r: (r["benchmark"], r["benchmark_id"], r["id"]))
    bench_report = {}
    for b in benchmarks:
        probs = load_benchmark(b)
        name = probs[0].benchmark if probs else Path(b).stem
        bench_report[name] = {"problems": len(probs), "flagged": sum(1 for r in flagged if r["benchmark"] == name)}
    report = {"benchmarks": bench_report, "methods": DECONTAM_METHODS if benchmarks else [], "flagged": flagged}
    clusters_file = reports / "dedup_clusters.json"
    clusters = json.loads(clusters_file.read_text()) if clusters_file.exists() else []
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "ingest.json").write_text(json.dumps(
        {"counts": counts, "dropped": dropped, "decontaminated": bool(benchmarks), "decontamination": report,
         "problems": len(problems)}, indent=1))
    return IngestResult(problems, counts, dropped, bool(benchmarks), report, problems_path, quarantine, clusters)
