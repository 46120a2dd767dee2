"""Shared test setup: offline, quiet, and the embedded model converted once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: spinning OpenMP threads stall a busy box
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


@pytest.fixture(autouse=True)
def one_thread(request):
    """Training tests on tiny models: one intra-op thread (spin-waiting OpenMP threads
    on a shared 2-core box cost up to 100x); other tests keep torch's default."""
    if not request.node.module.__name__.split(".")[-1].startswith(("test_train_", "test_eval")):
        yield
        return
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """A tiny random Llama with a tokenizer trained on the fly (tests/tinykit.py)."""
    from tinykit import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory):
    """A synthetic build output with the exact FineProofs layout and features."""
    from tinykit import write_synthetic_run

    return write_synthetic_run(tmp_path_factory.mktemp("run"))
