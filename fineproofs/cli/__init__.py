"""The ``fineproofs`` command line: the only click code. Every command maps errors
through :mod:`fineproofs.cli.base` (one line, exit 2 for configuration, 1 otherwise)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from fineproofs.cli.base import Group


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not verbose:
        # our own stage messages (what was skipped and why) stay visible
        logging.getLogger("fineproofs").setLevel(logging.INFO)
    for noisy in ("httpx", "urllib3", "datatrove", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not verbose:
        # datatrove logs every task's pipeline and stats through loguru; its stats files
        # stay in the run directory (ingest/logs), the terminal keeps our own summary
        from loguru import logger

        logger.disable("datatrove")


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Log everything, including library messages (datatrove's per-task pipeline logs).",
)
def cli(verbose: bool) -> None:
    """fineproofs: build olympiad-proof datasets (FineProofs-SFT / FineProofs-RL)
    from raw sources and retrain small proof models on them.

    Start with `fineproofs build --split rl`: it runs the whole pipeline on the
    embedded default (bundled demo problems, SmolLM2-135M-Instruct on CPU).
    """
    _setup_logging(verbose)


@cli.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
def status(run_dir: Path) -> None:
    """Per LLM stage of RUN_DIR: done, failed (by reason), tokens and cost so far."""
    from fineproofs.cli.summary import print_status

    print_status(run_dir)


def _register() -> None:
    from fineproofs.cli import build, calibrate, hub, ingest, profiles, train, view

    for cmd in (
        build.build,
        calibrate.calibrate,
        profiles.profiles,
        view.view,
        ingest.ingest,
        ingest.decontaminate,
        ingest.crawl,
        hub.push,
        hub.stats,
        train.train,
        train.eval_cmd,
    ):
        cli.add_command(cmd)


_register()


def main() -> None:
    cli(prog_name="fineproofs")


if __name__ == "__main__":
    sys.exit(main())
