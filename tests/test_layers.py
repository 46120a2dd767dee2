"""The floors contract (import-linter, ``pyproject.toml``) holds, and it bites: a
deliberate ``train -> pipelines`` import makes ``lint-imports`` fail.

import-linter reads the package from disk, so both checks run on a wheel-layout
install of the project (``pip install --target``), as ``.ci/lint`` does."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    if shutil.which("lint-imports") is None and not (Path(sys.executable).parent / "lint-imports").exists():
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    return target


def _lint(site: Path, cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "lint-imports"
    return subprocess.run(
        [str(exe), "--no-cache", str(ROOT / "pyproject.toml")],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
    )


def test_floors_hold(site, tmp_path):
    r = _lint(site, tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "BROKEN" not in r.stdout


def test_train_importing_pipelines_breaks_the_contract(site, tmp_path):
    bad = tmp_path / "site"
    shutil.copytree(site, bad)
    victim = bad / "fineproofs" / "train" / "common.py"
    victim.write_text(victim.read_text() + "\nfrom fineproofs.pipelines.build import Build  # noqa\n")
    r = _lint(bad, tmp_path)
    assert r.returncode != 0
    assert "fineproofs.train.common -> fineproofs.pipelines.build" in r.stdout
