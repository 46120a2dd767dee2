"""``fineproofs view``: a local browser viewer of a run directory, with human grading.

Pages: overview (counts per stage and drops by reason from ``build.json``, the card's
plots), problems (search, filters, pagination), one problem (statement, reference
solution, structured rubric, every rollout / teacher proof with its grade, the judge's
replies, injection flags, finish reason, token counts; reasoning folded), quarantine,
and human grades (judge-vs-human disagreements, calibration export).

The run directory is only read; human grades go to ``RUN_DIR/human/grades.jsonl``
(:mod:`fineproofs.viewer.human`). The index the pages query is built once at start-up
in a temporary directory (:mod:`fineproofs.viewer.index`).

For the CLI::

    serve(run_dir, host="127.0.0.1", port=0, ready=lambda url: print(url))  # blocks until Ctrl-C

For tests::

    srv = make_server(run_dir)      # already serving in a background thread
    urlopen(srv.url + "problems")
    srv.shutdown()
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable
from pathlib import Path

from fineproofs.rundir import atomic_write
from fineproofs.viewer import human, queries
from fineproofs.viewer.server import Viewer, ViewerServer

__all__ = ["ViewerServer", "export_calibration", "make_server", "serve"]


def make_server(
    run_dir: str | Path,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    grades_file: str | Path | None = None,
    workdir: str | Path | None = None,
) -> ViewerServer:
    """Index ``run_dir`` and start serving it in a background thread; returns the server
    (``.url``, ``.shutdown()``). ``port=0`` picks a free port. ``grades_file`` defaults to
    ``RUN_DIR/human/grades.jsonl``; ``workdir`` is where the temporary index goes (the
    system's temp dir by default). Raises :class:`~fineproofs.errors.DataError` when
    ``run_dir`` holds no build output."""
    viewer = Viewer(Path(run_dir), Path(grades_file) if grades_file else None, Path(workdir) if workdir else None)
    try:
        return ViewerServer(viewer, host, port).start()
    except BaseException:
        viewer.close()
        raise


def serve(run_dir: Path, host: str = "127.0.0.1", port: int = 0, *, ready: Callable[[str], None] | None = None) -> None:
    """Serve ``run_dir`` until interrupted (Ctrl-C or SIGTERM); calls ``ready(url)`` once listening."""
    srv = make_server(run_dir, host, port)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM also removes the temporary index
    try:
        if ready is not None:
            ready(srv.url)
        while srv.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        srv.shutdown()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def export_calibration(run_dir: str | Path, out: str | Path) -> int:
    """Write the human grades of ``run_dir`` in the calibration file format to ``out``; returns the row count."""
    from fineproofs.viewer.index import RunIndex

    index = RunIndex(run_dir)
    try:
        grades = human.read_grades(human.grades_path(run_dir))
        rows = list(human.calibration_rows(grades, lambda k: queries.sample_context(index, k)))
    finally:
        index.close()
    with atomic_write(out) as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return len(rows)
