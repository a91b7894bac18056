"""A small Llama-style decoder: RMSNorm, RoPE attention with independent Q/K/V head layouts
(GQA, Sigma's DiffQKV, optional augmented Q), SwiGLU MLP, tied embeddings.

Attention goes through the registry (attention.get(config.attention)), so a chapter swaps it by
name. Parameter names follow transformers' Llama closely enough that `smollm2.lab_decoder` copies
SmolLM2's weights one to one. `reference.naive_logits` recomputes the same function the slow way.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from . import attention
from .config import ModelConfig
from .kv_cache import KVCache
from .rope import apply_rope, cos_sin


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x^2) + eps) * w, normalized in at least float32 (as Llama does)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps, self.weight = eps, nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = x if x.dtype == torch.float64 else x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.cfg, self.layer = cfg, layer
        if cfg.aug_q:  # Sigma's AugQ: a wider projection first, then down to the heads
            self.wq_aug = nn.Linear(cfg.d_model, cfg.aug_q, bias=False)
            self.wq = nn.Linear(cfg.aug_q, cfg.n_q * cfg.d_qk, bias=False)
        else:
            self.wq = nn.Linear(cfg.d_model, cfg.n_q * cfg.d_qk, bias=False)
        self.wk = nn.Linear(cfg.d_model, cfg.n_k * cfg.d_qk, bias=False)
        self.wv = nn.Linear(cfg.d_model, cfg.n_v * cfg.d_v, bias=False)
        self.wo = nn.Linear(cfg.n_q * cfg.d_v, cfg.d_model, bias=False)

    def forward(self, x, cos, sin, cache: KVCache | None = None, start: int = 0):
        c = self.cfg
        b, t, _ = x.shape
        q = self.wq(self.wq_aug(x) if c.aug_q else x)
        q = q.view(b, t, c.n_q, c.d_qk).transpose(1, 2)  # (B, H, T, Dk)
        k = self.wk(x).view(b, t, c.n_k, c.d_qk).transpose(1, 2)  # (B, Hk, T, Dk)
        v = self.wv(x).view(b, t, c.n_v, c.d_v).transpose(1, 2)  # (B, Hv, T, Dv)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            k, v = cache.update(start, k, v)  # (B, Hk, S, Dk), (B, Hv, S, Dv), S = start + T
        y = attention.get(c.attention)(q, k, v, scale=c.scale, layer=self.layer)  # (B, H, T, Dv)
        return self.wo(y.transpose(1, 2).reshape(b, t, c.n_q * c.d_v))  # (B, T, d_model)


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.up = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.down = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.norm1, self.attn = RMSNorm(cfg.d_model, cfg.norm_eps), Attention(cfg, layer)
        self.norm2, self.mlp = RMSNorm(cfg.d_model, cfg.norm_eps), MLP(cfg)

    def forward(self, x, cos, sin, cache=None, start=0):
        x = x + self.attn(self.norm1(x), cos, sin, cache, start)
        return x + self.mlp(self.norm2(x))


class Decoder(nn.Module):
    """forward(idx (B, T), start, caches) -> logits (B, T, V); positions start .. start+T-1."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight
        cos, sin = cos_sin(torch.arange(cfg.max_seq_len), cfg.d_qk, cfg.rope)  # (S_max, Dk) each
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def init_weights(self, generator: torch.Generator | None = None) -> "Decoder":
        """GPT-2 style: N(0, 0.02), residual outputs scaled by 1/sqrt(2 * n_layer); norms at 1."""
        for name, p in self.named_parameters():
            if p.dim() == 1:
                nn.init.ones_(p)
                continue
            std = 0.02 / math.sqrt(2 * self.cfg.n_layer) if name.endswith(("wo.weight", "down.weight")) else 0.02
            with torch.no_grad():
                p.copy_(torch.randn(p.shape, generator=generator) * std)
        return self

    def forward(self, idx: torch.Tensor, start: int = 0, caches: list[KVCache] | None = None):
        t = idx.shape[1]
        if start + t > self.cfg.max_seq_len:
            raise ValueError(f"positions up to {start + t} exceed max_seq_len={self.cfg.max_seq_len}")
        cos, sin = self.cos[start:start + t], self.sin[start:start + t]  # (T, Dk)
        x = self.tok_emb(idx)  # (B, T, d_model)
        for i, block in enumerate(self.blocks):
            x = block(x, cos, sin, None if caches is None else caches[i], start)
        return self.lm_head(self.norm(x))  # (B, T, V)

    def new_caches(self, batch: int, max_len: int | None = None, dtype=None) -> list[KVCache]:
        c, p = self.cfg, self.tok_emb.weight
        n = max_len or c.max_seq_len
        return [KVCache(batch, c.n_k, c.n_v, n, c.d_qk, c.d_v, dtype or p.dtype, p.device) for _ in range(c.n_layer)]

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
