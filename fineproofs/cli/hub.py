"""``fineproofs push`` and ``fineproofs stats`` ."""

from __future__ import annotations

from pathlib import Path

import click

from fineproofs.cli.base import Command


@click.command(cls=Command)
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--repo-id", required=True, metavar="ORG/NAME", help="Hub dataset repo (created if missing).")
@click.option("--private", is_flag=True, help="Create the repo as private (an existing repo keeps its visibility).")
@click.option("--revision", default=None, metavar="BRANCH", help="Branch to push to (created from main if missing).")
@click.option("--create-pr", is_flag=True, help="Open a pull request instead of committing to the branch.")
@click.option("--message", "-m", default=None, help="Commit message.")
@click.option("--dry-run", is_flag=True, help="List the files that would be pushed and stop.")
def push(
    run_dir: Path,
    repo_id: str,
    private: bool,
    revision: str | None,
    create_pr: bool,
    message: str | None,
    dry_run: bool,
) -> None:
    """Push RUN_DIR's dataset to the Hub in one commit.

    Uploads the card (README.md), the parquet shards of every config, the plots and
    profile.yaml; never the response store, stages, quarantine or problem files. The
    token comes from HF_TOKEN or `hf auth login`; HF_ENDPOINT selects another Hub.
    A failed push leaves the remote as it was.
    """
    from fineproofs.cards.hub import push_plan, push_run

    if dry_run:
        for f in push_plan(run_dir, repo_id):
            click.echo(f"{f.path_in_repo}  ({len(f.data)} bytes)")
        return
    url = push_run(run_dir, repo_id, private=private, revision=revision, create_pr=create_pr, commit_message=message)
    click.echo(f"pushed to {url}")


@click.command(cls=Command)
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
def stats(run_dir: Path) -> None:
    """The dataset card's tables for RUN_DIR, in the terminal: rows per config, counts
    and drops per stage, grade histogram, reward_mean distribution, problems per source
    and category, decontamination, provenance, licences."""
    from fineproofs.cards.stats import print_stats

    print_stats(run_dir)
