"""Shared by the tokens-in-M kernels' tests (test_bitdecode_tm.py, test_bitdecode_tm2.py; pytest puts
this folder on sys.path for them): a random query and quantized cache."""

import torch

from msrbook.kernels.bitdecode.quant import QuantConfig, QuantKVCache


def quant_case(bits, k_mode, B, H, Hkv, T, D, seed, ramp=0.0):
    """q [B, H, D] fp16 and a QuantKVCache of T random tokens. ramp > 0: later tokens' keys align more
    and more with the mean query of their KV head, so the running maximum grows all the way."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, D, generator=g).half()
    k, v = (torch.randn(B, Hkv, T, D, generator=g) for _ in range(2))
    if ramp:
        k += ramp * torch.linspace(0, 1, T)[None, None, :, None] * q.float().reshape(B, Hkv, H // Hkv, D).mean(2)[:, :, None, :]
    cache = QuantKVCache(QuantConfig(bits=bits, k_mode=k_mode), B, Hkv, D)
    cache.append(k.half(), v.half())
    return q, cache
