"""Terminal summaries: the table a build ends with, and ``fineproofs status``."""

from __future__ import annotations

import collections
import sqlite3
from pathlib import Path

from rich.console import Console
from rich.table import Table

from fineproofs import rundir
from fineproofs.errors import DataError
from fineproofs.records import reason_kind
from fineproofs.store import ResponseStore


def print_build_summary(result, console: Console | None = None) -> None:
    """The table a build ends with, then rows, generations, calibration and where the
    output is. Fits an 80-column terminal: stage names are never cut, long reason lists
    wrap inside their column."""
    from fineproofs.pipelines.calibration import one_line

    console = console or Console()
    labels = {}
    for stage in result.counts:
        labels[stage] = stage
        if stage == "decontaminated" and not result.decontaminated:
            labels[stage] = "decontaminated (skipped: no benchmarks)"
    table = Table(title=f"fineproofs build --split {result.split}")
    table.add_column("stage", no_wrap=True, min_width=min(40, max(map(len, labels.values()), default=5)))
    table.add_column("kept", justify="right", no_wrap=True)
    table.add_column("dropped (reason: count)", overflow="fold")
    for stage, n in result.counts.items():
        reasons = result.dropped.get(stage, {})
        table.add_row(labels[stage], str(n), ", ".join(f"{k}: {v}" for k, v in reasons.items()))
    console.print(table)
    rows = ", ".join(f"{k}: {v} rows" for k, v in result.rows.items())
    console.print(f"split written: {rows}")
    console.print(f"generations: {result.generated} new, {result.cached} from the store; {result.seconds:.1f} s")
    for role, figures in (getattr(result, "calibration", None) or {}).items():
        console.print(f"{role} calibration against human grades: {one_line(figures)}")
    if not result.decontaminated:
        console.print("[bold yellow]NOT decontaminated[/]: pass --benchmarks FILE to check against benchmarks")
    console.print(f"output: {result.out_dir.resolve()}  (card: {result.card})")
    if result.rows.get("default"):
        console.print(f'load it: datasets.load_dataset("{result.out_dir}", "default")')
    else:
        console.print(
            "[bold red]the split is empty[/]: every problem was dropped (reasons above, details in "
            f"{result.out_dir / 'quarantine'}); raise --limit or use a stronger model"
        )


_SUMMED = ("done", "failed", "pending", "prompt_tokens", "completion_tokens", "cost")


_SQLITE_HEADER = b"SQLite format 3\x00"


def _check_store(path: Path) -> None:
    """Refuse, without writing to it, a file that is not a fineproofs response store
    (opening one read-write would add the store's tables to it)."""
    damaged = f"{path} is not a readable fineproofs response store"
    with open(path, "rb") as f:
        if f.read(len(_SQLITE_HEADER)) != _SQLITE_HEADER:
            raise DataError(f"{damaged} (not an SQLite database); move it aside to rebuild")
    if path.with_name(path.name + "-wal").exists():
        return  # a build is writing it (or was killed): the store reads its journal itself
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
        try:
            columns = {row[1] for row in db.execute("PRAGMA table_info(responses)")}
        finally:
            db.close()
    except sqlite3.DatabaseError as e:
        raise DataError(f"{damaged} ({e}); move it aside to rebuild") from e
    if not {"stage", "status", "reason"} <= columns:
        raise DataError(f"{damaged} (no responses table); move it aside to rebuild")


def _store_summary(path: Path) -> list[dict]:
    _check_store(path)
    try:
        with ResponseStore(path) as store:
            return store.summary()
    except sqlite3.DatabaseError as e:
        raise DataError(f"{path} is not a readable fineproofs response store ({e}); move it aside to rebuild") from e


def _add(total: dict, r: dict) -> None:
    for k in _SUMMED:
        total[k] += r[k]
    for k, v in r["failed_by_reason"].items():
        total["failed_by_reason"][k] = total["failed_by_reason"].get(k, 0) + v


def print_status(run_dir: Path, console: Console | None = None) -> None:
    console = console or Console()
    stores = [
        p
        for p in [Path(run_dir) / rundir.STORE, *sorted(Path(run_dir).glob(f"{rundir.SHARDS}/*/{rundir.STORE}"))]
        if p.exists()
    ]
    if not stores:
        console.print(f"{run_dir}: no response store yet (nothing generated)")
        return
    stages: dict[str, dict] = {}
    for path in stores:
        for r in _store_summary(path):
            _add(stages.setdefault(r["stage"], {**r, "failed_by_reason": {}, **dict.fromkeys(_SUMMED, 0)}), r)
    shards = sorted(Path(run_dir).glob(f"{rundir.SHARDS}/*"))
    where = f" ({len(shards)} shards, {sum((d / rundir.MANIFEST).exists() for d in shards)} finished)" if shards else ""
    table = Table(title=f"LLM stages in {run_dir}{where}")
    # 80 columns: the stage name is never cut, no header word is split, failure reasons
    # (inside the "failed" cell) fold within their column
    table.add_column("stage", no_wrap=True, min_width=min(24, max(map(len, stages), default=5)))
    for col in ("done", "failed", "pending", "prompt tokens", "output tokens", "cost"):
        table.add_column(col, justify="left" if col == "failed" else "right", overflow="fold",
                         min_width=max(map(len, col.split())))  # fmt: skip
    for r in stages.values():
        why = ", ".join(f"{k}: {v}" for k, v in r["failed_by_reason"].items())
        table.add_row(
            r["stage"],
            str(r["done"]),
            f"{r['failed']} ({why})" if why else str(r["failed"]),
            str(r["pending"]),
            str(r["prompt_tokens"]),
            str(r["completion_tokens"]),
            f"{r['cost']:.4f}",
        )
    console.print(table)
    quarantine = rundir.read_quarantine(run_dir)  # tolerant: damaged lines are counted
    if quarantine.path.exists():
        counts: collections.Counter = collections.Counter()
        for i, q in enumerate(quarantine, 1):
            try:
                counts[(str(q["stage"]), reason_kind(q["reason"]))] += 1
            except (KeyError, TypeError, AttributeError):
                counts[("?", f"damaged record {i}")] += 1
        if quarantine.skipped:
            counts[("?", "damaged lines")] += quarantine.skipped
        if counts:
            console.print(
                "quarantined after parsing/validation (stage, reason: count): "
                + ", ".join(f"{st} {why}: {n}" for (st, why), n in sorted(counts.items()))
            )
    manifest = Path(run_dir) / rundir.MANIFEST
    if manifest.exists():
        try:
            m = rundir.read_manifest(manifest)
            console.print(f"last build: split {m['split']}, rows {m['rows']}, {m['seconds']} s")
        except DataError as e:
            console.print(f"{e}")
        except (KeyError, TypeError) as e:
            console.print(f"{manifest} is damaged ({e}): re-run the build to rewrite it")
    else:
        console.print(
            "no finished build yet: re-run the same `fineproofs build` to resume (stored completions are reused)"
        )
