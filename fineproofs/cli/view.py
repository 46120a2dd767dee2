"""``fineproofs view``: the local browser viewer of a run directory."""

from __future__ import annotations

from pathlib import Path

import click

from fineproofs import rundir
from fineproofs.cli.base import Command

# what a run directory holds once a command wrote to it
_RUN_PARTS = (rundir.MARKER, rundir.MANIFEST, "problems", rundir.STAGES, rundir.QUARANTINE, rundir.DATA)


def _run_dir(ctx: click.Context, param: click.Parameter, value: Path) -> Path:
    if not any((value / part).exists() for part in _RUN_PARTS):
        raise click.BadParameter(
            f"{str(value)!r} holds no build output (build.json, problems/, stages/, data/): "
            "give the run directory of a `fineproofs build`",
            ctx,
            param,
        )
    return value


@click.command("view", cls=Command)
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), callback=_run_dir)
@click.option(
    "--port", type=click.IntRange(0, 65535), default=0, show_default=True, help="Port to listen on (0: a free one)."
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind; anything but loopback exposes the data (and grading) to the network.",
)
def view(run_dir: Path, port: int, host: str) -> None:
    """Browse RUN_DIR in a local web app: counts and drops, problems (search, filters),
    each problem's rubric, proofs, grades and judge replies, the quarantine; grade proofs
    by hand (kept in RUN_DIR/human/, exportable for `fineproofs calibrate`).
    Read-only for everything the build wrote. Ctrl-C stops it."""
    from fineproofs.viewer import serve

    if host not in ("127.0.0.1", "localhost", "::1"):
        click.secho(
            f"warning: serving on {host}: anyone who can reach it can read the data and grade", fg="yellow", err=True
        )
    serve(run_dir, host=host, port=port, ready=lambda url: click.echo(f"fineproofs view: {url}  (Ctrl-C stops)"))
