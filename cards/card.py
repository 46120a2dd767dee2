"""Write the dataset card (README.md with YAML metadata) of a finished build.

:func:`write_card` runs after the split writers: it reads the shards back (the
statistics describe what was written, not what was meant to be written), renders
``cards/<split>.md.j2``, validates the result offline
(:func:`fineproofs.cards.validate_card`) and writes next to it:

- ``README.md``: the card (YAML metadata: configs, features, splits, sizes, licence,
  task categories, tags; description, fields, selection policy, statistics, build
  steps with models / revisions / prompt versions / sampling / thresholds, counts
  dropped per stage with reasons, decontamination report, provenance, rebuild
  command, licence of each source);
- ``plots/*.png``: grade histogram, reward_mean distribution, problems per source and
  per category;
- ``profile.yaml``: the exact profile used (credentials in endpoint URLs redacted;
  API keys are never in a profile, only the names of their environment variables);
- ``card_data.json``: what the card shows that the shards cannot tell (counts, drop
  reasons, decontamination, provenance), read back by ``fineproofs stats``.

The card's loading snippet names ``ORG/NAME`` until the run is pushed:
:func:`fineproofs.hub.push_run` substitutes the real repo id in what it uploads.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata
import json
import os
import re
from collections import Counter
from pathlib import Path

import yaml

from fineproofs import prompts
from fineproofs.cards import REPO_PLACEHOLDER, render_card, validate_card
from fineproofs.config import Profile
from fineproofs.records import RL_FEATURES, SFTRow, features_of

FIELD_DOCS = {
    "problem": "problem statement (LaTeX in `$...$`)",
    "reasoning_content": "the teacher's reasoning (thinking block), empty for non-reasoning teachers",
    "proof": "the teacher's proof, after the thinking block, self-evaluation stripped",
    "category": "problem category (Algebra, Combinatorics, Geometry, Number Theory, ...)",
    "competition": "competition and year",
    "source": "where the problem came from",
    "messages": "chat form: user = problem, assistant = `<think>` reasoning `</think>` + proof",
    "rubrics": "7-point marking scheme (numbered checkpoints, alternatives, zero-credit items, deductions)",
    "scores": "judge grades 0-7 of the student's rollouts (failed judge calls left out)",
    "rewards": "scores / 7",
    "num_rewards": "number of graded rollouts",
    "reward_mean": "mean of rewards",
    "reward_std": "population standard deviation of rewards",
}

ROLES = ("teacher", "grader", "rubric_writer", "student", "judge")

# source licence text -> Hub licence id (first match wins; longest ids first)
_LICENCE_IDS = [
    ("cc-by-nc-sa-4.0", r"cc[- ]?by[- ]?nc[- ]?sa[- ]?4"), ("cc-by-nc-nd-4.0", r"cc[- ]?by[- ]?nc[- ]?nd[- ]?4"),
    ("cc-by-nc-4.0", r"cc[- ]?by[- ]?nc[- ]?4"), ("cc-by-sa-4.0", r"cc[- ]?by[- ]?sa[- ]?4"),
    ("cc-by-nd-4.0", r"cc[- ]?by[- ]?nd[- ]?4"), ("cc-by-4.0", r"cc[- ]?by[- ]?4"), ("cc0-1.0", r"cc0"),
    ("apache-2.0", r"apache[- ]?(licen[cs]e[- ,]*)?(version[- ]?)?2"), ("mit", r"\bmit\b"), ("odc-by", r"odc[- ]?by"),
]


def hub_license(source_licences: dict[str, str]) -> tuple[str | list[str], str]:
    """(Hub ``license`` value, note for the card) from the licence of each source."""
    ids, unknown = set(), []
    for src, text in source_licences.items():
        t = (text or "").lower()
        hit = next((i for i, pat in _LICENCE_IDS if re.search(pat, t)), None)
        if hit:
            ids.add(hit)
        else:
            unknown.append(src)
    if unknown or not ids:
        return "other", ("The sources carry different or unstated licences (listed above); the dataset is "
                         "released under the most restrictive of them, see each source.")
    if len(ids) == 1:
        return next(iter(ids)), ""
    return sorted(ids), "Each row keeps the licence of its source (listed above)."


def _type_name(feature) -> str:
    if hasattr(feature, "dtype"):
        return feature.dtype
    if type(feature).__name__ in ("List", "Sequence", "LargeList"):
        inner = feature.feature
        if isinstance(inner, dict):
            return "list of {" + ", ".join(f"{k}: {_type_name(v)}" for k, v in inner.items()) + "}"
        return f"list of {_type_name(inner)}"
    return type(feature).__name__


def _size_category(n: int) -> str:
    for limit, name in ((1000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M"


def _redact_urls(value):
    """Drop user:password@ from URLs anywhere in a dumped profile."""
    if isinstance(value, dict):
        return {k: _redact_urls(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_urls(v) for v in value]
    if isinstance(value, str):
        return re.sub(r"(\w+://)[^/@\s]+@", r"\1***@", value)
    return value


def _versions() -> dict[str, str]:
    out = {}
    for name in ("fineproofs", "datasets", "huggingface_hub", "transformers", "vllm", "polars"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def _arrow_bytes(folder: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.read_table(f).nbytes for f in sorted(folder.glob("*.parquet")))


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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
    from fineproofs.stats import CARD_DATA, card_tables, distributions, write_plots

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    features = RL_FEATURES if split == "rl" else features_of(SFTRow, rename)
    config_names = ["default"] if split == "rl" else ["default", "all"]
    dist = distributions(out_dir)
    rows = {c: dist["rows"].get(c, rows.get(c, 0)) for c in config_names}
    configs = [{"name": c, "path": f"data/{c}/train-*.parquet", "rows": rows[c]} for c in config_names]
    shard_bytes = {c: sum(f.stat().st_size for f in (out_dir / "data" / c).glob("*.parquet")) for c in config_names}
    arrow_bytes = {c: _arrow_bytes(out_dir / "data" / c) for c in config_names}
    license_id, license_note = hub_license(source_licences)
    metadata = {
        "license": license_id,
        **({"license_name": "mixed-source-licences"} if license_id == "other" else {}),
        "language": ["en"],
        "pretty_name": f"FineProofs-{split.upper()} ({profile.name} build)",
        "task_categories": ["text-generation"],
        "tags": ["math", "olympiad", "proofs", "fineproofs", "synthetic"]
        + (["rubrics", "reinforcement-learning", "grpo"] if split == "rl" else ["distillation", "sft", "reasoning"]),
        "size_categories": [_size_category(max(rows.values(), default=0))],
        "configs": [
            {"config_name": c["name"], "data_files": [{"split": "train", "path": c["path"]}],
             **({"default": True} if c["name"] == "default" else {})}
            for c in configs
        ],
        "dataset_info": [
            {"config_name": c["name"], "features": features._to_yaml_list(),
             "splits": [{"name": "train", "num_bytes": arrow_bytes[c["name"]], "num_examples": c["rows"]}],
             "download_size": shard_bytes[c["name"]], "dataset_size": arrow_bytes[c["name"]]}
            for c in configs
        ],
    }
    sampling_counts = {"teacher": profile.teacher_samples, "student": profile.student_samples}
    roles = {
        name: {
            "model": getattr(profile, name).engine.display_name,
            "revision": getattr(profile, name).engine.revision,
            "engine": getattr(profile, name).engine.kind,
            **getattr(profile, name).sampling.model_dump(),
            "samples": sampling_counts.get(name, profile.grading.judges if name in ("judge", "grader") else 1),
        }
        for name in ROLES
        if split == "sft" or name not in ("teacher", "grader")
    }
    flagged = (decontam_report or {}).get("flagged") or []
    decontam = {
        "benchmarks": (decontam_report or {}).get("benchmarks") or {},
        "methods": (decontam_report or {}).get("methods") or [],
        "by_method": dict(sorted(Counter(f.get("method", "unknown") for f in flagged).items())),
    }
    thresholds = (profile.splits.sft if split == "sft" else profile.splits.rl).model_dump()
    pretty_name = metadata["pretty_name"]
    card_data = {
        "split": split, "pretty_name": pretty_name, "profile": profile.name, "rows": rows, "counts": counts,
        "dropped": dropped, "decontaminated": decontaminated, "decontamination": decontam, "roles": roles,
        "prompt_versions": prompts.versions(), "thresholds": thresholds,
        "source_licences": [{"source": k, "licence": v} for k, v in sorted(source_licences.items())],
    }
    tables = card_tables(out_dir, card_data, dist)
    plots = write_plots(dist, out_dir)
    profile_dump = _redact_urls(profile.model_dump())
    profile_yaml = yaml.safe_dump(profile_dump, sort_keys=False, allow_unicode=True)
    reward_col = next((n for n in features if "-reward@" in n), "")
    ctx = {
        "metadata_yaml": yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True),
        "pretty_name": pretty_name,
        "fineproofs_version": importlib.metadata.version("fineproofs"),
        "library_versions": _versions(),
        "built_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d"),
        "profile": profile,
        "profile_yaml": profile_yaml,
        "demo": profile.sources.paths == ["demo"],
        "repo_id": repo_id or REPO_PLACEHOLDER,
        "configs": configs,
        "fields": [{"name": n, "type": _type_name(f), "description": FIELD_DOCS.get(n, _column_doc(n))}
                   for n, f in features.items()],
        "sources": profile.sources.paths,
        "models": {n: getattr(profile, n).engine.display_name for n in ROLES},
        "prompt_versions": card_data["prompt_versions"],
        "decontaminated": decontaminated,
        "decontam": decontam,
        "rubric_hash": hashlib.sha256("\n\n".join(sorted(rubrics_text)).encode()).hexdigest()[:16],
        "split": split,
        "limit": limit,
        "benchmark_args": benchmark_args,
        "k": profile.student_samples,
        "n": profile.teacher_samples,
        "sft": profile.splits.sft,
        "rl": profile.splits.rl,
        "reward_column": reward_col,
        "tables": tables,
        "plots": plots,
        "license_note": license_note,
        "column_naming_note": (
            "the published FineProofs names are kept whatever models were used; the models are listed under Provenance"
            if not rename else "named after the models used: `<grader>-grade`, `<student>-reward@<k>`"
        ),
    }
    text = render_card(split, ctx)
    validate_card(text, expected_features={c: features for c in config_names}, root=out_dir)
    _write_text(out_dir / "profile.yaml", profile_yaml)
    _write_text(out_dir / CARD_DATA, json.dumps(card_data, indent=1, ensure_ascii=False))
    path = out_dir / "README.md"
    _write_text(path, text)
    return path


def _column_doc(name: str) -> str:
    if name.endswith("-grade"):
        return "grade 0-7 of this proof by the grader named in the column"
    if "-reward@" in name:
        return ("mean reward (grade/7) of the student named in the column over its validly graded rollouts "
                "(at most k; rollouts whose judge failed are left out): the problem's difficulty; "
                "null when no rollout could be graded or the problem has no valid rubric")
    return ""
