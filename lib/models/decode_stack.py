"""A LLaMA-shaped decoder stack for timing one decode step end to end with a pluggable attention.

The BitDecoding paper reports end-to-end latency of LLaMA-3.1-8B at long context with fp16, int4
and int2 KV caches. What a low-bit cache can buy end to end is bounded by what else a decode step
reads: at batch 1 every step reads all weights (about 16 GB in fp16 for 8B parameters) plus the
whole KV cache, so the step time is roughly (weight bytes + KV bytes) / bandwidth and only the KV
part shrinks. This module builds such a stack with random weights (latency does not depend on the
values; no checkpoint is downloaded) and times one step:

    x -> [RMSNorm -> q,k,v projections -> RoPE on q -> attention over the cache -> o projection -> +x
          -> RMSNorm -> SwiGLU MLP -> +x] x layers -> RMSNorm -> LM head

`attention(layer, q)` is the only thing that differs between runs: q [B, H, D] -> [B, H, D], reading
that layer's cache however it is stored. The new token's K and V are projected (their cost is in the
step) but not appended, so that the cache and hence every step is identical and a step can be
captured once as a CUDA graph; appending one token is a copy of 2 * Hkv * D values per layer, small
beside reading the cache.

Shapes: B batch, E hidden size, H query heads, Hkv KV heads, D head dimension, F MLP width, S cached
tokens, V vocabulary.
"""

from __future__ import annotations

import gc
import math
from dataclasses import asdict, dataclass
from typing import Callable

import torch

from .rope import RopeConfig, apply_rope, cos_sin


@dataclass(frozen=True)
class StackConfig:
    layers: int
    hidden: int  # E
    heads: int  # H
    kv_heads: int  # Hkv
    head_dim: int  # D
    ffn: int  # F
    vocab: int  # V

    def weight_bytes(self, elem_bytes: int = 2) -> int:
        """Bytes of all weights read by one decode step (embedding lookup excluded: one row)."""
        E, H, Hkv, D, F = self.hidden, self.heads, self.kv_heads, self.head_dim, self.ffn
        per_layer = E * (H * D + 2 * Hkv * D) + H * D * E + 3 * E * F + 2 * E
        return (self.layers * per_layer + E + E * self.vocab) * elem_bytes

    def kv_bytes_fp16(self, batch: int, tokens: int) -> int:
        """Bytes of an fp16 KV cache of `tokens` tokens over all layers."""
        return 2 * self.layers * batch * self.kv_heads * tokens * self.head_dim * 2

    def as_dict(self) -> dict:
        return asdict(self)


# The shapes of LLaMA-3.1-8B (published model card): 32 layers, hidden 4096, 32 query / 8 KV heads of
# dimension 128, MLP width 14336, vocabulary 128256. Weights here are random.
LLAMA31_8B = StackConfig(layers=32, hidden=4096, heads=32, kv_heads=8, head_dim=128, ffn=14336, vocab=128256)
# A toy stack of the same structure for CPU runs of the code path.
TINY = StackConfig(layers=2, hidden=128, heads=4, kv_heads=2, head_dim=32, ffn=256, vocab=512)


def make_weights(cfg: StackConfig, device, dtype=torch.float16, seed: int = 0) -> dict:
    """Random weights with a scale that keeps activations O(1) through the stack."""
    device = torch.device(device)
    g = torch.Generator(device=device).manual_seed(seed)  # drawn where they live: 8B values in seconds on a GPU

    def w(*shape):
        fan_in = shape[-1]
        return (torch.randn(*shape, generator=g, device=device, dtype=torch.float32) / math.sqrt(fan_in)).to(dtype)

    E, H, Hkv, D, F = cfg.hidden, cfg.heads, cfg.kv_heads, cfg.head_dim, cfg.ffn
    layers = []
    for _ in range(cfg.layers):
        layers.append({
            "norm1": torch.ones(E, device=device, dtype=dtype),
            "wqkv": w((H + 2 * Hkv) * D, E),  # fused q, k, v projection [(H+2Hkv)D, E]
            "wo": w(E, H * D),
            "norm2": torch.ones(E, device=device, dtype=dtype),
            "w13": w(2 * F, E),  # fused gate and up projections [2F, E]
            "w2": w(E, F),
        })
    return {"layers": layers, "norm": torch.ones(E, device=device, dtype=dtype), "head": w(cfg.vocab, E)}


def _rms_norm(x, weight, eps=1e-5):
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * weight


def rope_tables(cfg: StackConfig, pos: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The model lab's RoPE tables (cos, sin), each [1, D], for position `pos` with LLaMA-3's base
    500000 (its long-context frequency scaling is left out: the weights are random). Built once,
    outside the step, so a captured step holds no host-to-device copy."""
    cos, sin = cos_sin(torch.tensor([pos]), cfg.head_dim, RopeConfig(theta=500000.0))
    return cos.to(device), sin.to(device)


def decode_step(cfg: StackConfig, weights: dict, x: torch.Tensor, attention: Callable[[int, torch.Tensor], torch.Tensor],
                rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """One decode step. x [B, E] (the new token's embedding), rope = rope_tables(...) -> logits [B, V]."""
    B = x.shape[0]
    H, Hkv, D, F = cfg.heads, cfg.kv_heads, cfg.head_dim, cfg.ffn
    for i, lw in enumerate(weights["layers"]):
        h = _rms_norm(x, lw["norm1"])
        qkv = h @ lw["wqkv"].t()  # [B, (H+2Hkv)D]
        q = apply_rope(qkv[:, : H * D].view(B, H, 1, D), *rope)[:, :, 0]  # [B, H, D]
        # qkv[:, H*D:] are the new token's K and V: projected, not appended (see the module docstring)
        o = attention(i, q)  # [B, H, D]
        x = x + o.reshape(B, H * D) @ lw["wo"].t()
        h = _rms_norm(x, lw["norm2"])
        gu = h @ lw["w13"].t()  # [B, 2F]
        x = x + (torch.nn.functional.silu(gu[:, :F]) * gu[:, F:]) @ lw["w2"].t()
    return _rms_norm(x, weights["norm"]) @ weights["head"].t()


class GraphedStep:
    """`decode_step` captured once as a CUDA graph (falls back to eager where capture fails, and on
    CPU); `self.graphed` says which. Calling it replays the step on the fixed input buffer."""

    def __init__(self, cfg: StackConfig, weights: dict, attention, pos: int, batch: int = 1, use_graph: bool = True):
        dev = weights["norm"].device
        self.x = torch.randn(batch, cfg.hidden, device=dev, dtype=weights["norm"].dtype)
        rope = rope_tables(cfg, pos, dev)
        self._fn = lambda: decode_step(cfg, weights, self.x, attention, rope)
        self.graphed, self.why_not = False, ""
        self.out = None
        if use_graph and dev.type == "cuda":
            # Freeing cached blocks is not allowed while a stream captures; with a long cache the
            # allocator may need to, so give them back first (seen at 128K tokens, int2, on an H200).
            gc.collect()
            torch.cuda.empty_cache()
            try:
                s = torch.cuda.Stream()
                s.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(s):
                    for _ in range(2):  # warm-up outside the graph: Triton compiles, cuDNN plans
                        self._fn()
                torch.cuda.current_stream().wait_stream(s)
                self.graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(self.graph):
                    self.out = self._fn()
                self.graphed = True
            except Exception as e:  # noqa: BLE001 - any capture failure means: time it eagerly, and say so
                self.why_not = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
                torch.cuda.synchronize()

    def __call__(self):
        if self.graphed:
            self.graph.replay()
            return self.out
        return self._fn()
