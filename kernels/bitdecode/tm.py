"""Experimental: the low-bit decode with the tokens, not the query heads, in the rows of the tensor-core
products ("tokens in M"), run as `bitdecode_attention(..., impl="triton_tm")` (kernels/bitdecode/,
which launches it with the same cache, splits and combine). Notebook 02 of the bitdecoding chapter
times a few of its configurations at the claim's shape beside the default kernel; on an H200 (the
first GPU check) it was the faster 2-bit decode (0.181 against 0.201 ms, 32 splits, 1 warp, 2
stages) and the slower 4-bit one (0.269 against 0.235 ms). See kernels/NOTES-bitdecode.md.

The kernel of kernels/bitdecode/ puts the G query heads of a KV head in the rows (M) of its
products, padded to 16. At G = 1 (32/32 heads) 15 of the 16 rows are padding, and every softmax
and rescaling step is done on them; two warps are the most it can use without repeating the
dequantization of K. Here the products are transposed, with the 16 tokens of a slab in M and the
query heads in N (Triton pads N to the 8 of an m16n8k16 instruction, not to 16):

    scores^T [16 tokens, G] = C_k [16, D] . (q o s)^T [D, G]        (K per channel, KC)
    out^T    [D, G]        += C_v^T [D, 16] . (p o s_v) [16, G]

so the softmax works on 16 x G values per slab instead of 16 x 16, the accumulator is [D, G] and is
rescaled only when the running maximum grows by more than a factor 2^8 (the lazy rescaling of
FlashAttention-3), and the instructions per code are mostly the conversion itself. Same cache, splits, metadata,
conversions (plain / magic / inline PTX) and combine as kernels/bitdecode/.
"""

import triton
import triton.language as tl

from .codes import _codes_fp16, _half2, _pv_operand, _residual_part, _split_setup, _store_split, _unscale_scores


@triton.jit
def _tm_split_kernel(
    Q, KC, KM, VC, VM, KR, VR, PartialOut, Lse, qk_scale,
    stride_qb, stride_qh, stride_cb, stride_ch, stride_kmb, stride_kmh, stride_vmb, stride_vmh, stride_rb, stride_rh, stride_rs,
    Hkv, n_tiles, tiles_per_split, num_splits, res_len,
    G: tl.constexpr, BLOCK_G: tl.constexpr, D: tl.constexpr, BITS: tl.constexpr, TILE: tl.constexpr,
    K_PER_CHANNEL: tl.constexpr, BLOCK_R: tl.constexpr, MAGIC: tl.constexpr, LAZY: tl.constexpr,
):
    """Arguments as kernels/bitdecode/'s `_bitdecode_split_kernel`; BLOCK_G may be 1. LAZY: the
    online softmax rescales the accumulator only when the running maximum grows by more than LAZY
    (base 2): until then p = 2^(s - m) <= 2^LAZY, which fp16 (p o s_v) and fp32 (sums) hold with
    their usual relative rounding; the final division by the same-based sum makes it exact math.
    The accumulator rescale ([D, 8] padded per slab) was a fifth of the loop's instructions."""
    PER: tl.constexpr = 8
    ROWS: tl.constexpr = TILE // PER
    b, split, heads, g_mask, q, b64, kvh64, c_base, km_base, vm_base = _split_setup(
        Q, KM, VM, stride_qb, stride_qh, stride_cb, stride_ch, stride_kmb, stride_kmh, stride_vmb, stride_vmh, Hkv, G, BLOCK_G, D)
    offs_d = tl.arange(0, D)
    offs_w = tl.arange(0, ROWS)  # [ROWS] word rows of a tile
    if split < num_splits:
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
                st = _unscale_scores(tl.dot(_codes_fp16(wk, j, BITS, MAGIC), qst), j, BITS, MAGIC)  # [ROWS, BLOCK_G]
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
                pvs = _pv_operand(p * vs[:, None], j, BITS, MAGIC)  # [ROWS, BLOCK_G]
                acc = tl.dot(tl.trans(_codes_fp16(wv, j, BITS, MAGIC)), pvs, acc)  # [D, BLOCK_G]
        if MAGIC >= 3:
            acc = acc * 16777216.0  # SUB_SCALE: the subnormal convert's 2^-24
        out = tl.trans(acc + z_i[None, :])  # [BLOCK_G, D]
    else:
        m_i, l_i, out = _residual_part(q, KR, VR, b64 * stride_rb + kvh64 * stride_rh, stride_rs, res_len, qk_scale,
                                       BLOCK_G, D, BLOCK_R, False)
    _store_split(PartialOut, Lse, out, m_i, l_i, b, Hkv, G, heads, g_mask, split, num_splits + 1, D)
