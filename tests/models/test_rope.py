"""Every RoPE scaling equals its formula, written here pair by pair with `math`."""

import math

import pytest
import torch

from msrbook.models.rope import (RopeConfig, SCALINGS, apply_rope, cos_sin, inv_freq, scale_factors,
                                 temperature)
from msrbook.errors import BookError

D, B_, S, L_TRAIN = 64, 10000.0, 4.0, 256


def theta(i):
    return B_ ** (-2 * i / D)


def yarn_lambda(i, alpha=1.0, beta=32.0):
    r = L_TRAIN / (2 * math.pi / theta(i))
    if r < alpha:
        return S
    if r > beta:
        return 1.0
    gamma = (r - alpha) / (beta - alpha)
    return 1 / ((1 - gamma) / S + gamma)


FACTORS = tuple(1.0 + 0.5 * i for i in range(D // 2))
EXPECTED = {  # theta'_i for every pair, by the formula the module docstring states
    "plain": lambda i: theta(i),
    "pi": lambda i: theta(i) / S,
    "ntk": lambda i: (B_ * S ** (D / (D - 2))) ** (-2 * i / D),
    "yarn": lambda i: theta(i) / yarn_lambda(i),
    "factors": lambda i: theta(i) / FACTORS[i],
}


@pytest.mark.parametrize("scaling", SCALINGS)
def test_every_scaling_equals_its_formula(scaling):
    cfg = RopeConfig(theta=B_, scaling=scaling, factor=S, original_max_len=L_TRAIN, factors=FACTORS)
    got = inv_freq(D, cfg)
    want = torch.tensor([EXPECTED[scaling](i) for i in range(D // 2)], dtype=torch.float64)
    # float64 on both sides; pow and exp order differ, so allow a few ulps relative
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0)


def test_yarn_keeps_fast_pairs_and_interpolates_slow_ones():
    lam = scale_factors(D, RopeConfig(scaling="yarn", factor=S, original_max_len=L_TRAIN))
    assert lam[0] == 1.0 and lam[-1] == S  # pair 0 turns ~40 times in 256 positions, the last < once
    assert bool((lam[1:] >= lam[:-1]).all())


def test_temperatures():
    assert temperature(RopeConfig(scaling="yarn", factor=S)) == pytest.approx(0.1 * math.log(S) + 1)
    cfg = RopeConfig(scaling="factors", factor=S, original_max_len=L_TRAIN, factors=FACTORS)
    assert temperature(cfg) == pytest.approx(math.sqrt(1 + math.log(S) / math.log(L_TRAIN)))
    assert temperature(RopeConfig(scaling="pi", factor=S)) == 1.0


def test_apply_rope_is_a_complex_rotation():
    cfg = RopeConfig(scaling="ntk", factor=2.0)
    x = torch.randn(2, 3, 17, D, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    cos, sin = cos_sin(torch.arange(17), D, cfg)
    got = apply_rope(x, cos, sin)
    z = torch.complex(x[..., : D // 2], x[..., D // 2:])
    ang = torch.arange(17, dtype=torch.float64)[:, None] * inv_freq(D, cfg)[None, :]
    z = z * torch.polar(torch.ones_like(ang), ang)
    torch.testing.assert_close(got, torch.cat([z.real, z.imag], -1), rtol=0, atol=1e-12)


def test_scores_depend_only_on_relative_position():
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(1, 1, 1, D, dtype=torch.float64, generator=g), torch.randn(1, 1, 1, D, dtype=torch.float64, generator=g)
    cos, sin = cos_sin(torch.arange(40), D, RopeConfig())

    def score(pq, pk):
        return float((apply_rope(q, cos[pq:pq + 1], sin[pq:pq + 1]) * apply_rope(k, cos[pk:pk + 1], sin[pk:pk + 1])).sum())

    assert score(10, 3) == pytest.approx(score(37, 30), abs=1e-10)


def test_unknown_scaling_is_one_line_listing_valid_names():
    with pytest.raises(BookError) as e:
        inv_freq(D, RopeConfig(scaling="linear"))
    msg = str(e.value)
    assert "\n" not in msg and "'linear'" in msg and all(s in msg for s in SCALINGS)


def test_factors_need_one_per_pair():
    with pytest.raises(BookError, match="32 factors"):
        inv_freq(D, RopeConfig(scaling="factors", factors=(1.0, 2.0)))
