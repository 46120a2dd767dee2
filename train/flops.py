"""Model FLOPs utilisation (MFU) of a training run, the way the field reports it.

``MFU = achieved model FLOP/s / the GPU's dense bf16 peak``, where a trained token costs
``6 N`` FLOPs (forward 2N + backward 4N over the N non-embedding-lookup parameters) and,
counting attention, ``6 N + 6 L h d s_eff`` more: per layer QK^T and AV are ``2 h d s``
multiply-adds each per token over the ``s`` keys it sees, x3 for the backward; with a
causal mask a token sees half its document on average, so ``s_eff = s / 2``. Activation
recomputation (gradient checkpointing) is work the GPU does but is not counted, as usual:
MFU measures useful work. Peak figures are the vendor's dense (no sparsity) bf16 numbers.
"""

from __future__ import annotations

# dense bf16 tensor-core peak per GPU, FLOP/s (vendor spec sheets, SXM parts)
PEAK_BF16 = {
    "H200": 989e12,
    "H100": 989e12,
    "H800": 989e12,
    "GH200": 989e12,
    "B200": 2250e12,
    "A100": 312e12,
    "A800": 312e12,
    "L40S": 362e12,
    "A10G": 70e12,
}


def peak_flops(device_name: str) -> float | None:
    """The dense bf16 peak of a GPU from its name (``torch.cuda.get_device_name``), or None."""
    name = device_name.upper()
    for key in sorted(PEAK_BF16, key=len, reverse=True):
        if key in name:
            return PEAK_BF16[key]
    return None


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def flops_per_token(model_config, n_params: int, doc_len: float, *, attention: bool = True) -> float:
    """Training FLOPs of one token: ``6 N`` plus, with ``attention``, causal attention over
    documents of ``doc_len`` tokens (the mean length of the packed documents, or the
    sequence length when nothing is packed)."""
    flops = 6.0 * n_params
    if attention:
        cfg = model_config.get_text_config() if hasattr(model_config, "get_text_config") else model_config
        heads = cfg.num_attention_heads
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
        flops += 6.0 * cfg.num_hidden_layers * heads * head_dim * doc_len  # 12 L h d (s/2)
    return flops


def mfu(tokens_per_s: float, flops_token: float, peak: float | None) -> float | None:
    if not peak or tokens_per_s <= 0:
        return None
    return tokens_per_s * flops_token / peak
