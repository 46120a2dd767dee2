"""Write the dataset card (README.md with YAML metadata) of a finished build.

:func:`write_card` runs after the build (it reads the run directory: ``build.json``
and the shards): it reads the shards back (the
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
:func:`fineproofs.cards.hub.push_run` substitutes the real repo id in what it uploads.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from fineproofs import prompts, rundir
from fineproofs.cards import REPO_PLACEHOLDER, render_card, validate_card
from fineproofs.cards.fidelity import differences
from fineproofs.cards.spec import ROLES, CardSpec, card_spec
from fineproofs.cards.stats import CARD_DATA, card_tables, distributions, write_plots
from fineproofs.config import Profile, public_yaml
from fineproofs.errors import DataError

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

# source licence text -> Hub licence id (first match wins; longest ids first)
_LICENCE_IDS = [
    ("cc-by-nc-sa-4.0", r"cc[- ]?by[- ]?nc[- ]?sa[- ]?4"),
    ("cc-by-nc-nd-4.0", r"cc[- ]?by[- ]?nc[- ]?nd[- ]?4"),
    ("cc-by-nc-4.0", r"cc[- ]?by[- ]?nc[- ]?4"),
    ("cc-by-sa-4.0", r"cc[- ]?by[- ]?sa[- ]?4"),
    ("cc-by-nd-4.0", r"cc[- ]?by[- ]?nd[- ]?4"),
    ("cc-by-4.0", r"cc[- ]?by[- ]?4"),
    ("cc0-1.0", r"cc0"),
    ("apache-2.0", r"apache[- ]?(licen[cs]e[- ,]*)?(version[- ]?)?2"),
    ("mit", r"\bmit\b"),
    ("odc-by", r"odc[- ]?by"),
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
        return "other", (
            "The sources carry different or unstated licences (listed above); the dataset is "
            "released under the most restrictive of them, see each source."
        )
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


@dataclass
class CardFacts:
    """What the card says that the shards cannot tell: the build's counts, drops,
    decontamination and provenance. A build writes them to ``build.json``."""

    split: str
    rows: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, dict[str, int]] = field(default_factory=dict)
    decontaminated: bool = False
    decontam_report: dict = field(default_factory=dict)
    rubric_hash: str = ""
    source_licences: dict[str, str] = field(default_factory=dict)
    rename: dict[str, str] = field(default_factory=dict)
    benchmark_args: list[str] = field(default_factory=list)
    limit: int | None = None
    calibration: dict = field(default_factory=dict)  # per judging role (pipelines.calibration.calibrate_roles)
    incomplete: dict = field(default_factory=dict)  # stage -> reason -> items lost to transient failures

    @classmethod
    def from_run(cls, run_dir: Path) -> CardFacts:
        path = Path(run_dir) / rundir.MANIFEST
        try:
            m = rundir.read_manifest(path)
            return cls(
                split=m["split"],
                rows=m.get("rows", {}),
                counts=m.get("counts", {}),
                dropped=m.get("dropped", {}),
                decontaminated=bool(m.get("decontaminated")),
                decontam_report=m.get("decontamination") or {},
                rubric_hash=m.get("rubric_hash", ""),
                source_licences=m.get("source_licences", {}),
                rename=m.get("rename", {}),
                benchmark_args=m.get("benchmarks", []),
                limit=m.get("limit"),
                calibration=m.get("calibration") or {},
                incomplete=m.get("incomplete") or {},
            )
        except FileNotFoundError as e:
            raise DataError(f"{path} is missing: run `fineproofs build` into {run_dir} first") from e
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise DataError(f"{path} is damaged ({e}); re-run the build to rewrite it") from e


def write_card(
    out_dir: Path, profile: Profile, facts: CardFacts | None = None, repo_id: str = "", spec: CardSpec | None = None
) -> Path:
    """Render, validate and write the card of the build in ``out_dir`` (facts from its
    ``build.json`` unless given; ``spec``: the split's card, by default the one of the
    split ``build.json`` names), with its plots, ``card_data.json`` and ``profile.yaml``."""
    out_dir = Path(out_dir)
    facts = facts or CardFacts.from_run(out_dir)
    spec = card_spec(spec or facts.split)
    split = spec.split
    features = spec.features(facts.rename)
    config_names = list(spec.configs)
    dist = distributions(out_dir)
    rows = {c: dist["rows"].get(c, facts.rows.get(c, 0)) for c in config_names}
    configs = [{"name": c, "path": f"data/{c}/train-*.parquet", "rows": rows[c]} for c in config_names]
    metadata = _metadata(out_dir, spec, profile, configs, features, facts.source_licences)
    card_data = _card_data(spec, profile, rows, facts, metadata["pretty_name"])
    ctx = _context(out_dir, profile, facts, card_data, dist, metadata, configs, features)
    ctx["repo_id"] = repo_id or REPO_PLACEHOLDER
    text = render_card(split, ctx)
    validate_card(text, expected_features=dict.fromkeys(config_names, features), root=out_dir)
    rundir.write_text(out_dir / "profile.yaml", ctx["profile_yaml"])
    rundir.write_text(out_dir / CARD_DATA, json.dumps(card_data, indent=1, ensure_ascii=False))
    path = out_dir / rundir.CARD
    rundir.write_text(path, text)
    return path


def _metadata(
    out_dir: Path, spec: CardSpec, profile: Profile, configs: list[dict], features, source_licences: dict[str, str]
) -> dict:
    """The card's YAML header."""
    names = [c["name"] for c in configs]
    shard_bytes = {c: sum(f.stat().st_size for f in (out_dir / "data" / c).glob("*.parquet")) for c in names}
    arrow_bytes = {c: _arrow_bytes(out_dir / "data" / c) for c in names}
    license_id, _ = hub_license(source_licences)
    return {
        "license": license_id,
        **({"license_name": "mixed-source-licences"} if license_id == "other" else {}),
        "language": ["en"],
        "pretty_name": f"FineProofs-{spec.split.upper()} ({profile.name} build)",
        "task_categories": ["text-generation"],
        "tags": ["math", "olympiad", "proofs", "fineproofs", "synthetic", *spec.tags],
        "size_categories": [_size_category(max((c["rows"] for c in configs), default=0))],
        "configs": [
            {
                "config_name": c["name"],
                "data_files": [{"split": "train", "path": c["path"]}],
                **({"default": True} if c["name"] == "default" else {}),
            }
            for c in configs
        ],
        "dataset_info": [
            {
                "config_name": c["name"],
                "features": features._to_yaml_list(),
                "splits": [{"name": "train", "num_bytes": arrow_bytes[c["name"]], "num_examples": c["rows"]}],
                "download_size": shard_bytes[c["name"]],
                "dataset_size": arrow_bytes[c["name"]],
            }
            for c in configs
        ],
    }


def _roles(split: str | CardSpec, profile: Profile) -> dict[str, dict]:
    sampling_counts = {"teacher": profile.teacher_samples, "student": profile.student_samples}
    return {
        name: {
            "model": getattr(profile, name).engine.display_name,
            "revision": getattr(profile, name).engine.revision,
            "engine": getattr(profile, name).engine.kind,
            **getattr(profile, name).sampling.model_dump(),
            "samples": sampling_counts.get(name, profile.grading.judges if name in ("judge", "grader") else 1),
        }
        for name in ROLES
        if name in card_spec(split).roles
    }


def used_prompts(split: str | CardSpec, profile: Profile) -> dict[str, str]:
    """The prompts this split's stages use under ``profile`` (``profile.prompts`` overrides
    and per-stage prompt files applied), by name -> version; prompts the build does not
    use are not listed."""
    files = profile.prompts

    def pick(name: str) -> str:
        return prompts.pick(name, files).version

    out: dict[str, str] = {}
    if profile.problem_filter.enabled:
        out["problem_filter"] = prompts.load("problem_filter", profile.problem_filter.prompt_file or None).version
    out["rubric"] = pick("rubric")
    if profile.rubrics.structured:
        out["rubric_json"] = pick("rubric_json")
        out["rubric_json_retry"] = pick("rubric_json_retry")
    else:
        out["rubric_retry"] = pick("rubric_retry")
    out["rollout"] = pick("rollout")
    out["grade"] = pick("grade")
    out.update(card_spec(split).prompts(profile, pick))
    if profile.decontamination.verify_with:
        out["same_problem"] = prompts.load("same_problem").version
    return out


def score_reading(profile: Profile) -> str:
    """How the build read a judge's score, in the card's words (what the code did)."""
    g = profile.grading
    if g.structured:
        return (
            'the score is read from the judge\'s JSON answer `{"score": N, "assessment": ...}`, written under a '
            "JSON schema (a grammar on in-process engines, `response_format` on servers); an answer that is not "
            "JSON (a server that refused the schema) is read from `<score>N</score>`"
        )
    if g.score_parse == "first":
        return "the score is the first `<score>N</score>` of the judge's final answer (QED-Nano's reading)"
    return "the score is parsed strictly from the judge's final answer: exactly one `<score>N</score>`"


def install_line() -> str:
    """The command that installs the fineproofs this build ran: the repository at its
    commit when the package runs from a git checkout (with a remote: ``pip install
    git+URL@COMMIT``), else the installed version's wheel, named as a local file (no
    package index serves fineproofs)."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    version = importlib.metadata.version("fineproofs")

    def git(*args: str) -> str:
        try:
            r = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return ""
        return r.stdout.strip() if r.returncode == 0 else ""

    commit = git("rev-parse", "HEAD") if (root / ".git").exists() else ""
    if not commit:
        return f"pip install ./fineproofs-{version}-py3-none-any.whl  # the wheel this build ran (not on any index)"
    url = git("remote", "get-url", "origin")
    dirty = "  # the checkout had uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else ""
    if url and "://" in url and "@" not in url.split("://", 1)[1].split("/", 1)[0]:  # never a URL with credentials
        return f'pip install "fineproofs @ git+{url}@{commit}"{dirty}'
    return f"git clone <the fineproofs repository> fineproofs && git -C fineproofs checkout {commit} && pip install -e ./fineproofs{dirty}"


def _card_data(spec: CardSpec, profile: Profile, rows: dict[str, int], facts: CardFacts, pretty_name: str) -> dict:
    """``card_data.json``: what ``fineproofs stats`` reads back."""
    report = facts.decontam_report or {}
    flagged = report.get("flagged") or []
    decontam = {
        "benchmarks": report.get("benchmarks") or {},
        "methods": report.get("methods") or [],
        "by_method": dict(sorted(Counter(f.get("method", "unknown") for f in flagged).items())),
        # the detector measured on the project's probe set with this build's benchmarks indexed
        "probes": report.get("probes") or {},
    }
    return {
        "split": spec.split,
        "pretty_name": pretty_name,
        "profile": profile.name,
        "rows": rows,
        "counts": facts.counts,
        "dropped": facts.dropped,
        "decontaminated": facts.decontaminated,
        "decontamination": decontam,
        "roles": _roles(spec, profile),
        "prompt_versions": used_prompts(spec, profile),
        "thresholds": spec.thresholds(profile).model_dump(),
        "source_licences": [{"source": k, "licence": v} for k, v in sorted(facts.source_licences.items())],
    }


def _context(
    out_dir: Path,
    profile: Profile,
    facts: CardFacts,
    card_data: dict,
    dist: dict,
    metadata: dict,
    configs: list[dict],
    features,
) -> dict:
    """Everything the Jinja template reads."""
    _, license_note = hub_license(facts.source_licences)
    return {
        "metadata_yaml": yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True),
        "pretty_name": metadata["pretty_name"],
        "fineproofs_version": importlib.metadata.version("fineproofs"),
        "install": install_line(),
        "score_reading": score_reading(profile),
        "library_versions": _versions(),
        "built_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d"),
        "profile": profile,
        "profile_yaml": public_yaml(profile),
        "demo": profile.sources.paths == ["demo"],
        "repo_id": REPO_PLACEHOLDER,
        "configs": configs,
        "fields": [
            {"name": n, "type": _type_name(f), "description": FIELD_DOCS.get(n, _column_doc(n))}
            for n, f in features.items()
        ],
        "sources": profile.sources.paths,
        "models": {n: getattr(profile, n).engine.display_name for n in ROLES},
        "prompt_versions": card_data["prompt_versions"],
        "decontaminated": facts.decontaminated,
        "decontam": card_data["decontamination"],
        "rubric_hash": facts.rubric_hash,
        "split": facts.split,
        "limit": facts.limit,
        "benchmark_args": facts.benchmark_args,
        "k": profile.student_samples,
        "n": profile.teacher_samples,
        "sft": profile.splits.sft,
        "rl": profile.splits.rl,
        "reward_column": next((n for n in features if "-reward@" in n), ""),
        "tables": card_tables(out_dir, card_data, dist),
        "calibration": facts.calibration,
        "incomplete": facts.incomplete,
        "plots": write_plots(dist, out_dir),
        "license_note": license_note,
        "fidelity": differences(profile),
        "column_naming_note": (
            "the published FineProofs names are kept whatever models were used; the models are listed under Provenance"
            if not facts.rename
            else "named after the models used: `<grader>-grade`, `<student>-reward@<k>`"
        ),
    }


def _column_doc(name: str) -> str:
    if name.endswith("-grade"):
        return "grade 0-7 of this proof by the grader named in the column"
    if "-reward@" in name:
        return (
            "mean reward (grade/7) of the student named in the column over its validly graded rollouts "
            "(at most k; rollouts whose judge failed are left out): the problem's difficulty; "
            "null when no rollout could be graded or the problem has no valid rubric"
        )
    return ""
