"""Shared test setup: offline, quiet, the embedded model converted once per session, and
the memory the suite's one process holds kept down between test files (the suite's peak is
measured with bench/bench_suite_memory.py)."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: spinning OpenMP threads stall a busy box
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _glibc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


_LIBC = _glibc()
if _LIBC is not None:
    # glibc raises its mmap threshold to the size of each large block freed (up to 32 MiB
    # on 64 bits), after which tensors, activations and safetensors' copies come from the
    # heap and stay mapped once freed: after the in-process SFT of SmolLM2 the process kept
    # 1.3 GiB it no longer used. A fixed threshold (the default's starting value) keeps
    # every block over 128 KiB in a mapping of its own, handed back when freed. The test
    # process only: the servers and commands the tests start keep glibc's defaults.
    _LIBC.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD


def release_memory() -> None:
    """Collect cycles (a trainer, a model and its engine hold references to each other),
    then hand freed heap pages back to the system."""
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


IMOBENCH = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "imobench"


@pytest.fixture(scope="session")
def imobench() -> Path:
    if not (IMOBENCH / "proofbench_v2.csv").exists():
        pytest.skip(f"IMO-Bench reference data not found at {IMOBENCH}")
    return IMOBENCH


@pytest.fixture(scope="module")
def embedded_engine():
    """The real embedded model (SmolLM2-135M-Instruct), loaded once per module that uses it
    (about 2 s from the converted cache): a session-wide copy would stay resident beside
    the trainers' and the servers' models for the rest of the run."""
    from fineproofs.engines.transformers_engine import TransformersEngine

    with TransformersEngine("embedded", batch_size=8) as engine:
        yield engine


@pytest.fixture(scope="module", autouse=True)
def _release_memory_between_modules():
    """What the previous test file left (models, trainers, datasets, now unreferenced: pytest
    lets go of a test's fixture values after its teardown) is freed before this one starts."""
    release_memory()


@pytest.fixture(autouse=True)
def _release_memory_before_slow(request):
    """Likewise before each slow test (a real model, a trainer or a server): what the tests
    before it in the same file left is freed first."""
    if request.node.get_closest_marker("slow"):
        release_memory()


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
