"""Accelerate launch files for a given cluster shape, from the shipped ones.

The shipped ``accelerate_zero3.yaml`` / ``accelerate_fsdp.yaml`` describe one node of 8
GPUs, and the ZeRO-3 file names ``deepspeed_zero3.json`` by a path accelerate resolves
from the working directory. :func:`write_launch_config` writes a copy for ``nodes`` x
``gpus_per_node`` with the DeepSpeed file's absolute path, so ``accelerate launch`` works
from any directory and on every node of a Slurm job (``fineproofs train launch-config``).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from fineproofs.config import ConfigError

KINDS = {"zero3": "accelerate_zero3.yaml", "fsdp": "accelerate_fsdp.yaml"}


def launch_config(kind: str, nodes: int = 1, gpus_per_node: int = 8) -> dict:
    """The accelerate config mapping for ``kind`` (``zero3`` or ``fsdp``) on this shape."""
    from fineproofs.train import config_path

    if kind not in KINDS:
        raise ConfigError(f"unknown launch kind {kind!r}; use one of {sorted(KINDS)}")
    if nodes < 1 or gpus_per_node < 1:
        raise ConfigError("nodes and gpus_per_node must be at least 1")
    cfg = yaml.safe_load(config_path(KINDS[kind]).read_text())
    cfg["num_machines"] = nodes
    cfg["num_processes"] = nodes * gpus_per_node
    if nodes > 1:
        cfg["rdzv_backend"] = "c10d"  # rendezvous over the network; rank and address come from the launcher
        cfg["same_network"] = True
    ds = cfg.get("deepspeed_config", {})
    if "deepspeed_config_file" in ds:
        ds["deepspeed_config_file"] = str(config_path(ds["deepspeed_config_file"]).resolve())
    return cfg


def write_launch_config(kind: str, out: str | Path, nodes: int = 1, gpus_per_node: int = 8) -> Path:
    cfg = launch_config(kind, nodes, gpus_per_node)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    head = f"# fineproofs train launch-config {kind} --nodes {nodes} --gpus-per-node {gpus_per_node}\n"
    path.write_text(head + yaml.safe_dump(cfg, sort_keys=False))
    return path
