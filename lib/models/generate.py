"""Prefill and decode as separate steps over a KV cache, and greedy or sampled generation.

    caches = model.new_caches(B, max_len)
    logits = prefill(model, prompt, caches)          # (B, V): the next-token logits
    logits = decode_one(model, token, pos, caches)   # (B, V), one position at a time

`generate` strings them together; with temperature 0 it is greedy (argmax), otherwise it samples
from softmax(logits / temperature), optionally restricted to the top_k logits, with its own
seeded generator so a run is repeatable without touching the global random state.
"""

from __future__ import annotations

import torch

from .model import Decoder


@torch.no_grad()
def prefill(model: Decoder, idx: torch.Tensor, caches) -> torch.Tensor:
    """Run the prompt idx (B, T) at positions 0..T-1, filling the caches; returns (B, V)."""
    return model(idx, start=0, caches=caches)[:, -1]


@torch.no_grad()
def decode_one(model: Decoder, token: torch.Tensor, pos: int, caches) -> torch.Tensor:
    """One new token (B, 1) at position `pos`, reading the cached 0..pos-1; returns (B, V)."""
    return model(token, start=pos, caches=caches)[:, -1]


def pick(logits: torch.Tensor, temperature: float = 0.0, top_k: int | None = None,
         generator: torch.Generator | None = None) -> torch.Tensor:
    """Next token (B, 1) from logits (B, V): argmax at temperature 0, else a sample."""
    if temperature <= 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits.float() / temperature
    if top_k is not None:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs.cpu(), 1, generator=generator).to(logits.device)


@torch.no_grad()
def generate(model: Decoder, idx: torch.Tensor, max_new_tokens: int, *, temperature: float = 0.0,
             top_k: int | None = None, seed: int = 0, eos: int | None = None) -> torch.Tensor:
    """Continue idx (B, T) by up to max_new_tokens; returns (B, T + n). Stops early once every row
    has produced `eos` (rows that finished keep emitting it)."""
    b, t = idx.shape
    caches = model.new_caches(b, t + max_new_tokens)
    gen = torch.Generator().manual_seed(seed)
    logits, out = prefill(model, idx, caches), [idx]
    done = torch.zeros(b, 1, dtype=torch.bool, device=idx.device)
    for i in range(max_new_tokens):
        tok = pick(logits, temperature, top_k, gen)  # (B, 1)
        if eos is not None:
            tok = tok.masked_fill(done, eos)
            done |= tok == eos
        out.append(tok)
        if eos is not None and bool(done.all()) or i == max_new_tokens - 1:
            break
        logits = decode_one(model, tok, t + i, caches)
    return torch.cat(out, dim=1)
