"""Durable response store: every LLM completion, keyed by what produced it.

The key is a SHA-256 of (model, model revision or weights fingerprint, prompt
version, sampling params, messages, assistant prefill, chat-template switches such
as ``enable_thinking``, sample index). Entries live in one SQLite database per
run directory, in WAL mode: each completion is committed as soon as it arrives, so
a SIGKILL at any moment loses at most the requests still in flight, and SQLite's
journal guarantees what was committed is never corrupted. ``synchronous=NORMAL``
(the default) is durable against process crashes; pass ``durable=True`` for
``FULL``, which also survives a power loss at the price of one fsync per completion.

Each row keeps the answer (``text``) and, apart, the ``reasoning`` a server returned
separately. Stores written before that column existed are migrated in place on open
(the column is added, empty): their rows keep any reasoning inline in ``text`` as
``<think>...</think>``, which :func:`fineproofs.replies.split_reasoning` still
separates, so nothing is lost and nothing is regenerated.

Failures (retry budget exhausted, unparseable replies recorded by a stage) are
stored too, with ``status='failed'`` and a reason, so ``fineproofs status`` can
show them and a re-run can decide to retry them rather than pay again for
everything else.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fineproofs.errors import DataError

if TYPE_CHECKING:
    from fineproofs.engines.base import Completion

SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    stage TEXT NOT NULL,
    model TEXT NOT NULL,
    status TEXT NOT NULL,          -- ok | failed
    reason TEXT NOT NULL DEFAULT '',
    text TEXT NOT NULL DEFAULT '',
    reasoning TEXT NOT NULL DEFAULT '',  -- reasoning returned apart from the answer (may be empty)
    finish_reason TEXT NOT NULL DEFAULT '',
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost REAL NOT NULL DEFAULT 0,
    request TEXT NOT NULL,         -- JSON of what produced it (for audit)
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS responses_stage ON responses(stage, status);
CREATE TABLE IF NOT EXISTS planned (   -- every sample a stage asked for, so status can show pending work
    key TEXT PRIMARY KEY,
    stage TEXT NOT NULL
);
"""

#: Running totals per (stage, status, reason), kept by triggers in the same transaction as
#: every write, so ``summary()`` and ``count()`` read a few rows instead of the whole store.
#: ``status='pending'`` rows count planned samples that have no stored response yet.
TOTALS = """
CREATE TABLE IF NOT EXISTS totals (
    stage TEXT NOT NULL,
    status TEXT NOT NULL,          -- ok | failed | pending
    reason TEXT NOT NULL,
    n INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (stage, status, reason)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS responses_totals_insert AFTER INSERT ON responses BEGIN
    INSERT INTO totals (stage, status, reason, n, prompt_tokens, completion_tokens, cost)
    VALUES (NEW.stage, NEW.status, NEW.reason, 1, NEW.prompt_tokens, NEW.completion_tokens, NEW.cost)
    ON CONFLICT (stage, status, reason) DO UPDATE SET n = n + 1, prompt_tokens = prompt_tokens + excluded.prompt_tokens,
        completion_tokens = completion_tokens + excluded.completion_tokens, cost = cost + excluded.cost;
    UPDATE totals SET n = n - 1
    WHERE status = 'pending' AND reason = '' AND stage = (SELECT stage FROM planned WHERE key = NEW.key);
END;
CREATE TRIGGER IF NOT EXISTS responses_totals_update AFTER UPDATE ON responses BEGIN
    UPDATE totals SET n = n - 1, prompt_tokens = prompt_tokens - OLD.prompt_tokens,
        completion_tokens = completion_tokens - OLD.completion_tokens, cost = cost - OLD.cost
    WHERE stage = OLD.stage AND status = OLD.status AND reason = OLD.reason;
    INSERT INTO totals (stage, status, reason, n, prompt_tokens, completion_tokens, cost)
    VALUES (NEW.stage, NEW.status, NEW.reason, 1, NEW.prompt_tokens, NEW.completion_tokens, NEW.cost)
    ON CONFLICT (stage, status, reason) DO UPDATE SET n = n + 1, prompt_tokens = prompt_tokens + excluded.prompt_tokens,
        completion_tokens = completion_tokens + excluded.completion_tokens, cost = cost + excluded.cost;
END;
CREATE TRIGGER IF NOT EXISTS responses_totals_delete AFTER DELETE ON responses BEGIN
    UPDATE totals SET n = n - 1, prompt_tokens = prompt_tokens - OLD.prompt_tokens,
        completion_tokens = completion_tokens - OLD.completion_tokens, cost = cost - OLD.cost
    WHERE stage = OLD.stage AND status = OLD.status AND reason = OLD.reason;
    UPDATE totals SET n = n + 1
    WHERE status = 'pending' AND reason = '' AND stage = (SELECT stage FROM planned WHERE key = OLD.key);
END;
CREATE TRIGGER IF NOT EXISTS planned_totals_insert AFTER INSERT ON planned
WHEN NOT EXISTS (SELECT 1 FROM responses WHERE key = NEW.key) BEGIN
    INSERT INTO totals (stage, status, reason, n) VALUES (NEW.stage, 'pending', '', 1)
    ON CONFLICT (stage, status, reason) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS planned_totals_delete AFTER DELETE ON planned
WHEN NOT EXISTS (SELECT 1 FROM responses WHERE key = OLD.key) BEGIN
    UPDATE totals SET n = n - 1 WHERE stage = OLD.stage AND status = 'pending' AND reason = '';
END;
"""

#: ``PRAGMA user_version`` of a store with :data:`TOTALS` (0: written before it existed)
SCHEMA_VERSION = 2

#: columns added after the first release, with their definitions (old stores get them on open)
ADDED_COLUMNS = {"reasoning": "TEXT NOT NULL DEFAULT ''"}

#: SQLite's page cache per connection (KiB, as a negative ``cache_size``): bounded, so a
#: long build's memory does not follow the size of its store
CACHE_KIB = 16 * 1024
#: the WAL is checkpointed (PASSIVE) into the database every ``interval`` pages and truncated
#: back to that size when it starts over, where ``interval`` is the database's page count
#: over :data:`WAL_FRACTION`, clamped to [:data:`WAL_MIN_PAGES`, :data:`WAL_AUTOCHECKPOINT_PAGES`]
#: (pages of 4 KiB: 256 KiB to 16 MiB). The WAL is a second copy of recent pages and is removed
#: when the store closes, so while a build runs it adds at most a quarter of the store (plus one
#: transaction) to the run directory, at any size, instead of a fixed 16 MiB that is several
#: times a small build's whole store
WAL_AUTOCHECKPOINT_PAGES = 4096
WAL_MIN_PAGES = 64
WAL_FRACTION = 4
#: bound parameters per ``IN (...)`` lookup (under SQLite's variable limit, 999 on old builds)
KEY_BATCH = 500

#: every statement the store runs (``EXPLAIN QUERY PLAN`` of each is checked in the tests:
#: each one is an index search, never a scan of ``responses`` or ``planned``)
QUERIES = {
    "get": "SELECT {select} FROM responses WHERE key = ?",
    "get_many": "SELECT {select} FROM responses WHERE key IN ({marks})",
    "put": "INSERT INTO responses ({cols}) VALUES ({marks}) ON CONFLICT (key) DO UPDATE SET {update}",
    "plan": "INSERT OR IGNORE INTO planned (key, stage) VALUES (?, ?)",
    "keys": "SELECT key FROM responses ORDER BY key",
    "totals": "SELECT stage, status, reason, n, prompt_tokens, completion_tokens, cost FROM totals WHERE n != 0",
    # what the triggers look up for each written row
    "trigger_planned": "SELECT stage FROM planned WHERE key = ?",
    "trigger_responses": "SELECT 1 FROM responses WHERE key = ?",
    "trigger_totals": "UPDATE totals SET n = n + 1 WHERE stage = ? AND status = ? AND reason = ?",
}

#: the full recount (a scan; run once, when an older store is migrated, or by :meth:`ResponseStore.recount`)
RECOUNT = """
DELETE FROM totals;
INSERT INTO totals (stage, status, reason, n, prompt_tokens, completion_tokens, cost)
    SELECT stage, status, reason, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens), TOTAL(cost)
    FROM responses GROUP BY stage, status, reason;
INSERT INTO totals (stage, status, reason, n)
    SELECT p.stage, 'pending', '', COUNT(*) FROM planned p LEFT JOIN responses r ON p.key = r.key
    WHERE r.key IS NULL GROUP BY p.stage;
"""


def request_key(
    *,
    model: str,
    revision: str,
    prompt_version: str,
    sampling: dict[str, Any],
    messages: list[dict[str, str]],
    prefill: str,
    sample_index: int,
    template_kwargs: dict[str, Any] | None = None,
) -> str:
    payload = json.dumps(
        {
            "model": model,
            "revision": revision,
            "prompt_version": prompt_version,
            "sampling": sampling,
            "messages": messages,
            "prefill": prefill,
            "sample_index": sample_index,
            "template_kwargs": template_kwargs or {},
        },
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass
class StoredResponse:
    """One stored sample: where it belongs (key, stage, model) plus the fields of the
    :class:`~fineproofs.engines.base.Completion` it came from, under the same names."""

    key: str
    stage: str
    model: str
    status: str
    reason: str
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    cost: float = 0.0
    reasoning: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"

    @classmethod
    def from_completion(cls, c: Completion, *, key: str, stage: str, model: str) -> StoredResponse:
        """The one copy from an engine's completion to a stored row (every shared field, by name)."""
        return cls(key=key, stage=stage, model=model, **{f: getattr(c, f) for f in _FROM_COMPLETION})


#: the columns of ``responses`` that make a StoredResponse, in its field order
COLUMNS = tuple(f.name for f in fields(StoredResponse))
_FROM_COMPLETION = tuple(c for c in COLUMNS if c not in ("key", "stage", "model"))


class ResponseStore:
    """SQLite-backed, thread-safe, crash-safe store of completions.

    Built for a long build's scale (hundreds of thousands of rows, tens of GB of text):
    every statement is a primary-key search (see :data:`QUERIES`), ``summary()`` and
    ``count()`` read running totals kept by triggers, the page cache is bounded
    (:data:`CACHE_KIB`) and the WAL is checkpointed and truncated at a quarter of the
    database (:data:`WAL_FRACTION`, at most :data:`WAL_AUTOCHECKPOINT_PAGES` pages). A store
    written before the totals existed gets them on open (one recount, in one transaction)."""

    def __init__(self, path: str | Path, durable: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_file() and self.path.stat().st_size == 0 and not Path(f"{self.path}-wal").exists():
            # sqlite would take it for a new store and every completion would be paid again, silently
            raise DataError(
                f"{self.path} is empty (0 bytes), not a response store: restore it from a copy, or remove it to "
                "generate every completion again"
            )
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self._db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            self._wal_pages = 0
            self._bound_wal()
            self._db.executescript(SCHEMA)
            self._select = self._migrate()
            self._totals = self._migrate_totals()
        except sqlite3.DatabaseError as e:
            self._db.close()
            raise DataError(f"{self.path} is not a usable fineproofs response store ({e})") from e
        except BaseException:
            self._db.close()
            raise
        self._key_batch = min(KEY_BATCH, self._db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
        cols = COLUMNS + ("request", "created")
        self._put_sql = QUERIES["put"].format(
            cols=", ".join(cols),
            marks=",".join("?" * len(cols)),
            update=", ".join(f"{c} = excluded.{c}" for c in cols if c != "key"),
        )

    def _migrate(self) -> str:
        """Add columns missing from an older store; returns the SELECT list for COLUMNS.
        A store that cannot be written (read-only) is read with the column as ''."""
        have = {row[1] for row in self._db.execute("PRAGMA table_info(responses)")}
        unknown = [c for c in COLUMNS if c not in have and c not in ADDED_COLUMNS]
        if unknown:
            raise DataError(f"{self.path} is not a fineproofs response store (no column {unknown[0]!r})")
        for col in (c for c in COLUMNS if c not in have):
            try:
                self._db.execute(f"ALTER TABLE responses ADD COLUMN {col} {ADDED_COLUMNS[col]}")
                have.add(col)
            except sqlite3.OperationalError as e:
                if "duplicate column" in str(e):  # another process migrated it just now
                    have.add(col)
        return ", ".join(c if c in have else f"'' AS {c}" for c in COLUMNS)

    def _migrate_totals(self) -> bool:
        """Create the running totals (and count what an older store already holds) unless
        they exist; False when the store cannot be written (then totals are recounted)."""
        if self._db.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
            return True
        try:
            self._db.execute("BEGIN IMMEDIATE")  # one process migrates; the others wait, then see it done
        except sqlite3.OperationalError:
            return False  # read-only
        try:
            if self._db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                for stmt in _statements(TOTALS + RECOUNT):
                    self._db.execute(stmt)
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self._db.execute("COMMIT")
        except sqlite3.OperationalError as e:
            self._db.execute("ROLLBACK")
            if "readonly" in str(e) or "read-only" in str(e):
                return False
            raise
        return True

    def _bound_wal(self) -> None:
        """Set the WAL's checkpoint interval and size limit from the database's size now
        (see :data:`WAL_FRACTION`); called on open and after each commit (holding the lock),
        it runs two pragmas only when the interval changes."""
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        interval = min(WAL_AUTOCHECKPOINT_PAGES, max(WAL_MIN_PAGES, pages // WAL_FRACTION))
        if interval != self._wal_pages:
            page_size = self._db.execute("PRAGMA page_size").fetchone()[0]
            self._db.execute(f"PRAGMA wal_autocheckpoint={interval}")
            self._db.execute(f"PRAGMA journal_size_limit={interval * page_size}")
            self._wal_pages = interval

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> ResponseStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def get(self, key: str) -> StoredResponse | None:
        with self._lock:
            row = self._db.execute(QUERIES["get"].format(select=self._select), (key,)).fetchone()
        return StoredResponse(*row) if row else None

    def get_many(self, keys: Iterable[str]) -> dict[str, StoredResponse]:
        """The stored responses among ``keys`` (absent keys are left out), looked up in
        batches of at most :data:`KEY_BATCH` keys (SQLite's variable limit)."""
        keys = list(dict.fromkeys(keys))
        out: dict[str, StoredResponse] = {}
        n = self._key_batch
        with self._lock:
            for i in range(0, len(keys), n):
                chunk = keys[i : i + n]
                sql = QUERIES["get_many"].format(select=self._select, marks=",".join("?" * len(chunk)))
                for row in self._db.execute(sql, chunk):
                    out[row[0]] = StoredResponse(*row)
        return out

    def put(self, resp: StoredResponse, request: dict[str, Any]) -> None:
        """Commit one response (replacing an earlier failure under the same key)."""
        self.put_many([(resp, request)])

    def put_many(self, items: list[tuple[StoredResponse, dict[str, Any]]]) -> None:
        """Commit several responses in one transaction: all of them or none (the
        samples of one request are stored together, so a resume never sees half a request).
        A key already stored is updated in place (the totals follow)."""
        now = time.time()
        rows = [tuple(getattr(r, c) for c in COLUMNS) + (json.dumps(req, ensure_ascii=False), now) for r, req in items]
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(self._put_sql, rows)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self._bound_wal()

    def keys(self) -> list[str]:
        """Every stored key, sorted (for audits and resume checks)."""
        with self._lock:
            return [r[0] for r in self._db.execute(QUERIES["keys"])]

    def plan(self, stage: str, keys: Iterable[str]) -> None:
        """Record the samples a stage is about to ask for (shown as pending until stored)."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(QUERIES["plan"], ((k, stage) for k in keys))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self._bound_wal()

    def checkpoint(self, mode: str = "PASSIVE") -> tuple[int, int, int]:
        """Copy the WAL into the database now (``PASSIVE`` never blocks; ``TRUNCATE`` also
        empties the WAL file); returns SQLite's (busy, WAL pages, pages checkpointed)."""
        if mode not in ("PASSIVE", "FULL", "RESTART", "TRUNCATE"):
            raise ValueError(f"checkpoint mode {mode!r}")
        with self._lock:
            return tuple(self._db.execute(f"PRAGMA wal_checkpoint({mode})").fetchone())

    def recount(self) -> None:
        """Rebuild the running totals from the rows (a full scan: for repairs only)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for stmt in _statements(RECOUNT):
                    self._db.execute(stmt)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _total_rows(self) -> list[tuple]:
        """(stage, status, reason, n, prompt_tokens, completion_tokens, cost) per group."""
        with self._lock:
            if self._totals:
                return self._db.execute(QUERIES["totals"]).fetchall()
            # a read-only store written before the totals: count the rows (a scan)
            rows = self._db.execute(
                "SELECT stage, status, reason, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens), SUM(cost) "
                "FROM responses GROUP BY stage, status, reason"
            ).fetchall()
            pending = self._db.execute(
                "SELECT p.stage, 'pending', '', COUNT(*), 0, 0, 0.0 FROM planned p LEFT JOIN responses r "
                "ON p.key = r.key WHERE r.key IS NULL GROUP BY p.stage"
            ).fetchall()
        return rows + pending

    def count(self, stage: str | None = None, status: str | None = None) -> int:
        """Stored responses (of one stage, of one status), from the running totals."""
        return sum(
            r[3]
            for r in self._total_rows()
            if r[1] != "pending" and (stage is None or r[0] == stage) and (status is None or r[1] == status)
        )

    def summary(self) -> list[dict[str, Any]]:
        """Per stage: done, failed by reason, pending, tokens and cost (from the running
        totals: the same cost at 700k rows as at 7)."""
        stages: dict[str, dict[str, Any]] = {}

        def entry(stage: str) -> dict[str, Any]:
            return stages.setdefault(
                stage,
                {
                    "stage": stage,
                    "done": 0,
                    "failed": 0,
                    "failed_by_reason": {},
                    "pending": 0,
                    "prompt_tokens": 0,
                    "completion_tokens": 0,
                    "cost": 0.0,
                },
            )

        for stage, status, reason, n, pt, ct, cost in sorted(self._total_rows(), key=lambda r: r[:3]):
            if n <= 0:
                continue
            s = entry(stage)
            if status == "pending":
                s["pending"] += n
                continue
            if status == "ok":
                s["done"] += n
            else:
                s["failed"] += n
                s["failed_by_reason"][reason or "unknown"] = s["failed_by_reason"].get(reason or "unknown", 0) + n
            s["prompt_tokens"] += pt or 0
            s["completion_tokens"] += ct or 0
            s["cost"] += cost or 0.0
        return list(stages.values())


def _statements(script: str) -> list[str]:
    """Split a script of statements (triggers included) for ``execute`` inside a transaction
    (``executescript`` would commit first)."""
    out, buf = [], ""
    for line in script.strip().splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    return out
