"""Experimental: the low-bit decode with the tokens, not the query heads, in the rows of the tensor-core
products ("tokens in M"). Not yet timed on a GPU and not used by the notebooks; see
kernels/NOTES-bitdecode.md for why it exists and what the next GPU run should compare.

The kernel of kernels/bitdecode.py puts the G query heads of a KV head in the rows (M) of its
products, padded to 16. At G = 1 (32/32 heads) 15 of the 16 rows are padding, and every softmax
and rescaling step is done on them; two warps are the most it can use without repeating the
dequantization of K. Here the products are transposed, with the 16 tokens of a slab in M and the
query heads in N (Triton pads N to the 8 of an m16n8k16 instruction, not to 16):

    scores^T [16 tokens, G] = C_k [16, D] . (q o s)^T [D, G]        (K per channel, KC)
    out^T    [D, G]        += C_v^T [D, 16] . (p o s_v) [16, G]

so the softmax works on 16 x G values per slab instead of 16 x 16, the accumulator is [D, G] and is
rescaled only when the running maximum grows by more than a factor 2^8 (the lazy rescaling of
FlashAttention-3), and the instructions per code are mostly the conversion itself. Same cache, splits, metadata,
conversions (plain / magic / inline PTX) and combine as kernels/bitdecode.py.
"""

import math
import os

import torch
import triton
import triton.language as tl

from msrbook.kernels.bitdecode import (_codes_fp16, _cvt_mode, _half2, _residual_part, _store_split, default_config,
                                       plan)
from msrbook.kernels.decode_attention import _decode_combine_kernel, device_limits


@triton.jit
def _tm_split_kernel(
    Q, KC, KM, VC, VM, KR, VR, PartialOut, Lse, qk_scale,
    stride_qb, stride_qh, stride_cb, stride_ch, stride_kmb, stride_kmh, stride_vmb, stride_vmh, stride_rb, stride_rh, stride_rs,
    Hkv, n_tiles, tiles_per_split, num_splits, res_len,
    G: tl.constexpr, BLOCK_G: tl.constexpr, D: tl.constexpr, BITS: tl.constexpr, TILE: tl.constexpr,
    K_PER_CHANNEL: tl.constexpr, BLOCK_R: tl.constexpr, MAGIC: tl.constexpr, LAZY: tl.constexpr,
):
    """Arguments as kernels/bitdecode.py's `_bitdecode_split_kernel`; BLOCK_G may be 1. LAZY: the
    online softmax rescales the accumulator only when the running maximum grows by more than LAZY
    (base 2): until then p = 2^(s - m) <= 2^LAZY, which fp16 (p o s_v) and fp32 (sums) hold with
    their usual relative rounding; the final division by the same-based sum makes it exact math.
    The accumulator rescale ([D, 8] padded per slab) was a fifth of the loop's instructions."""
    PER: tl.constexpr = 8
    ROWS: tl.constexpr = TILE // PER
    pid_bk = tl.program_id(0)
    split = tl.program_id(1)
    b = pid_bk // Hkv
    kvh = pid_bk % Hkv
    offs_g = tl.arange(0, BLOCK_G)
    offs_d = tl.arange(0, D)
    offs_w = tl.arange(0, ROWS)
    heads = kvh * G + offs_g
    g_mask = offs_g < G
    q = tl.load(Q + b * stride_qb + heads[:, None] * stride_qh + offs_d[None, :],
                mask=g_mask[:, None], other=0.0).to(tl.float32)  # [BLOCK_G, D]
    b64, kvh64 = b.to(tl.int64), kvh.to(tl.int64)
    if split < num_splits:
        c_base = b64 * stride_cb + kvh64 * stride_ch
        km_base = KM + b64 * stride_kmb + kvh64 * stride_kmh
        vm_base = VM + b64 * stride_vmb + kvh64 * stride_vmh
        q16t = tl.trans(q.to(tl.float16))  # [D, BLOCK_G]
        q_sum = tl.sum(q, 1)  # [BLOCK_G]
        m_i = tl.full([BLOCK_G], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_G], tl.float32)
        z_i = tl.zeros([BLOCK_G], tl.float32)  # running sum of p * v_zero
        acc = tl.zeros([D, BLOCK_G], tl.float32)  # out^T
        t_end = tl.minimum((split + 1) * tiles_per_split, n_tiles)
        for t in range(split * tiles_per_split, t_end):
            w_offs = (t * ROWS + offs_w)[:, None] * D + offs_d[None, :]  # [ROWS, D]
            wk = tl.load(KC + c_base + w_offs)
            wv = tl.load(VC + c_base + w_offs)
            if K_PER_CHANNEL:
                ks, kz = _half2(tl.load(km_base + t * D + offs_d))  # [D]
                qst = tl.trans((q * ks[None, :]).to(tl.float16))  # [D, BLOCK_G]
                qz = tl.sum(q * kz[None, :], 1)  # [BLOCK_G]
            else:
                qst, qz = q16t, q_sum
            for j in tl.static_range(PER):
                tok = t * TILE + j * ROWS + offs_w  # [ROWS]
                st = tl.dot(_codes_fp16(wk, j, BITS, MAGIC), qst)  # [ROWS, BLOCK_G]
                if K_PER_CHANNEL:
                    st = st + qz[None, :]
                else:
                    kst, kzt = _half2(tl.load(km_base + tok))
                    st = st * kst[:, None] + kzt[:, None] * q_sum[None, :]
                st = st * qk_scale
                m_new = tl.maximum(m_i, tl.max(st, 0))
                if tl.max(m_new - m_i, 0) > LAZY:  # rescale only when the max grew by more than 2^LAZY
                    alpha = tl.exp2(m_i - m_new)
                    acc = acc * alpha[None, :]
                    l_i = l_i * alpha
                    z_i = z_i * alpha
                    m_i = m_new
                p = tl.exp2(st - m_i[None, :])  # [ROWS, BLOCK_G], <= 2^LAZY
                l_i = l_i + tl.sum(p, 0)
                vs, vz = _half2(tl.load(vm_base + tok))  # [ROWS]
                z_i = z_i + tl.sum(p * vz[:, None], 0)
                pvs = (p * vs[:, None]).to(tl.float16)  # [ROWS, BLOCK_G]
                acc = tl.dot(tl.trans(_codes_fp16(wv, j, BITS, MAGIC)), pvs, acc)  # [D, BLOCK_G]
        out = tl.trans(acc + z_i[None, :])  # [BLOCK_G, D]
    else:
        m_i, l_i, out = _residual_part(q, KR, VR, b64 * stride_rb + kvh64 * stride_rh, stride_rs, res_len, qk_scale,
                                       BLOCK_G, D, BLOCK_R, False)
    _store_split(PartialOut, Lse, out, m_i, l_i, b, Hkv, G, heads, g_mask, split, num_splits + 1, D)


def bitdecode_tm_attention(q, cache, *, sm_scale=None, num_splits=None, num_warps=1, num_stages=None, magic_cvt=None):
    """Decode attention of q [B, H, D] over a QuantKVCache with the tokens-in-M kernel -> [B, H, D].
    num_warps defaults to 1 (the 16-token score product has one m16 row tile; a second warp would
    repeat it). magic_cvt as in kernels/bitdecode.py (default "asm" on a GPU, plain under the
    Triton interpreter)."""
    B, H, D = q.shape
    assert (cache.B, cache.D) == (B, D) and H % cache.Hkv == 0, (q.shape, cache.B, cache.Hkv, cache.D)
    sm_scale = 1.0 / math.sqrt(D) if sm_scale is None else sm_scale
    cfg, Hkv, G = cache.cfg, cache.Hkv, H // cache.Hkv
    n_tiles, splits, tiles_per_split = plan(q, cache, num_splits)
    dflt = default_config(B, Hkv, n_tiles, device_limits(q.device)["sm_count"])
    if magic_cvt is None:
        magic_cvt = False if os.environ.get("TRITON_INTERPRET") == "1" else "asm"
    q = q if q.stride(-1) == 1 else q.contiguous()
    partial = torch.empty(B * H, splits + 1, D, device=q.device, dtype=torch.float32)
    lse = torch.empty(B * H, splits + 1, device=q.device, dtype=torch.float32)
    out = torch.empty(B, H, D, device=q.device, dtype=q.dtype)
    km, vm = cache.k_meta.view(torch.int32)[..., 0], cache.v_meta.view(torch.int32)[..., 0]
    kr = cache._res_k
    _tm_split_kernel[(B * Hkv, splits + 1)](
        q, cache.k_codes, km, cache.v_codes, vm, kr, cache._res_v, partial, lse, sm_scale * 1.4426950408889634,
        q.stride(0), q.stride(1), cache._k_codes.stride(0), cache._k_codes.stride(1),
        km.stride(0), km.stride(1), vm.stride(0), vm.stride(1), kr.stride(0), kr.stride(1), kr.stride(2),
        Hkv, n_tiles, tiles_per_split, splits, cache.res_len,
        G=G, BLOCK_G=triton.next_power_of_2(G), D=D, BITS=cfg.bits, TILE=cfg.tile, K_PER_CHANNEL=cfg.k_mode == "KC",
        BLOCK_R=16, MAGIC=_cvt_mode(magic_cvt), LAZY=8.0,
        num_warps=num_warps, num_stages=num_stages or dflt.num_stages,
    )
    total = splits + 1
    _decode_combine_kernel[(B * H,)](
        partial, lse, out, total,
        D=D, BLOCK_SPLITS=triton.next_power_of_2(total), CHUNK=min(16, triton.next_power_of_2(total)), num_warps=4,
    )
    return out
