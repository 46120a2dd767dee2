"""Human grades given in the viewer: durable, append-only, exportable for calibration.

Grades live in ``RUN_DIR/human/grades.jsonl``, one JSON line per grade given
(``sample_key``, ``problem_id``, ``grade`` 0-7, ``note``, ``judge_score``, ``time``),
appended and fsynced before the viewer answers, so a grade survives a crash or a
restart. The latest line for a sample is its grade; earlier lines are its history.
A torn last line (a crash mid-write) is skipped on reading. Nothing here writes
anywhere else in the run directory, and never to the response store.

:func:`export_calibration` writes the graded samples in the calibration file format
(the columns of IMO-GradingBench: ``id, problem_id, problem, proof, human_grade,
grading_guidelines, reference_solution``), plus ``rubric`` and ``judge_grade``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from fineproofs import rundir
from fineproofs.errors import DataError

HUMAN_DIR = "human"
GRADES_FILE = "grades.jsonl"
MAX_NOTE = 4000
CALIBRATION_COLUMNS = (
    "id",
    "problem_id",
    "problem",
    "proof",
    "human_grade",
    "grading_guidelines",
    "reference_solution",
    "rubric",
    "judge_grade",
)


def grades_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / HUMAN_DIR / GRADES_FILE


def read_grades(path: str | Path) -> dict[str, dict[str, Any]]:
    """sample key -> its latest human grade."""
    latest: dict[str, dict[str, Any]] = {}
    for d in rundir.read_records(path, strict=False):  # a damaged line is skipped (and logged)
        if isinstance(d.get("sample_key"), str) and _valid_grade(d.get("grade")):
            latest[d["sample_key"]] = d
    return latest


def _valid_grade(g: Any) -> bool:
    return isinstance(g, int) and not isinstance(g, bool) and 0 <= g <= 7


class HumanGrades:
    """The grades file of one run directory, thread-safe."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self.latest = read_grades(self.path)

    def add(
        self, sample_key: str, problem_id: str, grade: Any, note: str = "", judge_score: int | None = None
    ) -> dict[str, Any]:
        """Append one grade (fsynced); returns the stored record. Raises DataError on a bad grade
        (none chosen included: a form saved without a choice never records a 0)."""
        if not str(grade).strip():
            raise DataError("no grade chosen: pick a grade from 0 to 7 before saving")
        try:
            g = int(str(grade).strip())
        except ValueError:
            raise DataError(f"grade must be a whole number from 0 to 7, got {grade!r}") from None
        if not _valid_grade(g):
            raise DataError(f"grade must be a whole number from 0 to 7, got {g}")
        rec = {
            "sample_key": sample_key,
            "problem_id": problem_id,
            "grade": g,
            "note": (note or "")[:MAX_NOTE],
            "judge_score": judge_score,
            "time": round(time.time(), 3),
        }
        line = json.dumps(rec, ensure_ascii=False) + "\n"
        with self._lock:
            new = not self.path.exists()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
            if new:
                _fsync_dir(self.path.parent)
            self.latest[sample_key] = rec
        return rec

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return dict(self.latest)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def calibration_rows(
    grades: dict[str, dict[str, Any]], context: Callable[[str], dict[str, Any] | None]
) -> Iterable[dict[str, Any]]:
    """One calibration row per human-graded sample still present in the run."""
    for key, g in sorted(grades.items()):
        ctx = context(key)
        if ctx is None:
            continue
        yield {
            "id": key,
            "problem_id": ctx["pid"],
            "problem": ctx["statement"],
            "proof": ctx["proof"],
            "human_grade": g["grade"],
            "grading_guidelines": ctx["rubric"],
            "reference_solution": ctx["reference_solution"],
            "rubric": ctx["rubric"],
            "judge_grade": ctx["score"],
        }


def disagreements(
    grades: dict[str, dict[str, Any]], context: Callable[[str], dict[str, Any] | None]
) -> list[dict[str, Any]]:
    """Samples whose judge grade differs from the human grade, largest gap first."""
    out = []
    for key, g in grades.items():
        ctx = context(key)
        if ctx is None or ctx["score"] is None or ctx["score"] == g["grade"]:
            continue
        out.append(
            {
                "key": key,
                "pid": ctx["pid"],
                "judge": ctx["score"],
                "human": g["grade"],
                "gap": g["grade"] - ctx["score"],
                "note": g.get("note", ""),
                "statement": ctx["statement"][:200],
            }
        )
    return sorted(out, key=lambda d: (-abs(d["gap"]), d["key"]))
