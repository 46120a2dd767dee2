"""The CLI's one error map, as click command and group classes every command uses.

An expected error (:class:`~fineproofs.errors.FineproofsError`, or an operating-system
error on a path the user gave) prints one line on stderr and exits non-zero: 2 for
usage and configuration, 1 otherwise (``Submitted`` exits 0). Anything else is a bug
and keeps its traceback. Messages are redacted (no URL credentials, no keys).
"""

from __future__ import annotations

import errno
import os
import sqlite3
import stat

import click

from fineproofs.errors import FineproofsError, redact


def _fail(ctx: click.Context, message: str, code: int) -> None:
    click.echo(f"fineproofs: {redact(message)}", err=True)
    ctx.exit(code)


class UserPath(click.Path):
    """A path the user gives (every ``click.Path`` of a fineproofs command becomes one):
    an empty or blank value is refused (``Path('')`` is the current directory, and would
    quietly read or write there), and so is a FIFO, socket or device where a file goes
    (reading one hangs or never ends; replacing one with an output file destroys it)."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value.strip():
            self.fail(f"{value!r} is empty: give a file or directory name", param, ctx)
        rv = super().convert(value, param, ctx)
        if not self.dir_okay and not (isinstance(value, str) and value == "-" and self.allow_dash):
            try:
                mode = os.stat(rv).st_mode
            except OSError:
                return rv  # missing: click's own `exists` check decides
            if not stat.S_ISREG(mode):
                self.fail(f"{os.fsdecode(rv)!r} is not a regular file (a FIFO, socket or device?)", param, ctx)
        return rv


def _user_paths(params: list[click.Parameter]) -> None:
    for p in params:
        if type(p.type) is click.Path:
            typed = UserPath.__new__(UserPath)
            typed.__dict__.update(p.type.__dict__)
            p.type = typed


class _MapErrors:
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]
        _user_paths(self.params)  # type: ignore[attr-defined]

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)  # type: ignore[misc]
        except FineproofsError as e:
            _fail(ctx, str(e), e.exit_code)
        except KeyboardInterrupt:
            _fail(ctx, INTERRUPTED, 130)
        except sqlite3.OperationalError as e:
            if not disk_full(e):
                raise
            _fail(ctx, DISK_FULL.format(what="the response store (store.sqlite)"), 1)
        except OSError as e:
            if disk_full(e):
                _fail(ctx, DISK_FULL.format(what=e.filename or "a file"), 1)
            if e.filename is None:  # not about a path the user gave: a bug or a crash, keep the traceback
                raise
            _fail(ctx, f"{e.filename}: {e.strerror or e}", 1)


INTERRUPTED = (
    "interrupted: everything finished so far is kept (every stored completion, every written file; nothing "
    "half-written is left) - re-run the same command to resume from there"
)

DISK_FULL = (
    "disk full while writing {what}: free space on the output directory's disk (a build needs about 3 times "
    "its finished run directory at its peak), then re-run the same command: every completion stored so far is "
    "kept, and half-written files were removed"
)


def disk_full(e: BaseException) -> bool:
    """An error that means the disk (or the user's quota) is full: ENOSPC/EDQUOT, SQLite's
    "database or disk is full", pyarrow's "No space left on device"."""
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(e)
    return "disk is full" in text or "No space left on device" in text or "Disk quota exceeded" in text


class Command(_MapErrors, click.Command):
    """A fineproofs command: expected errors become one line."""


class Group(_MapErrors, click.Group):
    """A fineproofs command group: its commands and subgroups map errors the same way."""

    command_class = Command
    group_class = type  # subgroups are of this class too


def profile_option(name: str = "profile"):
    """``--profile/-p NAME|FILE``, the same on every command that reads a profile."""
    from fineproofs.config import bundled_profiles

    return click.option("--profile", "-p", name, default="embedded", show_default=True,
                        help=f"Bundled profile ({', '.join(bundled_profiles())}) or a YAML file.")  # fmt: skip
