"""Attention behind a registry with one fixed signature, so chapters swap in sparse, quantized or
index-based attention without touching the model:

    fn(q, k, v, *, scale: float, layer: int) -> out
    q (B, H, T, Dk), k (B, Hk, S, Dk), v (B, Hv, S, Dv)  ->  out (B, H, T, Dv)

Attention is causal with the queries at the *last* T of the S key positions (query t sits at
absolute position S - T + t), which covers prefill (T = S), chunked prefill and decode (T = 1).
Query head h reads key head h // (H / Hk) and value head h // (H / Hv): GQA when Hk = Hv < H,
Sigma's DiffQKV when Hk != Hv. `layer` lets a stateful method (a gate, a quantizer) keep one state
per layer. Glossary: B batch, H query heads, Hk/Hv key/value heads, G = H / Hkv group size,
T query length, S key length, D head dim.

`use_in_transformers(model, name)` registers a function with transformers' AttentionInterface and
switches a loaded transformers model to it: no model code is forked and no weights change.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..errors import BookError

AttentionFn = Callable[..., torch.Tensor]


def expand_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(B, Hkv, S, D) -> (B, H, S, D): each KV head repeated for its group of G = H / Hkv queries."""
    g = n_heads // x.shape[1]
    return x if g == 1 else x.repeat_interleave(g, dim=1)


def causal_mask(t: int, s: int, device) -> torch.Tensor:
    """(T, S) bool, True where query t (at position S - T + t) may see key j."""
    q_pos = torch.arange(s - t, s, device=device)[:, None]  # (T, 1)
    return torch.arange(s, device=device)[None, :] <= q_pos  # (T, S)


def naive_attention(q, k, v, *, scale: float, layer: int = 0) -> torch.Tensor:
    """The slow, obvious path: expand heads, full score matrix, mask, softmax in >= float32."""
    h = q.shape[1]
    k, v = expand_heads(k, h), expand_heads(v, h)  # (B, H, S, Dk), (B, H, S, Dv)
    wide = torch.float64 if q.dtype == torch.float64 else torch.float32
    scores = torch.einsum("bhtd,bhsd->bhts", q.to(wide), k.to(wide)) * scale  # (B, H, T, S)
    scores = scores.masked_fill(~causal_mask(q.shape[2], k.shape[2], q.device), float("-inf"))
    p = scores.softmax(dim=-1)
    return torch.einsum("bhts,bhsd->bhtd", p, v.to(wide)).to(q.dtype)  # (B, H, T, Dv)


def sdpa_attention(q, k, v, *, scale: float, layer: int = 0) -> torch.Tensor:
    """PyTorch SDPA: GQA natively (enable_gqa) when Hk == Hv, heads expanded for DiffQKV."""
    t, s = q.shape[2], k.shape[2]
    gqa = k.shape[1] == v.shape[1] and k.shape[1] != q.shape[1]
    if not gqa:
        k, v = expand_heads(k, q.shape[1]), expand_heads(v, q.shape[1])
    if t == s:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, enable_gqa=gqa)
    mask = causal_mask(t, s, q.device)  # SDPA's is_causal aligns top-left; decode needs bottom-right
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=gqa)


_BUILTIN = {"sdpa": sdpa_attention, "naive": naive_attention}
_registered: dict[str, AttentionFn] = {}


def names() -> list[str]:
    return [*_BUILTIN, *_registered]


def register(name: str, fn: AttentionFn) -> None:
    """Make `fn` (the fixed signature above) available as `name` to models and configs."""
    if name in _BUILTIN:
        raise BookError(f"attention {name!r} is built in and cannot be replaced; pick another name")
    _registered[name] = fn


def get(name: str) -> AttentionFn:
    fn = _BUILTIN.get(name) or _registered.get(name)
    if fn is None:
        raise BookError(f"unknown attention {name!r}; valid attention: {', '.join(names())}")
    return fn


def transformers_adapter(name: str) -> Callable:
    """Wrap a registry function in transformers' attention-interface signature."""
    fn = get(name)

    def forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        # query (B, H, T, D), key/value (B, Hkv, S, D) as transformers' Llama passes them
        if attention_mask is not None and not bool(attention_mask.bool().all()):
            raise BookError(f"attention {name!r} inside transformers supports unpadded batches only")
        out = fn(query, key, value, scale=float(scaling), layer=int(module.layer_idx))  # (B, H, T, D)
        return out.transpose(1, 2).contiguous(), None  # (B, T, H, D), no weights

    return forward


def use_in_transformers(model, name: str) -> str:
    """Switch a transformers model to registry attention `name`; returns the interface key."""
    from transformers import AttentionInterface

    key = f"msrbook_{name}"
    AttentionInterface.register(key, transformers_adapter(name))
    model.set_attn_implementation(key)
    return key
