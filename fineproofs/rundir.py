"""The run directory: its layout, its ownership marker, and the one atomic-write helper.

Every file fineproofs writes is written to a temporary sibling and renamed into
place (:func:`atomic_write`), so a crash never leaves a half-written file and a
reader never sees one. A run directory carries a marker file
(:data:`MARKER`); commands refuse to write into a non-empty directory without it,
so nothing a user keeps there is ever touched.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from fineproofs.errors import ConfigError, DataError
from fineproofs.records import (
    CategoryRecord,
    Difficulty,
    Grade,
    Problem,
    ProofSample,
    RubricRecord,
    ScreenRecord,
)

log = logging.getLogger(__name__)

MARKER = ".fineproofs"

# layout, relative to the run directory
CARD = "README.md"
PROFILE = "profile.yaml"
STORE = "store.sqlite"
MANIFEST = "build.json"
PROBLEMS = "problems/problems.jsonl"
QUARANTINE = "quarantine"
STAGES = "stages"
DATA = "data"
LOCK = ".lock"  # held by the one process writing the directory (its pid and command inside)
LLM_QUARANTINE = f"{QUARANTINE}/llm.jsonl"  # what the LLM stages could not produce, with reasons
SHARDS = "shards"
WORK = "work"  # ingest's datatrove outputs
LOGS = "logs"
REPORTS = "reports"
INGEST_REPORT = f"{REPORTS}/ingest.json"  # ingest's counts, drops and decontamination report
CARD_DATA = "card_data.json"


# ---------------------------------------------------------------------------
# the stage files: one registry from stage name to file and record type
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StageFile:
    """A stage's file in the run directory and the record type of its lines."""

    name: str
    record: type

    @property
    def filename(self) -> str:
        return f"{self.name}.jsonl"

    @property
    def file(self) -> str:
        """Relative to the run directory (or a shard's directory)."""
        return f"{STAGES}/{self.filename}"

    def path(self, work_dir: str | Path) -> Path:
        return Path(work_dir) / self.file

    def read(self, stages_dir: str | Path, *, strict: bool = True, offsets: bool = False) -> Iterator[Any]:
        """The stage's records in the ``stages/`` folder given (none when the stage never
        ran there); with ``offsets``, ``(byte offset, byte length, record)``."""
        for x in read_records(Path(stages_dir) / self.filename, strict=strict, offsets=offsets):
            yield (x[0], x[1], self._typed(x[2])) if offsets else self._typed(x)

    def _typed(self, d: dict[str, Any]) -> Any:
        return d if self.record is dict else self.record.from_dict(d)


STAGE_FILES: dict[str, StageFile] = {
    s.name: s
    for s in (
        StageFile("problem_filter", ScreenRecord),
        StageFile("rubrics", RubricRecord),
        StageFile("rollouts", ProofSample),
        StageFile("rollout_grades", Grade),
        StageFile("difficulty", Difficulty),
        StageFile("category", CategoryRecord),
        StageFile("distill", ProofSample),
        StageFile("proof_grades", Grade),
    )
}

# (samples, their grades): the proof samples of a build and the stage grading them
SAMPLE_STAGES = (("rollouts", "rollout_grades"), ("distill", "proof_grades"))


def stage(name: str) -> StageFile:
    """The stage file of ``name``: the registered one, else ``stages/<name>.jsonl`` of plain
    dicts (a stage nobody registered is written and read, untyped)."""
    return STAGE_FILES.get(name) or StageFile(name, dict)


def register_stage(name: str, record: type) -> StageFile:
    """Add a stage to :data:`STAGE_FILES` (a user's own stage): its file is ``stages/<name>.jsonl``."""
    STAGE_FILES[name] = StageFile(name, record)
    return STAGE_FILES[name]


# ---------------------------------------------------------------------------
# the one reader of run-directory JSONL
# ---------------------------------------------------------------------------


class Records:
    """The JSON object lines of ``path``, read lazily (a missing file has none).

    ``strict``: a line that is not a JSON object raises :class:`DataError` naming
    ``file:line``; otherwise it is skipped and counted in :attr:`skipped` (logged once the
    file is read). With ``offsets`` each item is ``(byte offset, byte length, record)``,
    so a reader can come back for one line without holding the file."""

    def __init__(self, path: str | Path, *, strict: bool = True, offsets: bool = False):
        self.path = Path(path)
        self.strict = strict
        self.offsets = offsets
        self.skipped = 0

    def __iter__(self) -> Iterator[Any]:
        if not self.path.exists():
            return
        with open(self.path, "rb") as f:
            pos = 0
            for i, line in enumerate(f, 1):
                at, pos = pos, pos + len(line)
                if not line.strip():
                    continue
                try:
                    d = json.loads(line)
                    if not isinstance(d, dict):
                        raise ValueError(f"a JSON {type(d).__name__}, not an object")
                except ValueError as e:
                    if self.strict:
                        raise DataError(f"{self.path}:{i} is damaged ({e}); re-run the build to rewrite it") from e
                    self.skipped += 1
                    continue
                yield (at, len(line), d) if self.offsets else d
        if self.skipped:
            log.warning("%s: skipped %d damaged line(s)", self.path, self.skipped)


def read_records(path: str | Path, *, strict: bool = True, offsets: bool = False) -> Records:
    """The records of one run-directory JSONL file (see :class:`Records`)."""
    return Records(path, strict=strict, offsets=offsets)


def read_problems(path: str | Path, *, strict: bool = True) -> Iterator[Problem]:
    """The ingested problem set: ``problems/problems.jsonl`` of the run directory given, or
    the ``.jsonl`` file given."""
    path = Path(path)
    for d in read_records(path if path.suffix == ".jsonl" else path / PROBLEMS, strict=strict):
        yield Problem.from_dict(d)


def read_quarantine(run_dir: str | Path, *, strict: bool = False) -> Records:
    """What the LLM stages quarantined (``quarantine/llm.jsonl``): ``{"stage", key, "reason"}``."""
    return read_records(Path(run_dir) / LLM_QUARANTINE, strict=strict)


def read_at(path: str | Path, offset: int) -> dict[str, Any]:
    """The record on the line at byte ``offset`` of ``path`` (an offset :class:`Records`
    gave): a damaged line raises :class:`DataError`."""
    with open(path, "rb") as f:
        f.seek(offset)
        line = f.readline()
    try:
        d = json.loads(line)
    except ValueError as e:
        raise DataError(f"{path} at byte {offset} is damaged ({e}); re-run the build to rewrite it") from e
    if not isinstance(d, dict):
        raise DataError(f"{path} at byte {offset} is damaged (not a JSON object); re-run the build to rewrite it")
    return d


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The build manifest (``build.json`` of a run directory or a shard's), or another JSON
    object file of the run directory (``card_data.json``, ``reports/ingest.json``): a
    missing file raises ``FileNotFoundError``, a damaged one :class:`DataError`."""
    path = Path(path)
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise DataError(f"{path} is damaged ({e}); re-run the build to rewrite it") from e
    if not isinstance(m, dict):
        raise DataError(f"{path} is damaged (not a JSON object); re-run the build to rewrite it")
    return m


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on success it replaces ``path``
    (``os.replace``, atomic on POSIX), on error it is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | Path, text: str) -> None:
    with atomic_write(path) as f:
        f.write(text)


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write ``rows`` as JSON lines, atomically; returns how many."""
    n = 0
    with atomic_write(path) as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
            n += 1
    return n


def claim(path: str | Path, *, what: str = "output") -> Path:
    """Make ``path`` a fineproofs run directory, or refuse.

    An empty or missing directory is created and marked; a directory already marked
    is reused; a non-empty directory without the marker belongs to the user and is
    refused with one line (:class:`ConfigError`)."""
    path = Path(path)
    if str(path).strip() == "":
        raise ConfigError(f"--{what} is empty: give a directory name")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} {path} exists and is not a directory")
    marker = path / MARKER
    if path.is_dir() and not owned(path) and any(path.iterdir()):
        raise ConfigError(
            f"{what} {path} is not empty and was not created by fineproofs: "
            "choose a new or empty directory (nothing in it was touched)"
        )
    path.mkdir(parents=True, exist_ok=True)
    if not marker.exists():
        marker.write_text("This directory was created by fineproofs; it may remove what it wrote here.\n")
    return path


@contextlib.contextmanager
def locked(path: str | Path) -> Iterator[Path]:
    """Hold ``path``'s writer lock (``flock`` on :data:`LOCK`, released when the process
    ends, however it ends), or refuse in one line naming the process that holds it."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    lock = path / LOCK
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise DataError(f"{lock} is a symbolic link: remove it (fineproofs never writes through one)") from None
        raise
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 1000, 0).decode("utf-8", "replace").strip() or "another process"
            raise DataError(
                f"{path} is being written by {holder}: wait for it to finish, or use another output "
                "directory (nothing was touched)"
            ) from None
        os.ftruncate(fd, 0)
        command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300] if sys.argv else "python"
        os.pwrite(fd, f"pid {os.getpid()} ({command})\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock


def remove_stale_tmp(path: str | Path, skip: tuple[str, ...] = ("shards",)) -> int:
    """Remove the temporary files a killed writer left under ``path`` (``.NAME.*.tmp`` of
    :func:`atomic_write`, ``*.parquet.tmp`` of the split writer); ``skip``: top-level
    folders other processes write (the shards, each cleaned by its own writer). Call it
    holding :func:`locked`, so no live writer's file is touched. Returns how many."""
    path = Path(path)
    n = 0
    for p in path.rglob("*.tmp"):
        rel = p.relative_to(path).parts
        if rel[0] in skip or p.is_symlink() or not p.is_file():
            continue
        if (p.name.startswith(".") and p.name.count(".") >= 3) or p.name.endswith(".parquet.tmp"):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                n += 1
    return n


def check_split(path: str | Path, split: str) -> None:
    """Refuse to build ``split`` into a run directory that holds the other split: its data,
    card and counts would be mixed with this one's (build each split into its own directory)."""
    try:
        other = read_manifest(Path(path) / MANIFEST).get("split")
    except (OSError, DataError):
        return  # no finished build here (or a damaged manifest, which the build rewrites)
    if other and other != split:
        raise ConfigError(
            f"{path} holds a build of the {other} split: build the {split} split into another output directory "
            f"(e.g. --output fineproofs-{split}); nothing was touched"
        )


# what a run directory written before the marker existed always holds
_LEGACY = (f"{WORK}/fingerprint",)


def owned(path: str | Path) -> bool:
    """Whether fineproofs made ``path`` (its marker, or an older run's own files)."""
    path = Path(path)
    return (path / MARKER).exists() or any((path / f).is_file() for f in _LEGACY)
