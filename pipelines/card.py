"""Write the dataset card (README.md with YAML metadata) of a finished build."""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata
from pathlib import Path

import yaml

from fineproofs import prompts
from fineproofs.cards import render_card
from fineproofs.config import Profile
from fineproofs.records import RL_FEATURES, SFTRow, features_of

FIELD_DOCS = {
    "problem": "problem statement (LaTeX in `$...$`)",
    "reasoning_content": "the teacher's reasoning (thinking block), empty for non-reasoning teachers",
    "proof": "the teacher's proof, after the thinking block, self-evaluation stripped",
    "category": "problem category (Algebra, Combinatorics, Geometry, Number Theory, ...)",
    "competition": "competition and year",
    "source": "where the problem came from",
    "messages": "chat form: user = problem, assistant = `<think>` reasoning + proof",
    "rubrics": "7-point marking scheme (numbered checkpoints, alternatives, zero-credit items, deductions)",
    "scores": "judge grades 0-7 of the student's rollouts (failed judge calls left out)",
    "rewards": "scores / 7",
    "num_rewards": "number of graded rollouts",
    "reward_mean": "mean of rewards",
    "reward_std": "population standard deviation of rewards",
}


def _type_name(feature) -> str:
    return type(feature).__name__ if not hasattr(feature, "dtype") else feature.dtype


def _size_category(n: int) -> str:
    for limit, name in ((1000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "n>1M"


def write_card(
    out_dir: Path,
    *,
    split: str,
    profile: Profile,
    rows: dict[str, int],
    counts: dict[str, int],
    dropped: dict[str, dict[str, int]],
    decontaminated: bool,
    decontam_report: dict,
    rubrics_text: list[str],
    source_licences: dict[str, str],
    rename: dict[str, str],
    benchmark_args: list[str],
    limit: int | None,
    repo_id: str = "",
) -> Path:
    features = RL_FEATURES if split == "rl" else features_of(SFTRow, rename)
    config_names = ["default"] if split == "rl" else ["default", "all"]
    configs = [{"name": c, "path": f"data/{c}/train-*.parquet", "rows": rows.get(c, 0)} for c in config_names]
    metadata = {
        "license": "apache-2.0" if all("Apache" in v for v in source_licences.values()) else "other",
        "language": ["en"],
        "pretty_name": f"FineProofs-{split.upper()} ({profile.name} build)",
        "task_categories": ["text-generation"],
        "tags": ["math", "olympiad", "proofs", "fineproofs", "rubrics" if split == "rl" else "distillation"],
        "size_categories": [_size_category(max(rows.values(), default=0))],
        "configs": [
            {"config_name": c["name"], "data_files": [{"split": "train", "path": c["path"]}],
             **({"default": True} if c["name"] == "default" else {})}
            for c in configs
        ],
        "dataset_info": [
            {"config_name": c["name"], "features": features._to_yaml_list(),
             "splits": [{"name": "train", "num_examples": c["rows"]}]}
            for c in configs
        ],
    }
    roles = {
        name: {
            "model": getattr(profile, name).engine.model,
            "revision": getattr(profile, name).engine.revision,
            **getattr(profile, name).sampling.model_dump(),
        }
        for name in ("teacher", "grader", "rubric_writer", "student", "judge")
        if split == "sft" or name not in ("teacher", "grader")
    }
    ctx = {
        "metadata_yaml": yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True),
        "pretty_name": metadata["pretty_name"],
        "fineproofs_version": importlib.metadata.version("fineproofs"),
        "built_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d"),
        "profile": profile,
        "demo": profile.sources.paths == ["demo"],
        "repo_id": repo_id or "ORG/NAME",
        "configs": configs,
        "fields": [{"name": n, "type": _type_name(f), "description": FIELD_DOCS.get(n, _column_doc(n))}
                   for n, f in features.items()],
        "sources": profile.sources.paths,
        "models": {n: getattr(profile, n).engine.model for n in ("teacher", "grader", "rubric_writer", "student", "judge")},
        "prompt_versions": prompts.versions(),
        "counts": counts,
        "dropped": dropped,
        "decontaminated": decontaminated,
        "decontam": decontam_report or {"benchmarks": {}, "methods": []},
        "roles": roles,
        "rubric_hash": hashlib.sha256("\n\n".join(sorted(rubrics_text)).encode()).hexdigest()[:16],
        "split": split,
        "limit": limit,
        "benchmark_args": benchmark_args,
        "source_licences": [{"source": k, "licence": v} for k, v in sorted(source_licences.items())],
        "k": profile.student_samples,
        "n": profile.teacher_samples,
        "column_naming_note": (
            "the published FineProofs names are kept whatever models were used; the models are listed under Provenance"
            if not rename else "named after the models used: `<grader>-grade`, `<student>-reward@<k>`"
        ),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "profile.yaml").write_text(yaml.safe_dump(profile.model_dump(), sort_keys=False))
    path = out_dir / "README.md"
    path.write_text(render_card(split, ctx))
    return path


def _column_doc(name: str) -> str:
    if name.endswith("-grade"):
        return "grade 0-7 of this proof by the grader named in the column"
    if "-reward@" in name:
        return "mean reward (grade/7) of the student named in the column over k rollouts: the problem's difficulty"
    return ""
