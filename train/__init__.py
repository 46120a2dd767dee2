"""QED-Nano's three training stages and evaluation, on TRL (``fineproofs.train``).

* :mod:`fineproofs.train.sft`: SFT on FineProofs-SFT ``messages`` (TRL ``SFTTrainer``).
* :mod:`fineproofs.train.rl`: GRPO with the rubric-judge reward (TRL ``GRPOTrainer``).
* :mod:`fineproofs.train.rc`: GRPO over reasoning-cache states (``rollout_func``).
* :mod:`fineproofs.train.evaluate`: IMO-ProofBench, single pass and with the reasoning cache.

Configs (typed, :mod:`fineproofs.train.config`) and accelerate / DeepSpeed / FSDP
launch files ship in ``fineproofs/train/configs/``; see ``train/README.md``. Heavy
modules (torch, trl) load only when a stage runs.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def config_path(name: str) -> Path:
    """Filesystem path of a shipped config file (e.g. ``accelerate_zero3.yaml``)."""
    p = resources.files("fineproofs.train").joinpath("configs", name)
    if not p.is_file():
        raise FileNotFoundError(f"no shipped config {name!r} in fineproofs/train/configs")
    return Path(str(p))
