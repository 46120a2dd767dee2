"""Tabular sources mapped to problem fields through a column mapping. Reading (CSV,
JSONL, parquet, Hub datasets, one bad row at a time) is :mod:`fineproofs.tables`.

``columns`` maps a problem field to a field expression (:mod:`fineproofs.fieldpath`: a
column, ``metadata.path``, ``tags[2]``, ``year(tags[1])``, ``segment(metadata.path, -2)``,
``a | b``) and overrides the defaults (first present column of :data:`DEFAULT_COLUMNS`
wins). A mapped expression that does not resolve on a row leaves its field empty,
except the statement: a row whose mapped ``problem`` resolves to nothing is quarantined
(``missing_field``). :func:`map_row` checks the type of every field it takes: a binary,
struct or list value where text is expected, a year that is not a plausible year, or a
boolean raise :class:`ParseError` (``bad_field``) so the row is quarantined with that
reason, never stringified.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import Any

from fineproofs import fieldpath
from fineproofs.pipelines.sources.errors import ParseError
from fineproofs.text import sanitize_field

YEARS = (1000, 2999)
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
    "candidates": ("candidates", "comments"),  # a forum's other posts (AI-MO/aops)
    "path": ("path",),  # where a forum post lives (AI-MO/aops: metadata.path)
}
assert tuple(DEFAULT_COLUMNS) == fieldpath.PROBLEM_FIELDS


@lru_cache(maxsize=1024)
def field_expr(text: str) -> fieldpath.Expr:
    """A mapping value parsed once (profiles are validated at load; this is the same parse)."""
    return fieldpath.parse(text)


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


def _kind(v: Any) -> str:
    if isinstance(v, (bytes, bytearray, memoryview)):
        return "binary"
    if isinstance(v, dict):
        return "a struct"
    if isinstance(v, (list, tuple, set)):
        return "a list"
    return type(v).__name__


def _text(v: Any, field: str, numbers: bool = True) -> str:
    """A text field's value as a stripped string; ``bad_field`` unless it is text (or,
    with ``numbers``, a finite number)."""
    if v is None:
        return ""
    if isinstance(v, str):
        return v.strip()
    if isinstance(v, float) and math.isnan(v):  # an empty CSV / pandas cell
        return ""
    if numbers and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return str(v)
    raise ParseError("bad_field", f"{field} is {_kind(v)}, expected text")


def _year(v: Any) -> int | None:
    if v is None or v == "" or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, str):
        try:
            v = float(v.strip())
        except ValueError:
            return None  # "unknown", "n/a": no year
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ParseError("bad_field", f"year is {_kind(v)}, expected a number")
    if isinstance(v, float) and (not math.isfinite(v) or v != int(v)):
        raise ParseError("bad_field", f"year {v!r} is not a whole number")
    if not YEARS[0] <= v <= YEARS[1]:
        raise ParseError("bad_field", f"year {float(v):.6g} out of range {YEARS[0]}-{YEARS[1]}")
    return int(v)


def _solutions(v: Any) -> list[str]:
    items = v if isinstance(v, (list, tuple)) else [v]
    return [s for s in (_text(x, "solution", numbers=False) for x in items) if s]


def _posts(v: Any) -> list[str]:
    """A forum's other posts: a list of texts (or one text); empty texts are left out."""
    if v is None:
        return []
    items = v if isinstance(v, (list, tuple)) else [v]
    return [s for s in (_text(x, "candidates", numbers=False) for x in items) if s]


def map_row(row: dict[str, Any], mapping: dict[str, str] | None = None) -> dict[str, Any]:
    """A dataset row → raw problem fields (``problem``, ``solutions`` list, ...);
    :class:`ParseError` (``bad_field``) when a field has the wrong type, ``missing_field``
    when the mapped statement is not in the row."""
    mapping = mapping or {}
    cols = resolve_columns(list(row))

    def get(f: str) -> Any:
        if f in mapping:
            return field_expr(mapping[f]).get(row)
        return row.get(cols[f]) if f in cols else None

    problem = get("problem")
    if problem is None and "problem" in mapping:
        raise ParseError("missing_field", f"problem: {mapping['problem']!r} finds nothing in this row")
    meta = {f: sanitize_field(_text(get(f), f)) for f in ("question_type", "source", "category", "url", "licence")}
    comp = sanitize_field(_text(get("competition"), "competition"))
    year = _year(get("year"))
    if year is None and (m := re.search(r"\b(?:19|20)\d\d\b", comp)):
        year = int(m.group(0))
        comp = (comp[: m.start()] + comp[m.end() :]).strip(" ,")
    answer = _text(get("answer"), "answer")
    return {
        "problem": _text(problem, "problem", numbers=False),
        "solutions": _solutions(get("solution")),
        "answer": "" if answer.lower() in ("proof", "none", "null", "n/a") else answer,
        "question_type": meta["question_type"],
        "source": meta["source"],
        "competition": comp,
        "year": year,
        "category": meta["category"],
        "url": meta["url"],
        "licence": meta["licence"],
        "candidates": _posts(get("candidates")),
        "path": sanitize_field(_text(get("path"), "path")),
    }
