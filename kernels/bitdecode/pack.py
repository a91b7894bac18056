"""The fused quantize-and-pack kernel of the BitDecoding cache: K and V of a block of tokens, in one
launch, to packed codes and fp16 (scale, zero) pairs in the layout of quant.py (the arithmetic of
quant.quant_params / quant.quant_codes, in the same order).
"""

import torch
import triton
import triton.language as tl

from ..targets import target

# One program per (b, kv head, tile, K or V), no pipelined loop and no tl.dot: nothing in its launch
# depends on the GPU beyond sm_80's limits (kernels/targets.py), so every capability uses it; CI
# compiles it for sm_80, sm_89 and sm_90a (tests/kernels/test_compile_targets.py).
PACK_WARPS = 4


@triton.jit
def _qpack_tile(X, C, M, x_base, c_base, m_base, stride_xs, t,
                PER_CHANNEL: tl.constexpr, BITS: tl.constexpr, TILE: tl.constexpr, D: tl.constexpr):
    """Quantize and pack tile t of X (TILE tokens x D, fp16), one 16-token slab (one bit slot) at a
    time: min-max per channel over the tile (PER_CHANNEL; a first pass finds the statistics) or per
    token over D channels; ORs each slab's codes into the ROWS x D words and stores the (scale,
    zero) pairs. The arithmetic is kernels/bitdecode/quant.py's quant_params / quant_codes, in the same order."""
    PER: tl.constexpr = 8
    ROWS: tl.constexpr = TILE // PER
    QMAX: tl.constexpr = (1 << BITS) - 1
    offs_i = tl.arange(0, ROWS)
    offs_d = tl.arange(0, D)
    x_ptr = X + x_base + offs_i[:, None] * stride_xs + offs_d[None, :]  # [ROWS, D] pointers of slab 0
    if PER_CHANNEL:
        mn = tl.full([ROWS, D], float("inf"), tl.float32)
        mx = tl.full([ROWS, D], float("-inf"), tl.float32)
        for j in tl.static_range(PER):  # pass 1: per-channel min and max over the tile's tokens
            x = tl.load(x_ptr + (t * TILE + j * ROWS) * stride_xs).to(tl.float32)  # [ROWS, D]
            mn = tl.minimum(mn, x)
            mx = tl.maximum(mx, x)
        mn_d = tl.min(mn, 0)  # [D]
        s16 = tl.math.div_rn(tl.max(mx, 0) - mn_d, QMAX * 1.0).to(tl.float16)
        z16 = mn_d.to(tl.float16)
        tl.store(M + m_base + (t * D + offs_d) * 2, s16)  # meta [tiles, D, 2]: (scale, zero) pairs
        tl.store(M + m_base + (t * D + offs_d) * 2 + 1, z16)
        s_c = s16.to(tl.float32)[None, :]
        z_c = z16.to(tl.float32)[None, :]
        inv_c = tl.math.div_rn(1.0, tl.where(s_c > 0, s_c, 1.0))  # a constant group: every code 0, x^ = z
    words = tl.zeros([ROWS, D], tl.int32)
    for j in tl.static_range(PER):  # pass 2: codes of slab j into bit slot j
        x = tl.load(x_ptr + (t * TILE + j * ROWS) * stride_xs).to(tl.float32)  # [ROWS, D]
        if PER_CHANNEL:
            s, z, inv = s_c, z_c, inv_c
        else:
            tok = t * TILE + j * ROWS + offs_i  # [ROWS]
            mn_t = tl.min(x, 1)
            s16 = tl.math.div_rn(tl.max(x, 1) - mn_t, QMAX * 1.0).to(tl.float16)
            z16 = mn_t.to(tl.float16)
            tl.store(M + m_base + tok * 2, s16)
            tl.store(M + m_base + tok * 2 + 1, z16)
            s = s16.to(tl.float32)[:, None]
            z = z16.to(tl.float32)[:, None]
            inv = tl.math.div_rn(1.0, tl.where(s > 0, s, 1.0))
        c = tl.floor((x - z) * inv + 0.5)  # the launch turns fma fusion off: mul and add round separately
        c = tl.minimum(tl.maximum(c, 0.0), QMAX * 1.0).to(tl.int32)
        words = words | (c << (j * BITS))
    tl.store(C + c_base + (t * ROWS + offs_i)[:, None] * D + offs_d[None, :], words.to(C.dtype.element_ty))


@triton.jit
def _quantize_pack_kernel(
    K, V, KCo, KMo, VCo, VMo,  # k, v [B, Hkv, n, D] fp16; outputs as in QuantKVCache (views at the flush offset)
    stride_kb, stride_kh, stride_ks, stride_vb, stride_vh, stride_vs,
    stride_cb, stride_ch, stride_kmb, stride_kmh, stride_vmb, stride_vmh, stride_vcb, stride_vch,
    Hkv,
    K_PER_CHANNEL: tl.constexpr, BITS: tl.constexpr, TILE: tl.constexpr, D: tl.constexpr,
):
    """One launch quantizes and packs K and V: program (b * Hkv + kv head, tile, 0 for K / 1 for V)."""
    pid_bk = tl.program_id(0)
    t = tl.program_id(1)
    b = (pid_bk // Hkv).to(tl.int64)
    kvh = (pid_bk % Hkv).to(tl.int64)
    if tl.program_id(2) == 0:
        _qpack_tile(K, KCo, KMo, b * stride_kb + kvh * stride_kh, b * stride_cb + kvh * stride_ch,
                    b * stride_kmb + kvh * stride_kmh, stride_ks, t, K_PER_CHANNEL, BITS, TILE, D)
    else:
        _qpack_tile(V, VCo, VMo, b * stride_vb + kvh * stride_vh, b * stride_vcb + kvh * stride_vch,
                    b * stride_vmb + kvh * stride_vmh, stride_vs, t, False, BITS, TILE, D)


# -------------------------------------------------------------------------------------- host wrapper


def quantize_pack_kv(k, v, k_codes, k_meta, v_codes, v_meta, *, bits: int, tile: int, k_per_channel: bool):
    """Fused quantize-and-pack of k, v [B, Hkv, n, D] (n a multiple of `tile`) into the given
    output views (QuantKVCache's layout; codes and metadata rows must be contiguous in their last
    dims). One kernel launch for K and V."""
    B, Hkv, n, D = k.shape
    assert v.shape == k.shape and n % tile == 0, (k.shape, v.shape, tile)
    target(k.device)  # raises UnsupportedGPU below sm_80
    k, v = (t.to(torch.float16) for t in (k, v))
    k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (k, v))
    for t in (k_codes, v_codes):
        assert t.stride(3) == 1 and t.stride(2) == D, "codes rows must be contiguous [.., rows, D]"
    assert v_meta.stride(3) == 1 and v_meta.stride(2) == 2
    if k_per_channel:
        assert k_meta.stride(4) == 1 and k_meta.stride(3) == 2 and k_meta.stride(2) == 2 * D
    else:
        assert k_meta.stride(3) == 1 and k_meta.stride(2) == 2
    _quantize_pack_kernel[(B * Hkv, n // tile, 2)](
        k, v, k_codes, k_meta, v_codes, v_meta,
        k.stride(0), k.stride(1), k.stride(2), v.stride(0), v.stride(1), v.stride(2),
        k_codes.stride(0), k_codes.stride(1), k_meta.stride(0), k_meta.stride(1), v_meta.stride(0), v_meta.stride(1),
        v_codes.stride(0), v_codes.stride(1),
        Hkv, K_PER_CHANNEL=k_per_channel, BITS=bits, TILE=tile, D=D,
        num_warps=PACK_WARPS,
        enable_fp_fusion=False,  # (x - z) * inv + 0.5 as two roundings, exactly as torch computes it
    )
