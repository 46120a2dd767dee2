"""Tabular sources: Hub datasets (via ``datasets``, streamed) and local JSONL / CSV /
parquet files, mapped to problem fields through a column mapping.

``columns`` maps a problem field to a dataset column and overrides the defaults
(first present column of :data:`DEFAULT_COLUMNS` wins). Local JSONL is read line by
line so one undecodable or malformed line is quarantined, not fatal.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DEFAULT_COLUMNS: dict[str, tuple[str, ...]] = {
    "problem": ("problem", "statement", "question", "Problem", "prompt"),
    "solution": ("solution", "solutions", "proof", "Solution", "reference_solution"),
    "answer": ("answer", "short_answer", "Short Answer", "final_answer"),
    "question_type": ("question_type", "type"),
    "source": ("source",),
    "competition": ("competition", "contest", "Source"),
    "category": ("problem_type", "category", "Category", "subject"),
    "year": ("year",),
    "url": ("url", "link"),
    "licence": ("licence", "license"),
}


def resolve_columns(names: list[str], mapping: dict[str, str] | None = None) -> dict[str, str]:
    """Problem field → column name present in ``names``."""
    out = {}
    for fieldname, candidates in DEFAULT_COLUMNS.items():
        if mapping and fieldname in mapping:
            out[fieldname] = mapping[fieldname]
            continue
        for c in candidates:
            if c in names:
                out[fieldname] = c
                break
    return out


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and v != v:  # NaN from CSV
        return ""
    return str(v).strip()


def map_row(row: dict[str, Any], mapping: dict[str, str] | None = None) -> dict[str, Any]:
    """A dataset row → raw problem fields (``problem``, ``solutions`` list, ...)."""
    cols = resolve_columns(list(row), mapping)
    get = lambda f: row.get(cols[f]) if f in cols else None  # noqa: E731
    sol = get("solution")
    solutions = [_text(s) for s in sol] if isinstance(sol, (list, tuple)) else [_text(sol)]
    comp = _text(get("competition"))
    year = get("year")
    if not year and (m := re.search(r"\b(?:19|20)\d\d\b", comp)):
        year = int(m.group(0))
        comp = (comp[: m.start()] + comp[m.end() :]).strip(" ,")
    try:
        year = int(year) if year not in (None, "") else None
    except (TypeError, ValueError):
        year = None
    answer = _text(get("answer"))
    return {
        "problem": _text(get("problem")),
        "solutions": [s for s in solutions if s],
        "answer": "" if answer.lower() in ("proof", "none", "null", "n/a") else answer,
        "question_type": _text(get("question_type")),
        "source": _text(get("source")),
        "competition": comp,
        "year": year,
        "category": _text(get("category")),
        "url": _text(get("url")),
        "licence": _text(get("licence")),
    }


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict | None, str]]:
    """``(line_no, row or None, error)`` for each non-empty line."""
    with open(path, "rb") as f:
        for i, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                yield i, None, f"non_utf8: {e.reason} at byte {e.start}"
                continue
            except json.JSONDecodeError as e:
                yield i, None, f"malformed_json: {e.msg}"
                continue
            if not isinstance(row, dict):
                yield i, None, "malformed_json: not an object"
                continue
            yield i, row, ""


def iter_dataset(spec: str, split: str = "train", data_files: str | list[str] | None = None) -> Iterator[tuple[int, dict]]:
    """Stream rows with ``datasets``: a Hub id / local dataset dir (``spec``), or a
    packaged builder (``csv``/``parquet``/``json``) with ``data_files``."""
    import datasets

    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    kwargs = {"data_files": data_files} if data_files else {}
    ds = datasets.load_dataset(spec, split=split, streaming=True, **kwargs)
    yield from enumerate(ds, 1)


def iter_table_file(path: Path) -> Iterator[tuple[int, dict | None, str]]:
    """Rows of a local JSONL / CSV / parquet file."""
    if path.suffix in (".jsonl", ".json"):
        yield from iter_jsonl(path)
        return
    builder = {".csv": "csv", ".parquet": "parquet"}[path.suffix]
    for i, row in iter_dataset(builder, data_files=str(path)):
        yield i, row, ""
