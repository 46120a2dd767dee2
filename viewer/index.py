"""The viewer's index of a run directory, built once at startup.

Every JSONL file of the run (problems, stages, quarantine) is scanned once; the
index keeps, per record, the fields that pages filter and sort on plus the byte
offset and length of its line. Pages then read only the lines they show
(``os.pread`` on file descriptors opened at startup), so a problem page costs a
few index look-ups and a few reads, whatever the size of the run. The index is an
SQLite database in a temporary directory outside the run directory, removed on
:meth:`RunIndex.close`; the run directory itself is opened read-only (the response
store through a ``mode=ro`` URI).

Judge replies: grade records may carry the reply (``reply``/``replies``) or the
store keys (``reply_keys``); otherwise they are found in ``store.sqlite`` by the
proof they graded: every ``grade_*`` request in the store holds the proof fenced
between ``<<<PROOF>>>`` markers, and its fingerprint (whitespace and defanged
score tags normalised) is matched to the sample's proof.

Records are read tolerantly: missing keys are fine, unknown keys are kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fineproofs import rundir
from fineproofs.errors import DataError
from fineproofs.records import problem_id, sample_key

SCHEMA = """
CREATE TABLE files (no INTEGER PRIMARY KEY, path TEXT);
CREATE TABLE problems (
    n INTEGER PRIMARY KEY, pid TEXT UNIQUE, statement TEXT, source TEXT, competition TEXT, year TEXT,
    category TEXT, status TEXT, stage TEXT, reason TEXT, reward REAL, n_samples INTEGER DEFAULT 0,
    n_graded INTEGER DEFAULT 0, file INTEGER, off INTEGER, len INTEGER);
CREATE TABLE samples (
    key TEXT PRIMARY KEY, pid TEXT, role TEXT, idx INTEGER, score INTEGER, gstatus TEXT, fp TEXT,
    file INTEGER, off INTEGER, len INTEGER, gfile INTEGER, goff INTEGER, glen INTEGER);
CREATE INDEX samples_pid ON samples(pid, score);
CREATE TABLE rubrics (pid TEXT PRIMARY KEY, file INTEGER, off INTEGER, len INTEGER);
CREATE TABLE quarantine (n INTEGER PRIMARY KEY, stage TEXT, reason TEXT, pid TEXT, item TEXT,
    file INTEGER, off INTEGER, len INTEGER);
CREATE INDEX quarantine_pid ON quarantine(pid);
CREATE INDEX quarantine_stage ON quarantine(stage);
CREATE TABLE replies (fp TEXT, key TEXT, stage TEXT, sample_index INTEGER, phead TEXT);
CREATE INDEX replies_fp ON replies(fp);
CREATE TABLE human (key TEXT PRIMARY KEY, pid TEXT, grade INTEGER);
"""

_WS = re.compile(r"\s+")
_FENCE = re.compile(r"<<<\s*(?:END\s+)?PROOF\s*>>>|\[proof marker removed\]", re.I)


def proof_fingerprint(proof: str) -> str:
    """Fingerprint of a proof that survives the judge-side defanging of score tags and fences."""
    t = _FENCE.sub(" ", proof or "").replace("‹", "<").replace("›", ">")
    return hashlib.blake2b(_WS.sub(" ", t).strip().encode(), digest_size=10).hexdigest()


def fenced_proof(content: str) -> str | None:
    """The proof fenced in a grading prompt, or None."""
    end = content.rfind("<<<END PROOF>>>")
    start = content.rfind("<<<PROOF>>>", 0, end if end >= 0 else None)
    if start < 0 or end < start:
        return None
    return content[start + len("<<<PROOF>>>") : end]


def _problem_head(content: str) -> str:
    i = content.find("Problem:")
    return _WS.sub(" ", content[i + 8 : i + 400]).strip() if i >= 0 else ""


class RunIndex:
    """Index of one run directory; thread-safe reads, one connection per thread."""

    def __init__(self, run_dir: str | Path, workdir: str | Path | None = None):
        self.run_dir = Path(run_dir).resolve()
        if workdir is not None:
            Path(workdir).mkdir(parents=True, exist_ok=True)
        self._tmp = Path(tempfile.mkdtemp(prefix="fineproofs-view-", dir=workdir))
        self.path = self._tmp / "index.sqlite"
        self._local = threading.local()
        self._fds: dict[int, int] = {}
        self._write_lock = threading.Lock()
        self.manifest: dict[str, Any] = {}
        self.split_kind = "unknown"
        self.warnings: list[str] = []
        self._build()

    # ------------------------------------------------------------------ plumbing
    def db(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(str(self.path), check_same_thread=False)
            con.row_factory = sqlite3.Row
            self._local.con = con
        return con

    def _add_file(self, con: sqlite3.Connection, path: Path) -> int:
        no = len(self._fds) + 1
        self._fds[no] = os.open(path, os.O_RDONLY)
        con.execute("INSERT INTO files VALUES (?, ?)", (no, str(path.relative_to(self.run_dir))))
        return no

    def read(self, file: int | None, off: int | None, length: int | None) -> dict[str, Any]:
        """The record stored at a location (``{}`` if none)."""
        if not file:
            return {}
        try:
            return json.loads(os.pread(self._fds[file], length, off))
        except (OSError, ValueError, KeyError):
            return {}

    def close(self) -> None:
        for fd in self._fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds.clear()
        shutil.rmtree(self._tmp, ignore_errors=True)

    # ------------------------------------------------------------------ build
    def _lines(self, path: Path) -> Iterator[tuple[int, int, dict[str, Any]]]:
        """(offset, length, record) for every JSON object line of ``path``; damaged lines
        are skipped, and their count is one of the overview's warnings."""
        records = rundir.read_records(path, strict=False, offsets=True)
        yield from records
        if records.skipped:
            self.warnings.append(f"{path.relative_to(self.run_dir)}: {records.skipped} damaged line(s) skipped")

    def _build(self) -> None:
        con = sqlite3.connect(str(self.path))
        con.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;" + SCHEMA)
        self.manifest = _read_json(self.run_dir / rundir.MANIFEST)  # {} when missing or damaged
        kept, self.split_kind = _split_statements(self.run_dir)
        self._index_problems(con, kept)
        self._index_quarantine(con)
        self._index_rubrics(con)
        self._index_samples(con)
        self._index_replies(con)
        self._aggregate(con, kept is not None)
        con.commit()
        con.close()

    def _index_problems(self, con: sqlite3.Connection, kept: set[str] | None) -> None:
        path = self.run_dir / rundir.PROBLEMS
        if not path.exists():
            self.warnings.append(f"{rundir.PROBLEMS} is missing")
            return
        no = self._add_file(con, path)
        rows = []
        for off, n, d in self._lines(path):
            st = str(d.get("statement") or "")
            pid = str(d.get("id") or problem_id(st))
            status = "unknown" if kept is None else ("kept" if st in kept else "dropped")
            rows.append((pid, st, *_meta(d), status, no, off, n))
        con.executemany(
            "INSERT OR IGNORE INTO problems (pid, statement, source, competition, year, category, status, file, off, len)"
            " VALUES (?,?,?,?,?,?,?,?,?,?)",
            rows,
        )

    def _index_quarantine(self, con: sqlite3.Connection) -> None:
        qdir = self.run_dir / rundir.QUARANTINE
        files = sorted(p for p in qdir.rglob("*.jsonl")) if qdir.is_dir() else []
        for path in files:
            no = self._add_file(con, path)
            default_stage = path.relative_to(qdir).parts[0].removesuffix(".jsonl")
            rows, problems = [], []
            for off, n, d in self._lines(path):
                stage, reason, pid, item = _quarantine_fields(d, default_stage)
                rows.append((stage, reason, pid, item, no, off, n))
                text = d.get("text")
                if isinstance(text, str) and pid:  # a problem dropped at ingest: list it too
                    meta = d.get("metadata") or {}
                    problems.append((pid, text, *_meta(meta), "dropped", stage, reason, no, off, n))
            con.executemany(
                "INSERT INTO quarantine (stage, reason, pid, item, file, off, len) VALUES (?,?,?,?,?,?,?)", rows
            )
            con.executemany(
                "INSERT OR IGNORE INTO problems (pid, statement, source, competition, year, category, status, stage,"
                " reason, file, off, len) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                problems,
            )

    def _index_rubrics(self, con: sqlite3.Connection) -> None:
        path = rundir.stage("rubrics").path(self.run_dir)
        if path.exists():
            no = self._add_file(con, path)
            con.executemany(
                "INSERT OR REPLACE INTO rubrics VALUES (?,?,?,?)",
                ((str(d.get("problem_id", "")), no, off, n) for off, n, d in self._lines(path)),
            )

    def _index_samples(self, con: sqlite3.Connection) -> None:
        for samples_stage, grades_stage in rundir.SAMPLE_STAGES:
            sp = rundir.stage(samples_stage).path(self.run_dir)
            if not sp.exists():
                continue
            gp = rundir.stage(grades_stage).path(self.run_dir)
            grades: dict[str, tuple[Any, ...]] = {}
            if gp.exists():
                gno = self._add_file(con, gp)
                for off, n, d in self._lines(gp):
                    grades[str(d.get("sample_key", ""))] = (_int(d.get("score")), str(d.get("status", "")), gno, off, n)
            no = self._add_file(con, sp)
            rows = []
            for off, n, d in self._lines(sp):
                pid = str(d.get("problem_id", ""))
                role, idx = str(d.get("role", "")), d.get("sample_index", 0)
                key = sample_key(pid, role, idx)
                g = grades.get(key, (None, None, None, None, None))
                rows.append((key, pid, role, idx, proof_fingerprint(str(d.get("proof") or "")), no, off, n, *g))
            con.executemany(
                "INSERT OR REPLACE INTO samples (key, pid, role, idx, fp, file, off, len, score, gstatus, "
                "gfile, goff, glen) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                rows,
            )

    def _index_replies(self, con: sqlite3.Connection) -> None:
        store = self.run_dir / rundir.STORE
        if not store.exists():
            return
        try:
            src = open_store(store)
            cur = src.execute("SELECT key, stage, request FROM responses WHERE stage LIKE 'grade%'")
            rows = []
            for key, stage, request in cur:
                req = _loads(request)
                msgs = req.get("messages") or []
                user = next((m.get("content", "") for m in reversed(msgs) if m.get("role") == "user"), "")
                proof = fenced_proof(user)
                if proof is not None:
                    rows.append(
                        (proof_fingerprint(proof), key, stage, _int(req.get("sample_index")), _problem_head(user))
                    )
            con.executemany("INSERT INTO replies VALUES (?,?,?,?,?)", rows)
            src.close()
        except sqlite3.Error as e:
            self.warnings.append(f"{rundir.STORE}: cannot read judge replies ({e})")

    def _aggregate(self, con: sqlite3.Connection, have_split: bool) -> None:
        con.executescript("""
            UPDATE problems SET
              n_samples = (SELECT COUNT(*) FROM samples s WHERE s.pid = problems.pid),
              n_graded = (SELECT COUNT(score) FROM samples s WHERE s.pid = problems.pid),
              reward = (SELECT AVG(score) / 7.0 FROM samples s WHERE s.pid = problems.pid AND s.role = 'student');
            UPDATE problems SET (stage, reason) = (
              SELECT q.stage, q.reason FROM quarantine q WHERE q.pid = problems.pid AND q.item = problems.pid
              ORDER BY q.n LIMIT 1)
            WHERE status = 'dropped' AND stage IS NULL;
        """)
        if have_split:
            con.execute(
                "UPDATE problems SET stage = 'split', reason = 'not selected by the split policy "
                "(see the split drop reasons on the overview)' WHERE status = 'dropped' AND stage IS NULL"
            )


def open_store(path: Path) -> sqlite3.Connection:
    """The response store, read-only (never written, never migrated).

    A store closed cleanly has no ``-wal`` file: it is opened ``immutable``, so SQLite
    creates no ``-wal``/``-shm`` beside it. A store with a ``-wal`` (a build running or
    crashed) is opened ``mode=ro`` through the WAL files that are already there."""
    path = path.resolve()
    live = path.with_name(path.name + "-wal").exists()
    query = "mode=ro" if live else "mode=ro&immutable=1"
    return sqlite3.connect(f"{path.as_uri()}?{query}", uri=True, check_same_thread=False)


def _split_statements(run_dir: Path) -> tuple[set[str] | None, str]:
    """Statements of the problems in the built split (``None`` when no split was written)."""
    data = run_dir / rundir.DATA / "default"
    files = sorted(data.glob("*.parquet")) if data.is_dir() else []
    if not files:
        return None, "unknown"
    import polars as pl

    kept: set[str] = set()
    kind = "sft"
    for f in files:
        cols = pl.read_parquet_schema(f)
        if "rubrics" in cols:
            kind = "rl"
        kept.update(s for s in pl.read_parquet(f, columns=["problem"])["problem"].to_list() if s)
    return kept, kind


def _quarantine_fields(d: dict[str, Any], default_stage: str) -> tuple[str, str, str, str]:
    meta = d.get("metadata") if isinstance(d.get("metadata"), dict) else {}
    stage = str(d.get("stage") or meta.get("stage") or default_stage)
    reason = str(d.get("reason") or meta.get("filter_reason") or d.get("filter_reason") or "")
    if d.get("problem_id"):
        pid = item = str(d["problem_id"])
    elif d.get("sample") or d.get("sample_key"):
        item = str(d.get("sample") or d.get("sample_key"))
        pid = item.split(":", 1)[0]
    elif isinstance(d.get("text"), str):
        pid = item = problem_id(d["text"])
    else:
        pid, item = "", str(d.get("id", ""))
    return stage, reason, pid, item


def _meta(d: dict[str, Any]) -> tuple[str, str, str, str]:
    year = d.get("year")
    return (
        str(d.get("source") or ""),
        str(d.get("competition") or ""),
        "" if year is None else str(year),
        str(d.get("category") or ""),
    )


def _int(v: Any) -> int | None:
    try:
        return None if v is None else int(v)
    except (TypeError, ValueError):
        return None


def _loads(s: str | None) -> dict[str, Any]:
    try:
        v = json.loads(s or "{}")
    except ValueError:
        return {}
    return v if isinstance(v, dict) else {}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return rundir.read_manifest(path)
    except (OSError, DataError):
        return {}
