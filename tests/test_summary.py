"""The build's closing summary and `fineproofs status` on an 80-column terminal: no stage
name cut (`grade_j…`), every line within 80 columns, and the judge's calibration figures
in the summary (0 printed as 0.000, never -0.000)."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

from rich.console import Console

from fineproofs.cli import summary

STAGES = ["ingested", "decontaminated", "problem_filter", "rubrics", "rollouts", "rollout_grades", "difficulty"]


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=80, force_terminal=False, color_system=None), out


def _result(tmp_path: Path, calibration: dict) -> SimpleNamespace:
    return SimpleNamespace(
        split="rl",
        counts=dict.fromkeys(STAGES, 12),
        dropped={
            "rubrics": {"invalid_rubric": 2, "engine_failure": 1},
            "rollout_grades": {f"unparseable_reason_number_{i}": i for i in range(8)},
        },
        decontaminated=False,
        rows={"default": 10},
        generated=120,
        cached=0,
        seconds=498.2,
        out_dir=tmp_path,
        card=tmp_path / "README.md",
        calibration=calibration,
    )


def test_build_summary_fits_80_columns_and_shows_calibration(tmp_path):
    console, out = _console()
    judge = {"role": "judge", "n": 6, "n_rows": 6, "mae": 3.75, "qwk": -0.28, "pass_accuracy": 0.5,
             "parse_failure_rate": -0.0, "max_chars": 4000}  # fmt: skip
    summary.print_build_summary(_result(tmp_path, {"judge": judge, "grader": {"skipped": "no file"}}), console)
    text = out.getvalue()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in text
    for stage in STAGES[2:]:
        assert any(line.startswith(f"│ {stage} ") for line in lines), stage
    assert "decontaminated (skipped: no benchmarks)" in text
    text = " ".join(text.split())  # the console wraps long lines at 80 columns
    assert "judge calibration against human grades: 6 of 6 proofs graded, proofs over 4000 chars left out: " in text
    assert "MAE 3.750, QWK -0.280, pass/fail accuracy 50.0 %, parse failures 0.0 %" in text
    assert "grader calibration against human grades: skipped (no file)" in text


def test_status_table_fits_80_columns(tmp_path, monkeypatch):
    (tmp_path / "store.sqlite").write_bytes(b"")
    rows = [
        {"stage": s, "done": 1234, "failed": 5, "failed_by_reason": {"unparseable": 3, "engine_failure": 2},
         "pending": 0, "prompt_tokens": 123456789, "completion_tokens": 98765432, "cost": 0.0}
        for s in ("rubrics", "rollouts", "grade_judge", "calibrate_judge")
    ]  # fmt: skip
    monkeypatch.setattr(summary, "_store_summary", lambda path: rows)
    console, out = _console()
    summary.print_status(tmp_path, console)
    text = out.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text
    for stage in ("rubrics", "rollouts", "grade_judge", "calibrate_judge"):
        assert f"│ {stage} " in text
    header = text.split("┡", 1)[0]
    for word in ("done", "failed", "pending", "prompt", "output", "tokens", "cost"):
        assert f" {word} " in header, word  # no header word split across lines
    assert "123456789" in text and "98765432" in text  # numbers whole
    cells = "".join(line.split("│")[3] for line in text.splitlines() if line.count("│") > 3)
    assert "5(unparseable:3,engine_failure:2)" in cells.replace(" ", "")  # the reasons, folded in their cell
