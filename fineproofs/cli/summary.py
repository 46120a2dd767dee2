"""Terminal summaries: the table a build ends with, and ``fineproofs status``."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from fineproofs.store import ResponseStore


def print_build_summary(result, console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title=f"fineproofs build --split {result.split}")
    table.add_column("stage")
    table.add_column("kept", justify="right")
    table.add_column("dropped (reason: count)")
    for stage, n in result.counts.items():
        reasons = result.dropped.get(stage, {})
        label = stage
        if stage == "decontaminated" and not result.decontaminated:
            label = "decontaminated (skipped: no benchmarks)"
        table.add_row(label, str(n), ", ".join(f"{k}: {v}" for k, v in reasons.items()))
    console.print(table)
    rows = ", ".join(f"{k}: {v} rows" for k, v in result.rows.items())
    console.print(f"split written: {rows}")
    console.print(f"generations: {result.generated} new, {result.cached} from the store; {result.seconds:.1f} s")
    if not result.decontaminated:
        console.print("[bold yellow]NOT decontaminated[/]: pass --benchmarks FILE to check against benchmarks")
    console.print(f"output: {result.out_dir.resolve()}  (card: {result.card})")
    if result.rows.get("default"):
        console.print(f'load it: datasets.load_dataset("{result.out_dir}", "default")')
    else:
        console.print("[bold red]the split is empty[/]: every problem was dropped (reasons above, details in "
                      f"{result.out_dir / 'quarantine'}); raise --limit or use a stronger model")


def print_status(run_dir: Path, console: Console | None = None) -> None:
    console = console or Console()
    path = Path(run_dir) / "store.sqlite"
    if not path.exists():
        console.print(f"{run_dir}: no response store yet (nothing generated)")
        return
    with ResponseStore(path) as store:
        rows = store.summary()
    table = Table(title=f"LLM stages in {run_dir}")
    for col in ("stage", "done", "failed", "failed by reason", "pending", "prompt tokens", "completion tokens", "cost"):
        table.add_column(col, justify="left" if col in ("stage", "failed by reason") else "right")
    for r in rows:
        table.add_row(
            r["stage"], str(r["done"]), str(r["failed"]),
            ", ".join(f"{k}: {v}" for k, v in r["failed_by_reason"].items()), str(r["pending"]),
            str(r["prompt_tokens"]), str(r["completion_tokens"]), f"{r['cost']:.4f}",
        )
    console.print(table)
    quarantine = Path(run_dir) / "quarantine" / "llm.jsonl"
    if quarantine.exists():
        import collections
        import json

        counts = collections.Counter()
        for line in quarantine.read_text().splitlines():
            q = json.loads(line)
            counts[(q["stage"], q["reason"].split(":", 1)[0])] += 1
        if counts:
            console.print("quarantined after parsing/validation (stage, reason: count): " + ", ".join(
                f"{st} {why}: {n}" for (st, why), n in sorted(counts.items())))
    manifest = Path(run_dir) / "build.json"
    if manifest.exists():
        import json

        m = json.loads(manifest.read_text())
        console.print(f"last build: split {m['split']}, rows {m['rows']}, {m['seconds']} s")
    else:
        console.print("no finished build yet: re-run the same `fineproofs build` to resume (stored completions are reused)")
