"""``sdpa_packed``: PyTorch's fused attention, one packed document at a time.

Padding-free packing (TRL's BFD) puts several documents back to back in one row and
restarts ``position_ids`` at each. With ``sdpa``, transformers keeps them apart with a
block-diagonal boolean mask over the whole row; an explicit mask rules out PyTorch's
flash kernel, so every layer runs the masked kernel over the full row length (at 16,384
tokens with ~3k-token documents, ~5x the attention work that is needed, measured at
~10 % MFU for a 4B policy on an H200). ``sdpa_packed`` reads the document boundaries off
``position_ids`` and calls ``scaled_dot_product_attention(is_causal=True)`` on each
document without a mask, so PyTorch may pick its flash kernel and the work is the sum of
the documents' own triangles. Needs nothing beyond torch (no flash-attn build, no
compilation).

Anything else (padded batches, generation with a KV cache) is plain masked sdpa, built
here from the 2-D padding mask: the implementation is safe for every call a trainer or
``generate`` makes, and equal to ``sdpa`` wherever both apply
(``tests/test_train_fastpath.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

NAME = "sdpa_packed"


def _doc_bounds(position_ids: torch.Tensor) -> list[int] | None:
    """Start offsets (plus the end) of the documents of a single packed row, or None when
    the row is one document."""
    pos = position_ids[0]
    starts = torch.nonzero(pos[1:] <= pos[:-1]).flatten() + 1
    if starts.numel() == 0:
        return None
    return [0, *starts.tolist(), pos.numel()]


def _expand_kv(module, key, value):
    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    return key, value


def _mask_from_padding(mask2d: torch.Tensor, q_len: int, k_len: int) -> torch.Tensor:
    """(batch, 1, q, k) boolean: causal (queries are the last ``q_len`` keys) and not padding.
    A query row with nothing to attend to (a left pad) attends to itself, so the kernel
    never sees an empty row; its output is a pad's and is ignored."""
    dev = mask2d.device
    if mask2d.shape[1] < k_len:  # cache slots not written yet (a static cache) are masked out
        mask2d = F.pad(mask2d.bool(), (0, k_len - mask2d.shape[1]), value=False)
    q_pos = torch.arange(k_len - q_len, k_len, device=dev)
    k_pos = torch.arange(k_len, device=dev)
    causal = k_pos[None, :] <= q_pos[:, None]
    mask = causal[None, None] & mask2d[:, None, None, :].bool()
    empty = ~mask.any(dim=-1, keepdim=True)
    if empty.any():
        mask = mask | (empty & (k_pos[None, None, None, :] == q_pos[None, None, :, None]))
    return mask


def packed_sdpa_attention(
    module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs,
):
    """transformers attention interface: (batch, heads, seq, dim) in, (batch, seq, heads, dim) out."""
    if kwargs.get("sliding_window") is not None:
        raise ValueError("sdpa_packed does not implement sliding-window attention; use sdpa for this model")
    key, value = _expand_kv(module, key, value)
    q_len, k_len = query.shape[2], key.shape[2]
    drop = dropout if module.training else 0.0
    position_ids = kwargs.get("position_ids")
    mask4d = None
    if attention_mask is not None and attention_mask.ndim == 4:  # boolean or additive: sdpa takes either
        mask4d = attention_mask
    elif attention_mask is not None and not bool(attention_mask.bool().all()):
        mask4d = _mask_from_padding(attention_mask, q_len, k_len)
    if mask4d is None and q_len == k_len and query.shape[0] == 1 and position_ids is not None:
        bounds = _doc_bounds(position_ids)
        if bounds is not None:
            outs = [
                F.scaled_dot_product_attention(
                    query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], dropout_p=drop, is_causal=True, scale=scaling
                )
                for a, b in zip(bounds[:-1], bounds[1:])
            ]
            return torch.cat(outs, dim=2).transpose(1, 2).contiguous(), None
    if mask4d is None and q_len != k_len and q_len > 1:
        ones = torch.ones(query.shape[0], k_len, dtype=torch.bool, device=query.device)
        mask4d = _mask_from_padding(ones, q_len, k_len)
    out = F.scaled_dot_product_attention(
        query,
        key,
        value,
        attn_mask=mask4d,
        dropout_p=drop,
        is_causal=mask4d is None and q_len == k_len and q_len > 1,
        scale=scaling,
    )
    return out.transpose(1, 2).contiguous(), None


def _padding_mask(*args, attention_mask=None, kv_length=None, **kwargs):
    """Mask hook: hand the attention the 2-D padding mask (or None) and nothing bigger."""
    if attention_mask is None or attention_mask.ndim != 2:
        return attention_mask
    if kv_length is not None:
        attention_mask = attention_mask[:, -kv_length:]
    if (kv_length is None or attention_mask.shape[1] == kv_length) and bool(attention_mask.bool().all()):
        return None
    return attention_mask


def register() -> None:
    """Make ``attn_implementation="sdpa_packed"`` known to transformers (idempotent)."""
    from transformers import AttentionInterface

    AttentionInterface.register(NAME, packed_sdpa_attention)
    try:
        from transformers.masking_utils import AttentionMaskInterface
    except ImportError:  # older transformers: no mask hook, the attention gets no mask
        return
    AttentionMaskInterface.register(NAME, _padding_mask)
