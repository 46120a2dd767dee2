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

#: columns added after the first release, with their definitions (old stores get them on open)
ADDED_COLUMNS = {"reasoning": "TEXT NOT NULL DEFAULT ''"}


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
    """SQLite-backed, thread-safe, crash-safe store of completions."""

    def __init__(self, path: str | Path, durable: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self._db.executescript(SCHEMA)
            self._select = self._migrate()
        except sqlite3.DatabaseError as e:
            self._db.close()
            raise DataError(f"{self.path} is not a usable fineproofs response store ({e})") from e
        except BaseException:
            self._db.close()
            raise

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

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> ResponseStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def get(self, key: str) -> StoredResponse | None:
        with self._lock:
            row = self._db.execute(f"SELECT {self._select} FROM responses WHERE key = ?", (key,)).fetchone()
        return StoredResponse(*row) if row else None

    def get_many(self, keys: Iterable[str]) -> dict[str, StoredResponse]:
        keys = list(keys)
        out: dict[str, StoredResponse] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                q = ",".join("?" * len(chunk))
                for row in self._db.execute(f"SELECT {self._select} FROM responses WHERE key IN ({q})", chunk):
                    out[row[0]] = StoredResponse(*row)
        return out

    def put(self, resp: StoredResponse, request: dict[str, Any]) -> None:
        """Commit one response (replacing an earlier failure under the same key)."""
        self.put_many([(resp, request)])

    def put_many(self, items: list[tuple[StoredResponse, dict[str, Any]]]) -> None:
        """Commit several responses in one transaction: all of them or none (the
        samples of one request are stored together, so a resume never sees half a request)."""
        now = time.time()
        rows = [tuple(getattr(r, c) for c in COLUMNS) + (json.dumps(req, ensure_ascii=False), now) for r, req in items]
        cols = COLUMNS + ("request", "created")
        sql = f"INSERT OR REPLACE INTO responses ({', '.join(cols)}) VALUES ({','.join('?' * len(cols))})"
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(sql, rows)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def keys(self) -> list[str]:
        """Every stored key, sorted (for audits and resume checks)."""
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT key FROM responses ORDER BY key")]

    def plan(self, stage: str, keys: Iterable[str]) -> None:
        """Record the samples a stage is about to ask for (shown as pending until stored)."""
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR IGNORE INTO planned (key, stage) VALUES (?, ?)", ((k, stage) for k in keys))
            self._db.execute("COMMIT")

    def count(self, stage: str | None = None, status: str | None = None) -> int:
        q, args = "SELECT COUNT(*) FROM responses WHERE 1=1", []
        if stage:
            q, args = q + " AND stage = ?", args + [stage]
        if status:
            q, args = q + " AND status = ?", args + [status]
        with self._lock:
            return self._db.execute(q, args).fetchone()[0]

    def summary(self) -> list[dict[str, Any]]:
        """Per stage: done, failed by reason, pending, tokens and cost."""
        with self._lock:
            rows = self._db.execute(
                "SELECT stage, status, reason, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens), SUM(cost) "
                "FROM responses GROUP BY stage, status, reason ORDER BY stage"
            ).fetchall()
            pending = self._db.execute(
                "SELECT p.stage, COUNT(*) FROM planned p LEFT JOIN responses r ON p.key = r.key "
                "WHERE r.key IS NULL GROUP BY p.stage"
            ).fetchall()
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

        for stage, n in pending:
            entry(stage)["pending"] = n
        for stage, status, reason, n, pt, ct, cost in rows:
            s = entry(stage)
            if status == "ok":
                s["done"] += n
            else:
                s["failed"] += n
                s["failed_by_reason"][reason or "unknown"] = n
            s["prompt_tokens"] += pt or 0
            s["completion_tokens"] += ct or 0
            s["cost"] += cost or 0.0
        return list(stages.values())
