"""A naive reference for the decoder: the same function written the slow, obvious way.

It reads a Decoder's parameters and recomputes the logits with one Python loop over heads, RoPE
as multiplication by complex numbers exp(i * p * theta'_j) on the pairs (x_j, x_{j + D/2}), and
an explicit lower-triangular mask. Run in float64 it tells the fast path's bugs from rounding.
"""

from __future__ import annotations

import torch

from .model import Decoder
from .rope import inv_freq, temperature


def _rope_complex(x: torch.Tensor, freqs: torch.Tensor, m: float) -> torch.Tensor:
    """x (T, D) -> rotated (T, D): pair (x_j, x_{j+D/2}) is the complex number x_j + i x_{j+D/2}."""
    half = x.shape[-1] // 2
    z = torch.complex(x[:, :half].double(), x[:, half:].double())  # (T, D/2)
    pos = torch.arange(x.shape[0], dtype=torch.float64)[:, None]
    z = z * torch.polar(torch.full_like(pos * freqs, m), pos * freqs)  # (T, D/2)
    return torch.cat([z.real, z.imag], dim=-1).to(x.dtype)


def _rms(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    return w * x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps)


@torch.no_grad()
def naive_logits(model: Decoder, idx: torch.Tensor) -> torch.Tensor:
    """Logits (B, T, V) for idx (B, T), one sequence and one head at a time."""
    c = model.cfg
    freqs, m = inv_freq(c.d_qk, c.rope), temperature(c.rope)
    out = []
    for seq in idx:
        t = seq.shape[0]
        x = model.tok_emb.weight[seq]  # (T, d_model)
        mask = torch.tril(torch.ones(t, t, dtype=torch.bool))
        for blk in model.blocks:
            a, h = blk.attn, _rms(x, blk.norm1.weight, c.norm_eps)
            q_in = h @ a.wq_aug.weight.T if c.aug_q else h
            q, k, v = q_in @ a.wq.weight.T, h @ a.wk.weight.T, h @ a.wv.weight.T
            heads = []
            for hq in range(c.n_q):
                hk, hv = hq * c.n_k // c.n_q, hq * c.n_v // c.n_q  # the K and V head this query reads
                qh = _rope_complex(q[:, hq * c.d_qk:(hq + 1) * c.d_qk], freqs, m)
                kh = _rope_complex(k[:, hk * c.d_qk:(hk + 1) * c.d_qk], freqs, m)
                vh = v[:, hv * c.d_v:(hv + 1) * c.d_v]
                s = (qh @ kh.T) * c.scale  # (T, T)
                s = s.masked_fill(~mask, float("-inf"))
                heads.append(torch.softmax(s, dim=-1) @ vh)  # (T, Dv)
            x = x + torch.cat(heads, dim=-1) @ a.wo.weight.T
            h2 = _rms(x, blk.norm2.weight, c.norm_eps)
            mlp = blk.mlp
            x = x + (torch.nn.functional.silu(h2 @ mlp.gate.weight.T) * (h2 @ mlp.up.weight.T)) @ mlp.down.weight.T
        out.append(_rms(x, model.norm.weight, c.norm_eps) @ model.lm_head.weight.T)
    return torch.stack(out)
