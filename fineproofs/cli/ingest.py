"""CLI: ``fineproofs ingest`` and ``fineproofs decontaminate`` (click commands that
the main CLI group registers)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import click

from fineproofs import rundir
from fineproofs.cli.base import Command, profile_option
from fineproofs.errors import ConfigError
from fineproofs.records import reason_kind


@click.command("decontaminate", cls=Command)
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--against",
    "against",
    multiple=True,
    required=True,
    help="benchmark file (CSV/JSONL/parquet, or hf:<dataset>); repeatable",
)
@click.option("--text-field", default="problem", show_default=True, help="column of INPUT holding the problem text")
@click.option(
    "--output", "-o", "output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="OUT.jsonl"
)
@click.option(
    "--verify-url",
    default="",
    help="OpenAI-compatible server whose model judges the retrieval's candidates (same problem up to rewording?)",
)
@click.option("--verify-model", default="", help="the served model for --verify-url")
@click.option("--embeddings-url", default="", help="OpenAI-compatible /v1/embeddings server adding a view to retrieval")
@click.option("--embeddings-model", default="", help="the served embedding model for --embeddings-url")
@click.option(
    "--probes/--no-probes", default=True, show_default=True, help="print the detector's figures on the probe set"
)
def decontaminate(
    input_path: Path,
    against: tuple[str, ...],
    text_field: str,
    output: Path,
    verify_url: str,
    verify_model: str,
    embeddings_url: str,
    embeddings_model: str,
    probes: bool,
) -> None:
    """Flag rows of INPUT that match a benchmark problem; every checked row is written to OUT
    with ``contaminated`` and ``contamination`` ({benchmark, benchmark_id, method, score}).
    A row that cannot be checked (unreadable, no text field) is never written as clean: it
    goes to OUT's quarantine file (``<OUT>.quarantine.jsonl``) with its line and reason.

    With ``--verify-url``/``--verify-model`` the retrieval's candidates that the offline
    rule leaves are judged by that model (structured output; verdicts kept in
    ``<OUT>.store.sqlite``, so a re-run asks nothing again); a flagged row then carries the
    model's ``reason``. Finally the detector's recall and false positives on the project's
    probe set, with these benchmarks indexed, are printed (``--no-probes`` skips it)."""
    import itertools

    from fineproofs.filters.decontaminate import Decontaminator, load_benchmarks
    from fineproofs.filters.retrieval import EmbeddingClient
    from fineproofs.tables import iter_table

    if bool(verify_url) != bool(verify_model) or bool(embeddings_url) != bool(embeddings_model):
        raise ConfigError("--verify-url goes with --verify-model, --embeddings-url with --embeddings-model")

    quarantine = output.with_name(output.name + ".quarantine.jsonl")
    for written, what in ((output, "--output"), (quarantine, f"--output's quarantine file {quarantine}")):
        if written.resolve() == input_path.resolve() or (written.exists() and written.samefile(input_path)):
            raise ConfigError(f"{what} is INPUT: write the flagged rows to another file (INPUT is never overwritten)")
    benches = load_benchmarks(against)  # every file validated before any work
    embedder = EmbeddingClient(embeddings_url, embeddings_model) if embeddings_url else None
    dec = Decontaminator([p for ps in benches for p in ps], embedder=embedder)
    rows = iter_table(input_path, what="INPUT")
    first = list(itertools.islice(rows, 1))
    if first and first[0].row is not None and text_field not in first[0].row:
        raise ConfigError(f"--text-field {text_field!r} not in INPUT columns {list(first[0].row)}")
    flagged: Counter = Counter()
    bad: Counter = Counter()
    n = 0
    verdicts = dec.check_rows(itertools.chain(first, rows), text_field)
    engine = None
    if verify_url:
        verdicts, engine = _verified(dec, verdicts, text_field, verify_url, verify_model, output)
    with rundir.atomic_write(output) as f, rundir.atomic_write(quarantine) as q:
        for v in verdicts:
            if v.error:
                bad[reason_kind(v.error)] += 1
                q.write(json.dumps({"line": v.line, "reason": v.error}, ensure_ascii=False) + "\n")
                continue
            n += 1
            if v.match:
                flagged[v.match.benchmark] += 1
            f.write(json.dumps(v.output_row(), ensure_ascii=False, default=str) + "\n")
    click.echo(f"{n} rows, {sum(flagged.values())} contaminated -> {output}")
    for ps, b in zip(benches, against):
        name = ps[0].benchmark if ps else Path(b).stem
        click.echo(f"  {name}: {flagged.get(name, 0)} flagged ({len(ps)} benchmark problems)")
    if bad:
        click.secho(
            f"{sum(bad.values())} rows could not be checked ("
            + ", ".join(f"{k}: {v}" for k, v in bad.items())
            + f") -> {quarantine}",
            fg="yellow",
            err=True,
        )
    else:
        quarantine.unlink()
    if engine is not None:
        engine.close()  # the store closes with it (_verified)
    if probes:
        from fineproofs.filters.probes import measure, summary, table

        res = measure([p for ps in benches for p in ps], embedder=embedder)
        s = summary(res)
        click.echo(
            f"detector on the probe set with these benchmarks indexed (offline rule): recall {s['disguise_recall']} "
            f"on disguises, {s['paraphrase_recall']} on paraphrases, {s['false_positives']}/{s['negatives']} "
            "unrelated problems flagged"
        )
        for line in table(res):
            click.echo("  " + line)


def _verified(dec, verdicts, text_field: str, url: str, model: str, output: Path, batch: int = 256):
    """The verdicts with the rows the offline rule left clean judged by ``model`` at ``url``
    (in batches of ``batch`` rows), and the engine to close."""
    import itertools

    from fineproofs.config import EngineConfig
    from fineproofs.engines import make_engine
    from fineproofs.filters.verify import SameProblemVerifier
    from fineproofs.generation import CachedGenerator
    from fineproofs.store import ResponseStore

    engine = make_engine(EngineConfig(kind="http", model=model, endpoints=[url]))
    engine.__enter__()
    store = ResponseStore(output.with_name(output.name + ".store.sqlite"))
    close = engine.close

    def close_both() -> None:
        close()
        store.close()

    engine.close = close_both
    verifier = SameProblemVerifier(CachedGenerator(engine, store, progress=False))

    def gen():
        it = iter(verdicts)
        while chunk := list(itertools.islice(it, batch)):
            todo = [v for v in chunk if not v.error and v.match is None]
            texts = [v.row[text_field] for v in todo]
            for v, m in zip(todo, dec.match_many(texts, verifier, offline=False)):
                v.match = m
            yield from chunk

    return gen(), engine


@click.command("ingest", cls=Command)
@profile_option("profile_name")
@click.option(
    "--output", "-o", "output", required=True, type=click.Path(file_okay=False, path_type=Path), help="run directory"
)
@click.option("--benchmarks", multiple=True, help="benchmark files to decontaminate against (repeatable)")
@click.option(
    "--executor",
    type=click.Choice(["local", "slurm", "ray"]),
    default=None,
    help="datatrove executor (default: the profile's executor.kind)",
)
@click.option("--tasks", type=click.IntRange(min=1), default=None, help="parallel tasks for the sharded stages")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="keep the first N problems (by id)")
def ingest(
    profile_name: str, output: Path, benchmarks: tuple[str, ...], executor: str, tasks: int, limit: int | None
) -> None:
    """Scrape/read sources, clean, classify, dedup and decontaminate into OUTPUT/problems."""
    from fineproofs.config import load_profile
    from fineproofs.pipelines.ingest import NO_BENCHMARK_WARNING, run_ingest

    profile = load_profile(profile_name).with_overrides(
        limit=limit, benchmarks=list(benchmarks) or None, executor=executor, tasks=tasks
    )
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
@click.option(
    "--api", "api_url", required=True, help="MediaWiki API endpoint, e.g. https://artofproblemsolving.com/wiki/api.php"
)
@click.option(
    "--output",
    "-o",
    "output",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="crawl store: raw responses + pages/ (ready to ingest: add OUTPUT/pages to sources.paths)",
)
@click.option("--category", default=None, help="crawl the pages of this category (e.g. 'Category:Olympiad Problems')")
@click.option("--prefix", default=None, help="crawl the pages whose titles start with this prefix")
@click.option("--title", "titles", multiple=True, help="crawl these page titles (repeatable)")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="at most N pages")
@click.option("--min-interval", type=float, default=1.0, show_default=True, help="seconds between requests per host")
@click.option(
    "--refresh", is_flag=True, help="re-check stored pages (conditional requests: unchanged pages cost a 304)"
)
def crawl(api_url, output, category, prefix, titles, limit, min_interval, refresh) -> None:
    """Crawl wiki pages politely (robots.txt, per-host rate limit, retries with backoff)
    into a resumable store: a killed crawl re-run fetches only what it did not store."""
    from fineproofs.pipelines.sources.crawler import WikiCrawler

    if not (category or prefix or titles):
        raise click.UsageError("give --category, --prefix or --title")
    crawler = WikiCrawler(api_url, output, min_interval_s=min_interval)
    stats = crawler.crawl(titles=list(titles) or None, category=category, prefix=prefix, limit=limit, refresh=refresh)
    click.echo(
        f"pages stored: {stats.pages}; HTTP requests: {stats.requested}; served from the store: "
        f"{stats.from_store}; not modified: {stats.not_modified}; retries: {stats.retries}"
    )
    for what, why in sorted(stats.skipped.items()):
        click.echo(f"skipped {what}: {why}")
    click.echo(f"ingest it with sources.paths: [{output / 'pages'}]")
