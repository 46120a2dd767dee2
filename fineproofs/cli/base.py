"""The CLI's one error map, as click command and group classes every command uses.

An expected error (:class:`~fineproofs.errors.FineproofsError`, or an operating-system
error on a path the user gave) prints one line on stderr and exits non-zero: 2 for
usage and configuration, 1 otherwise (``Submitted`` exits 0). Anything else is a bug
and keeps its traceback. Messages are redacted (no URL credentials, no keys).
"""

from __future__ import annotations

import click

from fineproofs.errors import FineproofsError, redact


def _fail(ctx: click.Context, message: str, code: int) -> None:
    click.echo(f"fineproofs: {redact(message)}", err=True)
    ctx.exit(code)


class _MapErrors:
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)  # type: ignore[misc]
        except FineproofsError as e:
            _fail(ctx, str(e), e.exit_code)
        except OSError as e:
            if e.filename is None:  # not about a path the user gave: a bug or a crash, keep the traceback
                raise
            _fail(ctx, f"{e.filename}: {e.strerror or e}", 1)


class Command(_MapErrors, click.Command):
    """A fineproofs command: expected errors become one line."""


class Group(_MapErrors, click.Group):
    """A fineproofs command group: its commands and subgroups map errors the same way."""

    command_class = Command
    group_class = type  # subgroups are of this class too
