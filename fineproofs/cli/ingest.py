"""CLI: ``fineproofs ingest`` and ``fineproofs decontaminate`` (click commands that
the main CLI group registers)."""

from __future__ import annotations

import csv
import json
import sys
from collections import Counter
from pathlib import Path

import click

from fineproofs.cli.base import Command


def _read_rows(path: Path) -> list[dict]:
    if path.suffix == ".csv":
        csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            return list(csv.DictReader(f))
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    rows = []
    with open(path, "rb") as f:
        for i, raw in enumerate(f, 1):
            if raw.strip():
                try:
                    rows.append(json.loads(raw.decode("utf-8", errors="replace")))
                except json.JSONDecodeError as e:
                    raise click.ClickException(f"{path}:{i}: not valid JSON ({e.msg})") from e
    return rows


@click.command("decontaminate", cls=Command)
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--against", "against", multiple=True, required=True,
              help="benchmark file (CSV/JSONL/parquet, or hf:<dataset>); repeatable")
@click.option("--text-field", default="problem", show_default=True, help="column of INPUT holding the problem text")
@click.option("--output", "output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="OUT.jsonl")
def decontaminate(input_path: Path, against: tuple[str, ...], text_field: str, output: Path) -> None:
    """Flag rows of INPUT that match a benchmark problem; every row is written to OUT
    with ``contaminated`` and ``contamination`` ({benchmark, benchmark_id, method, score})."""
    from fineproofs.filters.decontaminate import Decontaminator, load_benchmark

    benches = []
    for b in against:
        try:
            benches.append(load_benchmark(b))
        except (OSError, ValueError) as e:
            raise click.ClickException(str(e)) from e
    dec = Decontaminator([p for ps in benches for p in ps])
    rows = _read_rows(input_path)
    if rows and text_field not in rows[0]:
        raise click.ClickException(f"--text-field {text_field!r} not in INPUT columns {list(rows[0])}")
    flagged = Counter()
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "w") as f:
        for row in rows:
            m = dec.match(str(row.get(text_field) or ""))
            row = dict(row, contaminated=m is not None, contamination=m.as_dict() if m else None)
            if m:
                flagged[m.benchmark] += 1
            f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    click.echo(f"{len(rows)} rows, {sum(flagged.values())} contaminated -> {output}")
    for ps, b in zip(benches, against):
        name = ps[0].benchmark if ps else Path(b).stem
        click.echo(f"  {name}: {flagged.get(name, 0)} flagged ({len(ps)} benchmark problems)")


@click.command("ingest", cls=Command)
@click.option("--profile", "profile_name", default="embedded", show_default=True, help="bundled profile name or YAML file")
@click.option("--output", "output", required=True, type=click.Path(file_okay=False, path_type=Path), help="run directory")
@click.option("--benchmarks", multiple=True, help="benchmark files to decontaminate against (repeatable)")
@click.option("--executor", type=click.Choice(["local", "slurm", "ray"]), default=None,
              help="datatrove executor (default: the profile's executor.kind)")
@click.option("--tasks", type=click.IntRange(min=1), default=None, help="parallel tasks for the sharded stages")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="keep the first N problems (by id)")
def ingest(profile_name: str, output: Path, benchmarks: tuple[str, ...], executor: str, tasks: int, limit: int | None) -> None:
    """Scrape/read sources, clean, classify, dedup and decontaminate into OUTPUT/problems."""
    from fineproofs.config import load_profile
    from fineproofs.pipelines.ingest import NO_BENCHMARK_WARNING, run_ingest

    profile = load_profile(profile_name).with_overrides(limit=limit, benchmarks=list(benchmarks) or None,
                                                         executor=executor, tasks=tasks)
    r = run_ingest(profile, output)
    click.echo(" -> ".join(f"{k} {v}" for k, v in r.counts.items()))
    for stage, reasons in r.dropped.items():
        if reasons:
            click.echo(f"  dropped at {stage}: " + ", ".join(f"{k} {v}" for k, v in reasons.items()))
    if r.decontaminated:
        for name, b in r.decontam_report["benchmarks"].items():
            click.echo(f"  {name}: {b['flagged']} flagged ({b['problems']} benchmark problems)")
    else:
        click.secho("WARNING: " + NO_BENCHMARK_WARNING, fg="red", bold=True, err=True)
    click.echo(f"{len(r.problems)} problems -> {r.problems_path} (quarantine: {r.quarantine_dir})")


@click.command("crawl", cls=Command)
@click.option("--api", "api_url", required=True,
              help="MediaWiki API endpoint, e.g. https://artofproblemsolving.com/wiki/api.php")
@click.option("--output", "output", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="crawl store: raw responses + pages/ (ready to ingest: add OUTPUT/pages to sources.paths)")
@click.option("--category", default=None, help="crawl the pages of this category (e.g. 'Category:Olympiad Problems')")
@click.option("--prefix", default=None, help="crawl the pages whose titles start with this prefix")
@click.option("--title", "titles", multiple=True, help="crawl these page titles (repeatable)")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="at most N pages")
@click.option("--min-interval", type=float, default=1.0, show_default=True, help="seconds between requests per host")
@click.option("--refresh", is_flag=True, help="re-check stored pages (conditional requests: unchanged pages cost a 304)")
def crawl(api_url, output, category, prefix, titles, limit, min_interval, refresh) -> None:
    """Crawl wiki pages politely (robots.txt, per-host rate limit, retries with backoff)
    into a resumable store: a killed crawl re-run fetches only what it did not store."""
    from fineproofs.pipelines.sources.crawler import WikiCrawler

    if not (category or prefix or titles):
        raise click.UsageError("give --category, --prefix or --title")
    crawler = WikiCrawler(api_url, output, min_interval_s=min_interval)
    stats = crawler.crawl(titles=list(titles) or None, category=category, prefix=prefix, limit=limit, refresh=refresh)
    click.echo(f"pages stored: {stats.pages}; HTTP requests: {stats.requested}; served from the store: "
               f"{stats.from_store}; not modified: {stats.not_modified}; retries: {stats.retries}")
    for what, why in sorted(stats.skipped.items()):
        click.echo(f"skipped {what}: {why}")
    click.echo(f"ingest it with sources.paths: [{output / 'pages'}]")
