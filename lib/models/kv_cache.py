"""A KV cache with one `update`: write this step's keys and values, get back all so far."""

from __future__ import annotations

import torch
from torch import nn


class KVCache(nn.Module):
    """Static buffers k (B, Hk, S_max, Dk) and v (B, Hv, S_max, Dv) for one layer."""

    def __init__(self, batch: int, n_k: int, n_v: int, max_len: int, d_qk: int, d_v: int,
                 dtype: torch.dtype, device: torch.device | str):
        super().__init__()
        self.register_buffer("k", torch.zeros(batch, n_k, max_len, d_qk, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(batch, n_v, max_len, d_v, dtype=dtype, device=device), persistent=False)

    @property
    def max_len(self) -> int:
        return self.k.shape[2]

    def update(self, start: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k (B, Hk, T, Dk), v (B, Hv, T, Dv) at positions start..start+T-1 and return the
        cache up to there: (B, Hk, start+T, Dk), (B, Hv, start+T, Dv)."""
        end = start + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} positions; asked to write up to {end}")
        self.k[:, :, start:end] = k
        self.v[:, :, start:end] = v
        return self.k[:, :, :end], self.v[:, :, :end]
