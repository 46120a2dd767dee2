"""Training data: a ``fineproofs build`` run directory, parquet files, or a Hub dataset.

The build pipeline writes its splits in the Hub layout,
``<run_dir>/data/<config>/train-00000-of-00001.parquet``, with the exact features of
lm-provers/FineProofs-SFT (configs ``all`` and ``default``) and FineProofs-RL
(``default``). :func:`load_split` accepts, in order:

1. a run directory (has ``data/``): the config asked for, else ``all`` for SFT, else
   ``default``;
2. a parquet file or a directory of parquet files;
3. otherwise a Hub dataset id, read with :func:`datasets.load_dataset`.

The columns a stage needs are checked up front (SFT: ``messages``; RL/RC:
``problem`` and ``rubrics``) with an error naming what is missing.
"""

from __future__ import annotations

import logging
from pathlib import Path

import datasets

from fineproofs import prompts
from fineproofs.config import ConfigError

log = logging.getLogger(__name__)

REQUIRED = {"sft": ("messages",), "rl": ("problem", "rubrics"), "rc": ("problem", "rubrics")}


def _parquet_files(path: Path) -> list[str]:
    if path.is_file():
        return [str(path)]
    return sorted(str(p) for p in path.glob("*.parquet"))


def resolve_source(source: str, stage: str, config: str | None = None) -> tuple[str, list[str] | None]:
    """(description, parquet files) for a local source, or (hub id, None)."""
    path = Path(source)
    if path.exists():
        if (path / "data").is_dir():
            candidates = [config] if config else (["all", "default"] if stage == "sft" else ["default"])
            for c in candidates:
                files = _parquet_files(path / "data" / c)
                if files:
                    return f"{path}/data/{c}", files
            raise ConfigError(
                f"{path} is a run directory but has no data/{'|'.join(candidates)}/*.parquet: "
                f"run `fineproofs build --split {'sft' if stage == 'sft' else 'rl'} -o {path}` first"
            )
        files = _parquet_files(path)
        if not files:
            raise ConfigError(f"{path} has no .parquet files")
        return str(path), files
    if "/" in source and not source.startswith((".", "/")):
        return source, None
    raise ConfigError(
        f"training data {source!r} not found: pass a `fineproofs build` run directory, a parquet file, "
        f"or a Hub dataset id such as lm-provers/FineProofs-{'SFT' if stage == 'sft' else 'RL'}"
    )


def load_split(spec, stage: str, source: str | None = None) -> datasets.Dataset:
    """The rows of a stage's training data (``spec`` is a :class:`~fineproofs.train.config.DataSpec`)."""
    src = source or spec.source
    if not src:
        raise ConfigError("no training data given: pass --data RUN_DIR_OR_HUB_ID (or set data.source)")
    where, files = resolve_source(src, stage, spec.config)
    if files is not None:
        import pyarrow.parquet as pq

        if sum(pq.ParquetFile(f).metadata.num_rows for f in ([files] if isinstance(files, str) else files)) == 0:
            raise ConfigError(
                f"{src}: the {spec.config!r} split has no rows (the build kept nothing: see its "
                "quarantine/ and README.md for the drop reasons)"
            )
        ds = datasets.Dataset.from_parquet(files)
    else:
        try:
            ds = datasets.load_dataset(where, spec.config, split=spec.split, revision=spec.revision)
        except Exception as e:  # offline, missing repo, wrong config: say what was asked for
            raise ConfigError(f"could not load the Hub dataset {where!r} (config {spec.config!r}): {e}") from e
    missing = [c for c in REQUIRED[stage] if c not in ds.column_names]
    if missing:
        raise ConfigError(
            f"{where} lacks the column(s) {missing} the {stage} stage needs (it has {ds.column_names}); "
            f"expected FineProofs-{'SFT' if stage == 'sft' else 'RL'} rows"
        )
    if spec.limit:
        ds = ds.select(range(min(spec.limit, len(ds))))
    log.info("%s data: %d rows from %s", stage, len(ds), where)
    return ds


def sft_dataset(ds: datasets.Dataset) -> datasets.Dataset:
    """Only ``messages``, rows with a non-empty assistant turn (TRL's conversational format)."""

    def ok(row) -> bool:
        msgs = row["messages"] or []
        return any(m["role"] == "assistant" and (m["content"] or "").strip() for m in msgs)

    ds = ds.filter(ok)
    if len(ds) == 0:
        raise ConfigError("no SFT row has a non-empty assistant message")
    return ds.select_columns(["messages"])


def drop_overlong(ds: datasets.Dataset, tokenizer, max_length: int | None) -> tuple[datasets.Dataset, int]:
    """Rows whose rendered chat is longer than ``max_length`` tokens, removed before
    packing (packing would cut them: the proof and the end token lost). Returns the
    kept rows and how many were dropped."""
    if not max_length:
        return ds, 0

    def fits(row) -> bool:
        ids = tokenizer.apply_chat_template(row["messages"], tokenize=True, return_dict=True)["input_ids"]
        return len(ids) <= max_length

    kept = ds.filter(fits)
    dropped = len(ds) - len(kept)
    if dropped:
        log.warning(
            "%d of %d SFT samples are longer than max_length=%d tokens: left out (never truncated)",
            dropped,
            len(ds),
            max_length,
        )
    if len(kept) == 0:
        raise ConfigError(f"every SFT sample is longer than max_length={max_length} tokens: raise trainer.max_length")
    return kept, dropped


def rollout_messages(problem: str) -> list[dict[str, str]]:
    """The RL prompt: fineproofs' ``rollout`` template ("Generate a rigorous proof ...")."""
    return prompts.load("rollout").render(problem=problem)


def rl_dataset(ds: datasets.Dataset) -> datasets.Dataset:
    """Conversational ``prompt`` + the columns the reward needs (``problem``, ``rubrics``)."""
    ds = ds.filter(lambda r: bool((r["problem"] or "").strip()))
    if len(ds) == 0:
        raise ConfigError("no RL row has a problem statement")
    ds = ds.map(lambda r: {"prompt": rollout_messages(r["problem"])})
    return ds.select_columns(["prompt", "problem", "rubrics"])
