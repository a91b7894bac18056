"""Rotary position embedding (RoPE) with pluggable frequency scaling.

Pair i of a head of dimension D (i = 0 .. D/2 - 1) rotates at the frequency

    theta_i = b ** (-2 i / D),             period T_i = 2 pi / theta_i.

Extending a model trained at length L_train to L = s * L_train divides each frequency by a factor
lambda_i (theta'_i = theta_i / lambda_i); the scalings differ only in how they choose lambda_i:

* ``plain``:   lambda_i = 1 (no scaling).
* ``pi``:      lambda_i = s (position interpolation).
* ``ntk``:     the base grows, b' = b * s ** (D / (D - 2)), so lambda_i = s ** (2 i / (D - 2)).
* ``yarn``:    r_i = L_train / T_i; gamma_i = clip((r_i - alpha) / (beta - alpha), 0, 1);
               1 / lambda_i = (1 - gamma_i) / s + gamma_i  (lambda_i = s where r_i < alpha, 1 where
               r_i > beta); attention temperature m = 0.1 ln s + 1.
* ``factors``: lambda_i given per pair (LongRoPE2's searched factors); temperature
               m = sqrt(1 + ln s / ln L_train) when s > 1, as in the LongRoPE code.

The temperature m multiplies cos and sin, so it scales q.k by m**2, as in YaRN's reference code.
Pairs follow the "rotate half" layout of Llama checkpoints: dimension j pairs with j + D/2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import BookError

SCALINGS = ("plain", "pi", "ntk", "yarn", "factors")


@dataclass(frozen=True)
class RopeConfig:
    theta: float = 10000.0  # base b of the frequencies
    scaling: str = "plain"  # one of SCALINGS
    factor: float = 1.0  # s = L / L_train, the extension ratio (pi, ntk, yarn, factors' temperature)
    original_max_len: int = 0  # L_train, the length the model was trained at (yarn, factors)
    factors: tuple[float, ...] = ()  # lambda_i per pair, D/2 of them (scaling "factors")
    yarn_alpha: float = 1.0  # YaRN: pairs turning fewer than alpha times in L_train are fully interpolated
    yarn_beta: float = 32.0  # YaRN: pairs turning more than beta times in L_train are kept


def check_scaling(name: str) -> str:
    if name not in SCALINGS:
        raise BookError(f"unknown RoPE scaling {name!r}; valid scalings: {', '.join(SCALINGS)}")
    return name


def base_frequencies(head_dim: int, theta: float) -> torch.Tensor:
    """theta_i = b ** (-2 i / D) for i < D/2, float64 so every scaling can be checked exactly."""
    i = torch.arange(head_dim // 2, dtype=torch.float64)
    return theta ** (-2.0 * i / head_dim)


def scale_factors(head_dim: int, cfg: RopeConfig) -> torch.Tensor:
    """lambda_i for every pair, shape (D/2,), by the formula of cfg.scaling (module docstring)."""
    check_scaling(cfg.scaling)
    half, s = head_dim // 2, cfg.factor
    i = torch.arange(half, dtype=torch.float64)
    if cfg.scaling == "plain":
        return torch.ones(half, dtype=torch.float64)
    if cfg.scaling == "pi":
        return torch.full((half,), float(s), dtype=torch.float64)
    if cfg.scaling == "ntk":
        return s ** (2.0 * i / (head_dim - 2))
    if cfg.scaling == "yarn":
        if cfg.original_max_len <= 0:
            raise BookError("RoPE scaling 'yarn' needs original_max_len (L_train) > 0")
        period = 2 * math.pi / base_frequencies(head_dim, cfg.theta)
        r = cfg.original_max_len / period  # turns each pair makes within L_train
        gamma = ((r - cfg.yarn_alpha) / (cfg.yarn_beta - cfg.yarn_alpha)).clamp(0.0, 1.0)
        return 1.0 / ((1.0 - gamma) / s + gamma)
    if len(cfg.factors) != half:
        raise BookError(f"RoPE scaling 'factors' needs {half} factors (one per pair), got {len(cfg.factors)}")
    return torch.tensor(cfg.factors, dtype=torch.float64)


def inv_freq(head_dim: int, cfg: RopeConfig) -> torch.Tensor:
    """theta'_i = theta_i / lambda_i, shape (D/2,), float64."""
    return base_frequencies(head_dim, cfg.theta) / scale_factors(head_dim, cfg)


def temperature(cfg: RopeConfig) -> float:
    """The factor m that multiplies cos and sin (1 where the scaling has none)."""
    s = cfg.factor
    if cfg.scaling == "yarn" and s > 1:
        return 0.1 * math.log(s) + 1.0
    if cfg.scaling == "factors" and s > 1 and cfg.original_max_len > 1:
        return math.sqrt(1 + math.log(s) / math.log(cfg.original_max_len))
    return 1.0


def cos_sin(positions: torch.Tensor, head_dim: int, cfg: RopeConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables, each (T, D) in float64 (apply_rope casts), for positions of shape (T,)."""
    angles = positions.to(torch.float64)[:, None] * inv_freq(head_dim, cfg)[None, :]  # (T, D/2)
    angles = torch.cat([angles, angles], dim=-1)  # (T, D): pair j and j + D/2 share an angle
    m = temperature(cfg)
    return angles.cos() * m, angles.sin() * m


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)  # (..., D/2) each
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (B, H, T, D) by the tables (T, D); computed in at least float32, returned in x's dtype."""
    xf = x if x.dtype in (torch.float32, torch.float64) else x.float()
    cos, sin = cos.to(xf.dtype), sin.to(xf.dtype)
    return (xf * cos + rotate_half(xf) * sin).to(x.dtype)
