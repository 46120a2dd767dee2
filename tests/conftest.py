"""Shared test setup: offline, quiet, and the embedded model converted once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

IMOBENCH = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "imobench"


@pytest.fixture(scope="session")
def imobench() -> Path:
    if not (IMOBENCH / "proofbench_v2.csv").exists():
        pytest.skip(f"IMO-Bench reference data not found at {IMOBENCH}")
    return IMOBENCH


@pytest.fixture(scope="session")
def embedded_engine():
    """The real embedded model (SmolLM2-135M-Instruct), loaded once for the session."""
    from fineproofs.engines.transformers_engine import TransformersEngine

    return TransformersEngine("embedded", batch_size=8)
