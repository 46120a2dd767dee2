"""The one table reader: CSV, JSONL and parquet files, and Hub datasets, as a stream of
rows with row-level isolation.

:func:`iter_table` yields :class:`TableRow` ``(line, row, error)``: ``row`` is a dict and
``error`` empty, or ``row`` is None and ``error`` says why that one row is unusable
(``reason: detail``). One bad row never costs another row:

- CSV: each record is parsed on its own; a record with extra or missing fields, a
  quote that is never closed (or closes mid-field: the merge of several rows), or
  bytes that are not UTF-8 is reported at the line where it starts, and reading
  resumes on the next physical line. A record may span at most
  :data:`MAX_RECORD_LINES` lines. A BOM on the header is dropped. Values are strings
  (no type guessing).
- JSONL: one object per line; invalid UTF-8, invalid JSON, a non-object, nesting
  deeper than :data:`MAX_DEPTH`, numbers too long to convert (over 20 digits) or wider
  than 64 bits are per-line errors.
- parquet: read batch by batch; a batch that fails to convert is retried row by row;
  an unreadable row group costs its rows only. ``line`` is the row number (from 1).
- Hub datasets (``hf:<id or dir>[@split]``): streamed with ``datasets``; a stream that
  breaks yields one error and stops.

Every row yielded is safe for any JSON writer: strings without lone surrogates,
nesting within :data:`MAX_DEPTH`, integers within 64 bits. Whole-file problems (missing,
not a regular file — a FIFO would block forever —, unreadable, unsupported format, a
broken CSV header or parquet footer) raise :class:`~fineproofs.errors.DataError`.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import re
import stat
import sys
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from fineproofs.errors import DataError
from fineproofs.text import has_surrogates

log = logging.getLogger(__name__)

MAX_DEPTH = 32
MAX_RECORD_LINES = 5000  # a CSV record (one quoted field) spanning more lines is malformed
INT_RANGE = (-(2**63), 2**64 - 1)
FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


class TableRow(NamedTuple):
    line: int
    row: dict[str, Any] | None
    error: str = ""


def table_format(path: str | Path) -> str | None:
    """``csv``/``tsv``/``jsonl``/``parquet`` from the suffix, ``hub`` for ``hf:...``, else None."""
    if str(path).startswith("hf:"):
        return "hub"
    return FORMATS.get(Path(path).suffix.lower())


def check_regular_file(path: str | Path, what: str = "file") -> Path:
    """``path`` as a Path if it is an existing regular file, else :class:`DataError`."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise DataError(f"{what} {p} does not exist") from None
    except OSError as e:
        raise DataError(f"{what} {p} cannot be read: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file (FIFO, device or socket)"
        raise DataError(f"{what} {p} is {kind}")
    if not os.access(p, os.R_OK):
        raise DataError(f"{what} {p} cannot be read: permission denied")
    return p


def iter_table(
    path: str | Path,
    *,
    split: str = "train",
    what: str = "file",
    tolerant: bool = False,
    config: str = "",
    data_files: list[str] | None = None,
) -> Iterator[TableRow]:
    """Rows of a CSV / TSV / JSONL / parquet file or of a Hub dataset ``hf:<id>[@split]``
    (``tolerant``: see :func:`iter_csv`; ``config`` / ``data_files``: the Hub subset and
    file patterns)."""
    fmt = table_format(path)
    if fmt == "hub":
        spec, _, sp = str(path)[3:].partition("@")
        yield from iter_hub(spec, sp or split, data_files or None, config)
        return
    if fmt is None:
        raise DataError(f"{what} {path}: unsupported format (expected .csv, .tsv, .jsonl, .json or .parquet)")
    p = check_regular_file(path, what)
    reader = {"csv": iter_csv, "tsv": iter_csv, "jsonl": iter_jsonl, "parquet": iter_parquet}[fmt]
    kw = {"delimiter": "\t" if fmt == "tsv" else ",", "tolerant": tolerant} if fmt in ("csv", "tsv") else {}
    try:
        yield from reader(p, **kw)
    except OSError as e:
        raise DataError(f"{what} {p} cannot be read: {e.strerror or e}") from None


# --- value checks -----------------------------------------------------------------------


def value_problem(value: Any, depth: int = 0) -> str:
    """Why ``value`` cannot travel through a JSON writer ('' when it can)."""
    if isinstance(value, str):
        return "lone_surrogate: text holds an unpaired UTF-16 surrogate" if has_surrogates(value) else ""
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return ""
    if isinstance(value, int):
        return (
            ""
            if INT_RANGE[0] <= value <= INT_RANGE[1]
            else f"number_out_of_range: {len(str(abs(value)))}-digit integer"
        )
    if depth >= MAX_DEPTH and isinstance(value, (dict, list, tuple)):
        return f"too_deep: nesting deeper than {MAX_DEPTH}"
    if isinstance(value, dict):
        items = list(value.keys()) + list(value.values())
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        return ""
    for v in items:
        if why := value_problem(v, depth + 1):
            return why
    return ""


def _checked(line: int, row: Any) -> TableRow:
    if not isinstance(row, dict):
        return TableRow(line, None, f"malformed_json: not an object ({type(row).__name__})")
    if why := value_problem(row):
        return TableRow(line, None, why)
    return TableRow(line, row)


# --- JSONL ------------------------------------------------------------------------------


def _int(s: str) -> int:
    if len(s.lstrip("-")) > 20:
        raise ValueError(f"number_out_of_range: {len(s.lstrip('-'))}-digit integer")
    return int(s)


def _float(s: str) -> float:
    if len(s) > 400:
        raise ValueError(f"number_out_of_range: {len(s)}-character number")
    return float(s)


def parse_json_line(raw: bytes | str, line: int = 0) -> TableRow:
    """One JSONL line → a :class:`TableRow` (never raises)."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as e:
        return TableRow(line, None, f"non_utf8: {e.reason} at byte {e.start} (0x{raw[e.start]:02x})")
    if line == 1:
        text = text.lstrip("\ufeff")
    try:
        row = json.loads(text, parse_int=_int, parse_float=_float)
    except json.JSONDecodeError as e:
        return TableRow(line, None, f"malformed_json: {e.msg} at column {e.colno}")
    except RecursionError:
        return TableRow(line, None, "too_deep: nesting beyond the JSON parser's limit")
    except (ValueError, OverflowError) as e:
        msg = str(e)
        return TableRow(line, None, msg if msg.startswith("number_out_of_range") else f"malformed_json: {msg}"[:200])
    return _checked(line, row)


def iter_jsonl(path: Path) -> Iterator[TableRow]:
    with open(path, "rb") as f:
        for i, raw in enumerate(f, 1):
            if raw.strip():
                yield parse_json_line(raw, i)


# --- CSV --------------------------------------------------------------------------------


class _Lines:
    """Physical lines of a binary file, decoded one by one, with push-back (so a broken
    multi-line record can be re-read from its second line)."""

    def __init__(self, f):
        self.f = f
        self.lineno = 0
        self.pending: deque[tuple[int, str, str]] = deque()
        self.taken: list[tuple[int, str, str]] = []  # lines of the record being read

    def __iter__(self):
        return self

    def __next__(self) -> str:
        if len(self.taken) >= MAX_RECORD_LINES:
            raise StopIteration  # the csv reader sees the end: the record is reported, reading resumes
        if self.pending:
            item = self.pending.popleft()
        else:
            raw = self.f.readline()
            if not raw:
                raise StopIteration
            self.lineno += 1
            try:
                item = (self.lineno, raw.decode("utf-8"), "")
            except UnicodeDecodeError as e:
                why = f"non_utf8: {e.reason} at byte {e.start} (0x{raw[e.start]:02x}; Latin-1 or another encoding?)"
                item = (self.lineno, raw.decode("utf-8", errors="replace"), why)
        self.taken.append(item)
        return item[1]

    def start_record(self) -> None:
        self.taken = []

    def push_back_after_first(self) -> None:
        self.pending.extendleft(reversed(self.taken[1:]))


def _csv_header(lines: _Lines, path: Path, delimiter: str) -> list[str]:
    lines.start_record()
    try:
        header = next(csv.reader(lines, delimiter=delimiter, strict=True), None)
    except csv.Error as e:
        raise DataError(f"{path}:1: CSV header cannot be parsed ({e})") from None
    if header is None:
        return []
    if errors := [t[2] for t in lines.taken if t[2]]:
        raise DataError(f"{path}:1: CSV header is not UTF-8 ({errors[0]})")
    names = [h.replace("\ufeff", "").strip() for h in header]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise DataError(f"{path}:1: CSV header repeats column(s) {dup}")
    return names


def iter_csv(path: Path, delimiter: str = ",", tolerant: bool = False) -> Iterator[TableRow]:
    """Rows of a CSV file; see the module docstring. With ``tolerant``, a record that the
    strict parse rejects but a lenient parse (Python's default, pandas') reads as one
    record that swallows no other row comes back with both ``row`` (fields by position)
    and ``error`` (``recovered: ...``), for callers that accept it with a warning."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with open(path, "rb") as f:
        lines = _Lines(f)
        names = _csv_header(lines, path, delimiter)
        if not names:
            return
        while True:
            lines.start_record()
            rec, err = _next_record(lines, delimiter, strict=True)
            if rec is None:
                return
            if rec == [] and not err:
                continue  # a blank line
            row = _csv_row(lines, names, rec, err)
            if tolerant and row.row is None and "quote" in row.error:
                row = _lenient(lines, names, delimiter, row)
            yield row


def _next_record(lines: _Lines, delimiter: str, strict: bool) -> tuple[list[str] | None, str]:
    try:
        return next(csv.reader(lines, delimiter=delimiter, strict=strict), None), ""
    except csv.Error as e:
        return [], str(e)


def _csv_row(lines: _Lines, names: list[str], rec: list[str], err: str) -> TableRow:
    first = lines.taken[0][0]
    span = len(lines.taken)
    if err or (span > 1 and len(rec) != len(names)):
        if span > 1:
            lines.push_back_after_first()
        return TableRow(
            first,
            None,
            f"malformed_csv: unterminated or misplaced quote ({err or 'merges lines'}); "
            f"record starting on line {first} skipped",
        )
    if bad := next((t[2] for t in lines.taken if t[2]), ""):
        return TableRow(first, None, bad)
    if len(rec) != len(names):
        what = "extra" if len(rec) > len(names) else "missing"
        return TableRow(first, None, f"malformed_csv: {len(rec)} fields, header has {len(names)} ({what} fields)")
    return TableRow(first, dict(zip(names, rec, strict=True)))


def _lenient(lines: _Lines, names: list[str], delimiter: str, failed: TableRow) -> TableRow:
    """Re-read the record that starts on ``failed.line`` leniently; keep it unless it
    swallows a line that is a whole row by itself (an unterminated quote merging rows),
    runs to the end of the file inside a quote, or holds undecodable bytes."""
    first = (failed.line, *_taken_first(lines))
    lines.pending = deque(x for x in lines.pending if x[0] != first[0])
    lines.pending.appendleft(first)
    lines.start_record()
    rec, _ = _next_record(lines, delimiter, strict=False)
    taken = list(lines.taken)
    swallowed = next((t[0] for t in taken[1:] if _whole_row(t[1], delimiter, len(names))), None)
    at_eof = lines.f.peek(1) == b"" if hasattr(lines.f, "peek") else False
    if not rec or swallowed or any(t[2] for t in taken) or (at_eof and not lines.pending and len(rec) != len(names)):
        if len(taken) > 1:
            lines.push_back_after_first()
        where = f"; line {swallowed} would be merged into it" if swallowed else ""
        return TableRow(failed.line, None, failed.error + where)
    row = {n: (rec[i] if i < len(rec) else None) for i, n in enumerate(names)}
    why = failed.error.removeprefix("malformed_csv: ").split(";")[0]
    return TableRow(
        failed.line,
        row,
        f"recovered: {why}; read leniently as one record of {len(rec)} fields (header has {len(names)})",
    )


def _taken_first(lines: _Lines) -> tuple[str, str]:
    _, text, err = lines.taken[0]
    return text, err


def _whole_row(line: str, delimiter: str, width: int) -> bool:
    if width < 2 or line.count(delimiter) < width - 1:
        return False
    rec, err = _next_record(iter([line]), delimiter, strict=True)
    return not err and rec is not None and len(rec) == width


# --- parquet ----------------------------------------------------------------------------


def iter_parquet(path: Path, batch_size: int = 1024) -> Iterator[TableRow]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError for anything not parquet
        raise DataError(f"{path}: not a readable parquet file ({type(e).__name__}: {e})"[:300]) from None
    base = 0
    for g in range(pf.num_row_groups):
        n = pf.metadata.row_group(g).num_rows
        try:
            table = pf.read_row_group(g)
        except Exception as e:
            for i in range(n):
                yield TableRow(base + i + 1, None, f"unreadable_row_group: group {g}: {type(e).__name__}: {e}"[:300])
            base += n
            continue
        for batch in table.to_batches(max_chunksize=batch_size):
            yield from _batch_rows(batch, base)
            base += batch.num_rows


def _batch_rows(batch, base: int) -> Iterator[TableRow]:
    try:
        rows = batch.to_pylist()
    except Exception:
        rows = None
    for i in range(batch.num_rows):
        if rows is not None:
            row = rows[i]
        else:
            try:
                row = batch.slice(i, 1).to_pylist()[0]
            except Exception as e:
                yield TableRow(base + i + 1, None, f"unreadable_row: {type(e).__name__}: {e}"[:300])
                continue
        yield _checked(base + i + 1, _plain(row))


def _plain(row: dict) -> dict:
    """NaN/inf floats stay (callers treat NaN as missing); everything else as is."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}


# --- Hub --------------------------------------------------------------------------------


def iter_hub(
    spec: str, split: str = "train", data_files: str | list[str] | None = None, config: str = ""
) -> Iterator[TableRow]:
    """Rows of a Hub dataset id or local dataset directory (subset ``config``), streamed
    with ``datasets``."""
    import datasets

    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    kwargs = {"data_files": data_files} if data_files else {}
    if config:
        kwargs["name"] = config
    i = 0
    try:
        ds = datasets.load_dataset(spec, split=split, streaming=True, **kwargs)
        for i, row in enumerate(ds, 1):
            yield _checked(i, row)
    except DataError:
        raise
    except Exception as e:  # datasets raises anything from FileNotFoundError to pyarrow errors
        if i == 0:
            where = (f"subset {config!r}, " if config else "") + f"split {split!r}"
            raise DataError(f"dataset {spec!r} ({where}) cannot be read: {type(e).__name__}: {e}"[:400]) from None
        yield TableRow(i + 1, None, f"unreadable: stream broke after row {i}: {type(e).__name__}: {e}"[:300])


# --- benchmarks -------------------------------------------------------------------------


def benchmark_source(source: str, base: Path | None = None) -> str:
    """The one spelling of a benchmark: a local file (as given, else under ``base``) or a
    Hub dataset ``hf:<id>[@split]``. A bare ``owner/name`` that is no local file is read as
    ``hf:owner/name`` (how ``train/configs`` wrote it before)."""
    if source.startswith("hf:"):
        return source
    path = Path(source)
    if not path.exists() and not path.is_absolute() and base is not None and (base / path).exists():
        return str(base / path)
    if path.exists() or table_format(source) is not None or source.startswith((".", "/", "~")):
        return source
    if re.fullmatch(r"[\w.-]+/[\w.-]+", source):
        return f"hf:{source}"
    return source


def benchmark_rows(source: str, *, split: str = "train", base: Path | None = None) -> list[tuple[int, dict]]:
    """Every row of a benchmark (:func:`benchmark_source`) as ``(line, row)``, or
    :class:`DataError` at the first one that cannot be read. A CSV record with a misplaced
    quote that a lenient parse reads as one record (no other row swallowed; the official
    IMO-AnswerBench CSV has one) is kept with a warning. The one reader behind the
    decontamination benchmarks and ``fineproofs eval``."""
    spec = benchmark_source(source, base)
    out = []
    for line, row, err in iter_table(spec, split=split, what="benchmark file", tolerant=True):
        if err and row is None:
            raise DataError(f"benchmark {source}:{line}: {err}")
        if err:  # a quote slip read the way pandas reads it, within its own record: kept, said out loud
            log.warning("benchmark %s:%d: %s", source, line, err)
        out.append((line, row))
    return out


__all__ = [
    "MAX_DEPTH",
    "TableRow",
    "benchmark_rows",
    "benchmark_source",
    "check_regular_file",
    "iter_csv",
    "iter_hub",
    "iter_jsonl",
    "iter_parquet",
    "iter_table",
    "parse_json_line",
    "table_format",
    "value_problem",
]
