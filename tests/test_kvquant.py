"""kernels/bitdecode/quant.py reference paths (pure torch, no kernels): packing layout and round trip,
quantization error bound, fake quantization with the fp16 residual, config defaults.
Glossary: B, Hkv, T, D; b bits; 8 codes per word."""

import pytest
import torch

from msrbook.kernels.bitdecode.quant import PER_WORD, QuantConfig, dequantize, fake_quant_k, fake_quant_v, metadata_bits, pack, quantize, unpack_to_logical, word_dtype


def rand_codes(shape, bits, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2**bits, shape, generator=gen, dtype=torch.uint8)


@pytest.mark.parametrize("bits", [4, 2])
@pytest.mark.parametrize("shape,tile,axis", [
    ((1, 1, 128, 16), 128, 2),
    ((3, 2, 384, 5), 128, 2),  # odd trailing dim, three tiles
    ((2, 1, 512, 3), 256, 2),  # tile 256: 32 word rows
    ((2, 3, 7, 256), 128, 3),  # packed along the last axis
])
def test_pack_unpack_is_bit_exact(bits, shape, tile, axis):
    codes = rand_codes(shape, bits, seed=sum(shape) + bits)
    codes.view(-1)[:3] = 2**bits - 1  # the top code sets the word's sign bit in the last slot
    words = pack(codes, bits, tile, axis)
    assert words.dtype == word_dtype(bits)
    assert words.shape[axis] == shape[axis] // PER_WORD and words.ndim == codes.ndim
    back = unpack_to_logical(words, bits, tile, axis)
    assert back.dtype == torch.uint8 and torch.equal(back, codes)


@pytest.mark.parametrize("bits", [4, 2])
def test_physical_order_is_the_documented_one(bits):
    """Word row i of a tile holds token j * (tile / 8) + i in bits [b*j, b*j + b)."""
    tile, rows = 128, 128 // PER_WORD
    codes = rand_codes((1, 1, tile, 1), bits, seed=7)
    words = pack(codes, bits, tile).long() & (2**(8 * bits) - 1)  # [1, 1, rows, 1] as unsigned
    for i in range(rows):
        for j in range(PER_WORD):
            assert (words[0, 0, i, 0] >> (bits * j)) & (2**bits - 1) == codes[0, 0, j * rows + i, 0]


def test_pack_rejects_a_partial_tile():
    with pytest.raises(AssertionError, match="multiple of the tile"):
        pack(torch.zeros(1, 1, 100, 4, dtype=torch.uint8), 4, 128)


def half_step_bound(x16, qt):
    """Per-element bound: s/2 (round to nearest code) with the stored fp16 s, plus fp32 rounding of
    (x - z) / s, c * s and + z: a few ulps of the values involved, bounded by 1e-6 * (|x| + |z| + 1)."""
    n = x16.shape[qt.axis]
    s = qt.scale.float().movedim(qt.axis, -1).repeat_interleave(qt.group, -1)[..., :n].movedim(-1, qt.axis)
    z = qt.zero.float().movedim(qt.axis, -1).repeat_interleave(qt.group, -1)[..., :n].movedim(-1, qt.axis)
    return s / 2 + 1e-6 * (x16.abs() + z.abs() + 1)


@pytest.mark.parametrize("bits", [4, 2])
@pytest.mark.parametrize("axis,group,T", [(2, 128, 300), (3, 128, 50), (3, 32, 50), (2, 64, 64)])
def test_dequantization_error_is_at_most_half_a_step(bits, axis, group, T):
    gen = torch.Generator().manual_seed(bits * 100 + T)
    x = torch.randn(2, 3, T, 128, generator=gen)
    x[:, :, :, 5] *= 20  # an outlier channel, as real K has
    qt = quantize(x, bits, group, axis)
    x16 = x.half().float()  # quantize works on the fp16 values the cache stores
    err = (dequantize(qt) - x16).abs()
    assert (err <= half_step_bound(x16, qt)).all(), f"max err / bound {(err / half_step_bound(x16, qt)).max():.4f}"
    assert qt.codes.max() <= 2**bits - 1
    # The bound is tight: some element is farther than s/4 from its code (a wrong, coarser step would fail).
    assert (err > half_step_bound(x16, qt) / 2).any()


def test_constant_group_is_exact():
    x = torch.full((1, 1, 128, 16), 0.3)
    qt = quantize(x, 4, 128, 2)
    assert (qt.scale == 0).all() and (qt.codes == 0).all()
    assert torch.equal(dequantize(qt), x.half().float())


def test_quantize_statistics_are_per_group():
    """Min and max of each group land on codes 0 and 2^b - 1 (the asymmetric min-max map)."""
    x = torch.randn(1, 2, 256, 32, generator=torch.Generator().manual_seed(1))
    qt = quantize(x, 4, 128, 2)  # KC: per channel over 128 tokens
    assert qt.scale.shape == (1, 2, 2, 32)
    g = qt.codes.reshape(1, 2, 2, 128, 32)
    assert (g.amin(3) == 0).all() and (g.amax(3) == 15).all()


@pytest.mark.parametrize("bits,k_mode", [(4, "KC"), (2, "KC"), (4, "KT"), (2, "KT")])
@pytest.mark.parametrize("T", [1, 127, 128, 300, 520])
def test_fake_quant_keeps_the_residual_in_fp16(bits, k_mode, T):
    cfg = QuantConfig(bits=bits, k_mode=k_mode)
    R = cfg.residual_tokens
    gen = torch.Generator().manual_seed(T)
    k, v = torch.randn(1, 2, T, 64, generator=gen), torch.randn(1, 2, T, 64, generator=gen)
    fk, fv = fake_quant_k(k, cfg), fake_quant_v(v, cfg)
    n = (T // R) * R  # quantized tokens
    assert torch.equal(fk[:, :, n:], k[:, :, n:].half().float())
    assert torch.equal(fv[:, :, n:], v[:, :, n:].half().float())
    if n:
        axis = 2 if k_mode == "KC" else 3
        assert torch.equal(fk[:, :, :n], dequantize(quantize(k[:, :, :n], bits, 128 if axis == 2 else 64, axis)))
        assert torch.equal(fv[:, :, :n], dequantize(quantize(v[:, :, :n], bits, 64, 3)))
        assert not torch.equal(fk[:, :, :n], k[:, :, :n].half().float())  # really quantized
    assert torch.equal(fake_quant_k(k, cfg, keep_residual=False), dequantize(quantize(k, bits, 128 if k_mode == "KC" else 64, 2 if k_mode == "KC" else 3)))


def test_config_defaults_and_metadata():
    assert QuantConfig(bits=4).residual_tokens == 128 and QuantConfig(bits=2).residual_tokens == 256
    assert QuantConfig(bits=4).tile == 128 and QuantConfig(k_mode="KT", group=32).tile == 128
    assert QuantConfig(bits=2).word_dtype == torch.int16 and QuantConfig(bits=4).word_dtype == torch.int32
    assert metadata_bits(4) == 4.25 and metadata_bits(2) == 2.25
    assert 16 / metadata_bits(4) == pytest.approx(3.765, abs=1e-3) and 16 / metadata_bits(2) == pytest.approx(7.11, abs=1e-2)
    with pytest.raises(AssertionError):
        QuantConfig(bits=3)
    with pytest.raises(AssertionError):
        QuantConfig(k_mode="KV")
    with pytest.raises(AssertionError):
        QuantConfig(residual=100)  # not a multiple of the 128-token tile
