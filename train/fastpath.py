"""GPU fast paths a config switches on, each with a checked fallback.

Two switches decide most of a long-context fine-tune's speed and memory on a GPU:

* **attention** (``model.attn_implementation``): a name or a preference list, the first
  one this machine can run wins. ``flash_attention_2`` / ``flash_attention_3`` need the
  ``flash-attn`` package (``flash_attn`` / ``flash_attn_interface``) and a CUDA GPU;
  ``sdpa_packed`` (:mod:`fineproofs.train.packed_attention`) needs only torch: PyTorch's
  fused attention run once per packed document, unmasked and causal, so PyTorch may use
  its own flash kernel and a row costs its documents' triangles, not the whole row's;
  ``flex_attention`` needs a CUDA GPU and a torch with ``torch.nn.attention.flex_attention``
  and compiles its kernel on the first step (on an H200 with torch 2.11 and transformers
  5.17, no step of the 4B paper SFT finished within 170 s, so the paper configs do not
  list it); ``sdpa`` and ``eager`` always run; ``org/name`` is a Hub kernel (the ``kernels``
  package, fetched on first use). Padding-free packing (TRL's BFD packing) is exact on
  every one of them: transformers reads the document boundaries off ``position_ids`` and
  gives sdpa/eager/flex a block-diagonal causal mask (``tests/test_train_fastpath.py``
  checks packed and unpacked losses agree). What a fallback costs is said in the log.
* **fused kernels** (``trainer.use_liger_kernel``): Liger's Triton kernels for the
  layers (RMSNorm, RoPE, SwiGLU), which save activation memory and time. Needs
  ``liger-kernel`` and a CUDA GPU; without them the switch is turned off with one
  warning, never a crash. The fused linear cross-entropy itself needs no switch: TRL
  (1.15 and later) projects through the LM head in tiles in both ``SFTTrainer`` and
  ``GRPOTrainer`` (its fused LM head), so the logits of a long sequence (with Qwen3's
  151,936-token vocabulary ~15 GB in bf16 for 49,152 tokens) are never materialised;
  TRL then keeps Liger's own cross-entropy off.

``pip install "fineproofs[gpu]"`` installs ``liger-kernel`` and ``kernels``;
``flash-attn`` builds against the local CUDA toolkit (``pip install flash-attn
--no-build-isolation``) where it installs at all.

Every switch is checked when a config loads (:func:`check_fast_paths`, which
``load_stage_config`` calls): an unknown attention name is a config error, and the
report says what this machine would run. ``fineproofs train check`` prints it.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, field

from fineproofs.config import ConfigError

log = logging.getLogger(__name__)

ATTENTION = ("flash_attention_3", "flash_attention_2", "sdpa_packed", "flex_attention", "sdpa", "eager")

# what falling back from a fast path costs, said once in the log
_COSTS = {
    "flash_attention_2": "the next choice runs; flash-attn's varlen kernel is the fastest for packed documents",
    "flash_attention_3": "FA3 is the fastest attention on Hopper; the next choice runs instead",
    "flex_attention": "the next choice runs",
    "sdpa_packed": "plain sdpa runs packed rows under a block-diagonal mask on its masked kernel, over the whole row "
    "(measured on an H200, 4B policy, 16k packing: 10 % MFU)",
    "liger": "unfused RMSNorm/RoPE/SwiGLU: more activation memory per token and a few percent slower steps",
}


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def attention_candidates(value: str | list[str] | None) -> list[str]:
    """The preference list of a ``model.attn_implementation`` value (validated)."""
    if value is None:
        return []
    names = [value] if isinstance(value, str) else list(value)
    if not names:
        raise ConfigError("model.attn_implementation: an empty list; name one of " + ", ".join(ATTENTION))
    for n in names:
        if not isinstance(n, str) or not (n in ATTENTION or _is_hub_kernel(n)):
            raise ConfigError(
                f"model.attn_implementation: unknown attention {n!r}; use one of {', '.join(ATTENTION)} "
                "or a Hub kernel `org/name` (the `kernels` package), or a list of them in order of preference"
            )
    return names


def _is_hub_kernel(name: str) -> bool:
    return isinstance(name, str) and name.count("/") == 1 and all(name.split("/"))


def attention_missing(name: str) -> str | None:
    """Why ``name`` cannot run here, or None when it can."""
    if name in ("sdpa", "eager", "sdpa_packed"):
        return None
    if not _has_cuda():
        return "no CUDA GPU visible"
    if name == "flash_attention_2" and not _has_module("flash_attn"):
        return "the flash-attn package is not installed (pip install flash-attn --no-build-isolation)"
    if name == "flash_attention_3" and not _has_module("flash_attn_interface"):
        return "FlashAttention-3 (flash_attn_interface, built from flash-attn's hopper/ directory) is not installed"
    if name == "flex_attention" and not _has_module("torch.nn.attention.flex_attention"):
        return "this torch has no flex_attention (torch >= 2.5 needed)"
    if _is_hub_kernel(name) and not _has_module("kernels"):
        return "the kernels package is not installed (pip install 'fineproofs[gpu]')"
    return None


@dataclass
class FastPathReport:
    """What a config asks for and what this machine will run."""

    attention_wanted: list[str] = field(default_factory=list)
    attention: str | None = None  # None: the model's own default
    liger_wanted: bool = False
    liger: bool = False
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        att = self.attention or "the model's default"
        wanted = " > ".join(self.attention_wanted) or "not set"
        out = [f"attention: {att} (asked: {wanted})"]
        out.append(
            f"fused linear cross-entropy (liger): {'on' if self.liger else 'off'}"
            + (" (asked)" if self.liger_wanted else "")
        )
        return out + [f"note: {n}" for n in self.notes]


def check_fast_paths(attn_value, trainer: dict, *, warn: bool = False) -> FastPathReport:
    """Validate the fast-path switches of a config and resolve them for this machine.

    Raises :class:`ConfigError` for a switch of the wrong type or an unknown attention;
    a switch this machine cannot honour becomes a note (logged when ``warn``), with what
    the fallback costs.
    """
    rep = FastPathReport(attention_wanted=attention_candidates(attn_value))
    for name in rep.attention_wanted:
        why = attention_missing(name)
        if why is None:
            rep.attention = name
            break
        cost = _COSTS.get(name)
        rep.notes.append(f"attention {name} unavailable: {why}" + (f"; cost: {cost}" if cost else ""))
    if rep.attention_wanted and rep.attention is None:
        rep.attention = "sdpa"
        rep.notes.append("no attention of the list runs here: falling back to sdpa")
    liger = trainer.get("use_liger_kernel", False)
    if not isinstance(liger, bool):
        raise ConfigError(f"trainer.use_liger_kernel: expected true or false, got {liger!r}")
    rep.liger_wanted = liger
    if liger:
        why = None
        if not _has_module("liger_kernel"):
            why = "liger-kernel is not installed (pip install 'fineproofs[gpu]')"
        elif not _has_cuda():
            why = "no CUDA GPU visible"
        rep.liger = why is None
        if why:
            rep.notes.append(f"use_liger_kernel turned off: {why}; cost: {_COSTS['liger']}")
    if warn:
        for n in rep.notes:
            log.warning("fast path: %s", n)
    return rep
