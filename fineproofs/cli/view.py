"""``fineproofs view``: the local browser viewer of a run directory."""

from __future__ import annotations

from pathlib import Path

import click

from fineproofs.cli.base import Command


@click.command("view", cls=Command)
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port to listen on (0: a free one).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; anything but loopback exposes the data (and grading) to the network.")
def view(run_dir: Path, port: int, host: str) -> None:
    """Browse RUN_DIR in a local web app: counts and drops, problems (search, filters),
    each problem's rubric, proofs, grades and judge replies, the quarantine; grade proofs
    by hand (kept in RUN_DIR/human/, exportable for `fineproofs calibrate`).
    Read-only for everything the build wrote. Ctrl-C stops it."""
    from fineproofs.viewer import serve

    if host not in ("127.0.0.1", "localhost", "::1"):
        click.secho(f"warning: serving on {host}: anyone who can reach it can read the data and grade", fg="yellow",
                    err=True)
    serve(run_dir, host=host, port=port, ready=lambda url: click.echo(f"fineproofs view: {url}  (Ctrl-C stops)"))
