"""Low-bit decode (kernels/bitdecode/) and the quantized KV cache (kernels/bitdecode/quant.py): on CPU under
the Triton interpreter (tests/conftest.py), on the GPU where there is one. Every decode impl is
reduced to the dense fp32 reference on the dequantized cache. Glossary: B, H, Hkv, G = H // Hkv, T, D."""

import os
import subprocess
import sys

import pytest
import torch

from msrbook.kernels.bitdecode import bitdecode_attention, quantize_pack_kv
from msrbook.kernels.decode_attention import decode_attention_ref
from msrbook.kernels.bitdecode.quant import QuantConfig, QuantKVCache, fake_quant_k, fake_quant_v, pack, quantize
from msrbook.testing import assert_close

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(DEVICE, torch.float16)


def filled_cache(cfg, B, Hkv, T, D, seed, chunks=1):
    """A cache holding T random tokens, appended in `chunks` pieces; returns (cache, k, v)."""
    k, v = randn(B, Hkv, T, D, seed=seed), randn(B, Hkv, T, D, seed=seed + 1)
    k[:, :, :, 3] *= 8  # an outlier channel (per-channel K scales differ)
    cache = QuantKVCache(cfg, B, Hkv, D, device=DEVICE)
    bounds = [T * i // chunks for i in range(chunks + 1)]
    for a, b in zip(bounds, bounds[1:]):
        cache.append(k[:, :, a:b], v[:, :, a:b])
    return cache, k, v


# ------------------------------------------------------------------------------ fused quantize-pack


@pytest.mark.parametrize("bits", [4, 2])
@pytest.mark.parametrize("k_mode", ["KC", "KT"])
def test_fused_quantize_pack_equals_reference_bit_exactly(bits, k_mode):
    """Same IEEE fp32 operations in the same order (min, max, (max-min)/(2^b-1) rounded to fp16, a
    correctly rounded 1/s, then floor((x - z) * (1/s) + 1/2) with no fma fusion): codes, scales and
    zeros are equal bit for bit, ties included."""
    cfg = QuantConfig(bits=bits, k_mode=k_mode)
    B, Hkv, n, D = 2, 2, cfg.residual_tokens, 32
    k, v = randn(B, Hkv, n, D, seed=bits), randn(B, Hkv, n, D, seed=bits + 10)
    k[0, 0, :, 0] = 0.25  # a constant channel: scale 0 in KC mode
    k[1, 1, 5, :] = torch.arange(D, device=DEVICE) / 4  # exactly representable grid: many exact ties at .5
    cache = QuantKVCache(cfg, B, Hkv, D, device=DEVICE, max_tokens=n)
    cache.append(k, v[:, :, :n])  # n is a multiple of the residual: all packed by one launch
    assert (cache.packed_len, cache.res_len, cache.flushes) == (n, 0, 1)
    qk = quantize(k.cpu(), bits, cfg.group if k_mode == "KC" else D, 2 if k_mode == "KC" else 3)
    qv = quantize(v.cpu(), bits, D, 3)
    assert torch.equal(cache.k_codes.cpu(), pack(qk.codes, bits, cfg.tile))
    assert torch.equal(cache.v_codes.cpu(), pack(qv.codes, bits, cfg.tile))
    if k_mode == "KC":
        ref_k_meta = torch.stack([qk.scale, qk.zero], dim=-1)  # [B, Hkv, n/128, D, 2]
    else:
        ref_k_meta = torch.cat([qk.scale, qk.zero], dim=3)  # [B, Hkv, n, 2]
    assert torch.equal(cache.k_meta.cpu(), ref_k_meta)
    assert torch.equal(cache.v_meta.cpu(), torch.cat([qv.scale, qv.zero], dim=3))


def test_quantize_pack_writes_only_its_slice():
    """Flushing into a view at an offset leaves the rest of the buffers untouched."""
    B, Hkv, D = 1, 2, 32
    k, v = randn(B, Hkv, 128, D, seed=1), randn(B, Hkv, 128, D, seed=2)
    kc = torch.full((B, Hkv, 48, D), 7, dtype=torch.int32, device=DEVICE)
    vc = kc.clone()
    km = torch.full((B, Hkv, 3, D, 2), 9.0, dtype=torch.float16, device=DEVICE)
    vm = torch.full((B, Hkv, 384, 2), 9.0, dtype=torch.float16, device=DEVICE)
    quantize_pack_kv(k, v, kc[:, :, 16:32], km[:, :, 1:2], vc[:, :, 16:32], vm[:, :, 128:256], bits=4, tile=128,
                     k_per_channel=True)
    for t, lo, hi, fill in ((kc, 16, 32, 7), (vc, 16, 32, 7), (km, 1, 2, 9.0), (vm, 128, 256, 9.0)):
        assert (t[:, :, :lo] == fill).all() and (t[:, :, hi:] == fill).all()
        assert not (t[:, :, lo:hi] == fill).all()


# ------------------------------------------------------------------------------------ residual cache


@pytest.mark.parametrize("bits", [4, 2])
def test_residual_flushes_exactly_at_its_size(bits):
    cfg = QuantConfig(bits=bits)
    R = cfg.residual_tokens
    B, Hkv, D, T = 1, 1, 16, R + 3
    full, k, v = filled_cache(cfg, B, Hkv, T, D, seed=5)  # the same tokens as one prefill
    cache = QuantKVCache(cfg, B, Hkv, D, device=DEVICE)
    for t in range(T):
        cache.append(k[:, :, t:t + 1], v[:, :, t:t + 1])
        n = t + 1
        assert (cache.packed_len, cache.res_len) == ((n // R) * R, n % R), f"after {n} tokens"
        assert cache.flushes == n // R  # one fused launch per flush
    ck, cv = cache.dequantized()
    fk, fv = full.dequantized()
    assert torch.equal(ck, fk) and torch.equal(cv, fv)


@pytest.mark.parametrize("bits,k_mode", [(4, "KC"), (2, "KT")])
def test_cache_equals_fake_quant_of_the_sequence(bits, k_mode):
    """Prefill, chunked appends and the pure-torch fake quantization agree bit for bit."""
    cfg = QuantConfig(bits=bits, k_mode=k_mode)
    T = 2 * cfg.residual_tokens + 37
    one, k, v = filled_cache(cfg, 2, 1, T, 16, seed=11)
    many, _, _ = filled_cache(cfg, 2, 1, T, 16, seed=11, chunks=5)
    for cache in (one, many):
        ck, cv = cache.dequantized()
        assert torch.equal(ck.cpu(), fake_quant_k(k.cpu().float(), cfg))
        assert torch.equal(cv.cpu(), fake_quant_v(v.cpu().float(), cfg))


def test_dequantized_selects_batch_elements():
    """The reference view of a few batch elements (first n, or a list such as first and last)
    equals the same rows of the whole cache: the GPU checks use it on caches too large to expand."""
    cfg = QuantConfig(bits=2, k_mode="KC")
    cache, _, _ = filled_cache(cfg, 4, 2, cfg.residual_tokens + 9, 16, seed=3)
    k, v = cache.dequantized()
    for sel, rows in ((2, [0, 1]), ([0, 3], [0, 3]), ([2], [2])):
        ks, vs = cache.dequantized(sel)
        assert torch.equal(ks, k[rows]) and torch.equal(vs, v[rows])


def test_cache_grows_past_its_capacity():
    cfg = QuantConfig(bits=4)
    cache, k, v = filled_cache(cfg, 1, 1, 128 * 5 + 1, 16, seed=3, chunks=7)
    assert cache.capacity >= cache.packed_len == 640 and cache.res_len == 1
    assert torch.equal(cache.dequantized()[0].cpu(), fake_quant_k(k.cpu().float(), cfg))


# --------------------------------------------------------------------------------------- decode impls

# Tolerance against the fp32 reference on the SAME dequantized cache (atol = rtol = 1e-2 for the
# fp16 output): q o s and p o s are rounded to fp16 before tl.dot (relative 2^-11 each), as are the
# output (2^-11) and, in the naive path, the dequantized K and V (c * s + z in fp16, relative 2^-11
# of values up to ~8 with the outlier channel). Seen <= 2e-3; 1e-2 is ~5x room and still ~50x below
# what a wrong scale, zero or token order gives (test_decode_check_can_fail).
TOL = 1e-2
IMPLS = ["triton", "cuda_core", "naive"]

# (bits, k_mode, B, H, Hkv, T, D): T around the residual (R = 128 at 4 bits, 256 at 2 bits) and the
# 128-token tile; GQA ratios 1, 4 and 8 (all padded to 16 rows for tl.dot); each mode and width
# meets a packed part. Not a full cross product: the interpreter takes ~1 s per tile.
CASES = [
    pytest.param(4, "KC", 1, 4, 4, 1, 64, id="4KC-T1-G1"),
    pytest.param(2, "KT", 2, 8, 2, 127, 32, id="2KT-T127-G4-residual-only"),
    pytest.param(4, "KT", 1, 8, 1, 129, 32, id="4KT-T129-G8-one-tile"),
    pytest.param(4, "KC", 3, 2, 2, 300, 32, id="4KC-B3-T300-G1"),
    pytest.param(2, "KC", 1, 8, 1, 257, 32, id="2KC-T257-G8"),
    pytest.param(2, "KT", 1, 4, 1, 300, 32, id="2KT-T300-G4"),
    pytest.param(4, "KC", 1, 8, 2, 260, 128, id="4KC-T260-G4-D128"),
]


@pytest.mark.parametrize("bits,k_mode,B,H,Hkv,T,D", CASES)
def test_decode_matches_dense_reference_on_dequantized_cache(bits, k_mode, B, H, Hkv, T, D):
    cache, _, _ = filled_cache(QuantConfig(bits=bits, k_mode=k_mode), B, Hkv, T, D, seed=T + bits)
    q = randn(B, H, D, seed=T)
    kd, vd = cache.dequantized()
    ref = decode_attention_ref(q, kd, vd)
    for impl in IMPLS:
        out = bitdecode_attention(q, cache, impl=impl, num_splits=2 if impl != "naive" else None)
        assert out.shape == (B, H, D) and out.dtype == q.dtype
        assert_close(out.float(), ref, rtol=TOL, atol=TOL, name=f"{impl} {bits}-bit {k_mode}")


def test_default_plan_and_more_splits_than_tiles():
    """The default split count, and 5 splits over 2 tiles (3 empty splits, merged as -inf)."""
    cache, _, _ = filled_cache(QuantConfig(bits=4), 1, 2, 300, 32, seed=9)
    q = randn(1, 4, 32, seed=9)
    ref = decode_attention_ref(q, *cache.dequantized())
    for splits in (None, 5):
        assert_close(bitdecode_attention(q, cache, num_splits=splits).float(), ref, rtol=TOL, atol=TOL)


@pytest.mark.parametrize("bits,k_mode,tile_softmax,magic_cvt", [(4, "KT", False, True), (2, "KC", True, True),
                                                                 (4, "KC", True, False)])
def test_kernel_variants(bits, k_mode, tile_softmax, magic_cvt):
    """The tile softmax (one max and rescale per 128 tokens) and the magic-number convert, alone and
    together, give the reference result like the default path."""
    cache, _, _ = filled_cache(QuantConfig(bits=bits, k_mode=k_mode), 1, 2, 300, 32, seed=12)
    q = randn(1, 8, 32, seed=12)
    ref = decode_attention_ref(q, *cache.dequantized())
    out = bitdecode_attention(q, cache, num_splits=2, tile_softmax=tile_softmax, magic_cvt=magic_cvt)
    assert_close(out.float(), ref, rtol=TOL, atol=TOL, name=f"tile_softmax={tile_softmax} magic_cvt={magic_cvt}")


def test_decode_check_can_fail():
    """A wrong token order (K permuted, V not) or a wrong scale is caught by the same tolerance."""
    cfg = QuantConfig(bits=4)
    cache, _, _ = filled_cache(cfg, 1, 2, 300, 32, seed=4)
    q = randn(1, 4, 32, seed=4)
    kd, vd = cache.dequantized()
    out = bitdecode_attention(q, cache, num_splits=2).float()
    with pytest.raises(AssertionError, match="max abs err"):
        assert_close(out, decode_attention_ref(q, kd, vd.flip(2)), rtol=TOL, atol=TOL)
    with pytest.raises(AssertionError, match="max abs err"):
        assert_close(out, decode_attention_ref(q, kd, vd, sm_scale=0.3), rtol=TOL, atol=TOL)


def test_every_split_buffer_is_written(monkeypatch):
    """NaN-poison what the wrapper allocates: a skipped split, head row or output shows as NaN."""
    cache, _, _ = filled_cache(QuantConfig(bits=2), 1, 2, 300, 32, seed=8)
    q = randn(1, 8, 32, seed=8)
    real_empty = torch.empty

    def poisoned_empty(*args, **kwargs):
        t = real_empty(*args, **kwargs)
        return t.fill_(float("nan")) if t.is_floating_point() else t

    monkeypatch.setattr(torch, "empty", poisoned_empty)
    outs = [bitdecode_attention(q, cache, impl=impl, num_splits=3) for impl in ("triton", "cuda_core")]
    monkeypatch.undo()
    ref = decode_attention_ref(q, *cache.dequantized())
    for out in outs:
        assert not torch.isnan(out).any()
        assert_close(out.float(), ref, rtol=TOL, atol=TOL)


# ------------------------------------------------------------------------------ compile for Hopper

COMPILE_SCRIPT = """
from msrbook.kernels.bitdecode import compile_for_target
for kern, bits, mode, G, variant in [("triton", 4, "KC", 1, True), ("triton", 2, "KT", 8, True), ("triton", 4, "KT", 4, False),
                                     ("cuda_core", 2, "KC", 4, True), ("quantize_pack", 2, "KT", 1, True)]:
    kw = dict(tile_softmax=variant, magic_cvt=variant) if kern == "triton" else {}
    k = compile_for_target(kern, bits=bits, k_mode=mode, G=G, D=128, **kw)
    ptx = k.asm["ptx"]
    print(kern, bits, mode, "mma", ptx.count("mma.sync"), "cp.async", ptx.count("cp.async.cg"), "smem", k.metadata.shared)
"""


def test_kernels_compile_for_sm90():
    """triton.compile for GPUTarget("cuda", 90, 32) without a GPU (in a process without the
    interpreter): the tensor-core kernel (both softmax and convert variants) has mma.sync and
    pipelined cp.async loads; the CUDA-core
    one has no mma; the fused quantize-pack kernel compiles."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-c", COMPILE_SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = {tuple(line.split()[:3]): line.split() for line in out.stdout.splitlines()}
    for key in (("triton", "4", "KC"), ("triton", "2", "KT"), ("triton", "4", "KT")):
        row = rows[key]
        assert int(row[4]) > 0 and int(row[6]) > 0, row
        assert int(row[8]) <= 100 * 1024, row  # leaves room for >= 2 programs per SM (227 KB)
    assert int(rows[("cuda_core", "2", "KC")][4]) == 0
    assert ("quantize_pack", "2", "KT") in rows
