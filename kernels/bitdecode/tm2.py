"""Experimental: the tokens-in-M decode (kernels/bitdecode/tm.py), run as
`bitdecode_attention(..., impl="triton_tm2")`, restructured so that fewer registers are live. Each
product works on one half of the channels at a time, so only half a tile's words are held. A
register cap (maxnreg) can then buy more resident warps without spills.

    scores^T [16 tokens, G] = C_k[:, :D/2] . (q o s)[:D/2]^T + C_k[:, D/2:] . (q o s)[D/2:]^T   (all 8 slabs)
    lazy online softmax over the whole tile (one max per tile, rescale only past 2^LAZY)
    out^T[:D/2] += C_v[:, :D/2]^T . (p o s_v);   out^T[D/2:] += C_v[:, D/2:]^T . (p o s_v)

Why: Nsight Compute on an H200 showed the low-bit kernels bound by latency at 2 warps per scheduler
(kernels/NOTES-bitdecode.md, fifth session). ptxas builds this kernel (4 bits, G=1, 1 warp) with
168 registers and no spills, against 255 with spills for triton_tm (tests/kernels/test_bitdecode_tm2.py).
K per channel (KC) only. It uses the same cache, splits, combine and conversions as
kernels/bitdecode/.

At 2 bits with the subnormal convert, V's 16-bit words are read as 32-bit channel pairs (channel 2i
in the low half, 2i+1 in the high half), and the value product runs separately for the even and the
odd channels (`_pv_pairs`). Why: with 16-bit words Triton converted the codes in the load's layout
and sent the fp16 codes through shared memory to transpose them, every slab of every tile (read off
the sm_90a TTGIR; 90 STS and 45 BAR in the 2-bit build against 26 and 15 at 4 bits, where the 32-bit
words are copied with cp.async and loaded straight into the transposed operand's layout). 32-bit
words take the 4-bit path's route. `ASM_CHANNEL_PAIR_SUB` decodes them: for slots 2k and 2k+1, two
prmt gather byte k // 2 of each channel from the two tokens a thread holds, four ANDs leave the
codes as subnormals, slot j reading c * 2^(2 (j % 4) - 24); the operand p o s_v of slab j takes
2^(-2 (j % 4)) (exact) so that every product carries the same 2^-24 (`SUB_SCALE`).
"""

import triton
import triton.language as tl

from .codes import _codes_fp16, _half2, _pv_operand, _residual_part, _split_setup, _unscale_scores

# 2-bit V words read as int32 channel pairs: outputs (even slot 2k, even slot 2k+1, odd slot 2k, odd slot 2k+1),
# inputs $4, $5: the words of the two neighbouring tokens a thread holds (pack=2); byte k // 2 of each
# 16-bit half holds slots 4 (k // 2) .. 4 (k // 2) + 3, two bits each.
_ASM2_PAIRS = """{{
    .reg .b32 re, ro;
    prmt.b32 re, $4, $5, {sel_e};
    prmt.b32 ro, $4, $5, {sel_o};
    and.b32 $0, re, {m_lo};
    and.b32 $1, re, {m_hi};
    and.b32 $2, ro, {m_lo};
    and.b32 $3, ro, {m_hi};
}}"""


def _sel(byte: int) -> str:
    return hex(byte | byte << 4 | (4 + byte) << 8 | (4 + byte) << 12)


ASM_CHANNEL_PAIR_SUB = {k: _ASM2_PAIRS.format(sel_e=_sel(k // 2), sel_o=_sel(2 + k // 2), m_lo=hex(0x00030003 << 4 * (k % 2)),
                                              m_hi=hex(0x000C000C << 4 * (k % 2))) for k in range(4)}
_P0, _P1, _P2, _P3 = (tl.constexpr(ASM_CHANNEL_PAIR_SUB[k]) for k in range(4))


@triton.jit
def _pair_asm(words, asm: tl.constexpr):
    return tl.inline_asm_elementwise(asm, "=r,=r,=r,=r,r,r", [words], dtype=(tl.float16,) * 4, is_pure=True, pack=2)


@triton.jit
def _pair_codes(words, j: tl.constexpr, MAGIC: tl.constexpr):
    """int32 words of 2-bit channel pairs -> (even, odd) channels' codes of slot j as fp16 subnormals
    c * 2^(2 (j % 4) - 24). MAGIC 3: inline PTX (ASM_CHANNEL_PAIR_SUB; pure, so the call for slot
    2k + 1 is merged into the one for 2k); 4: the same values with plain ops."""
    if MAGIC == 3:
        k: tl.constexpr = j // 2
        if k == 0:
            e0, e1, o0, o1 = _pair_asm(words, _P0)
        elif k == 1:
            e0, e1, o0, o1 = _pair_asm(words, _P1)
        elif k == 2:
            e0, e1, o0, o1 = _pair_asm(words, _P2)
        else:
            e0, e1, o0, o1 = _pair_asm(words, _P3)
        if j % 2 == 0:
            return e0, o0
        return e1, o1
    mask: tl.constexpr = 3 << (2 * (j % 4))
    e = (words >> (8 * (j // 4))) & mask
    o = (words >> (16 + 8 * (j // 4))) & mask
    return e.to(tl.int16).to(tl.float16, bitcast=True), o.to(tl.int16).to(tl.float16, bitcast=True)


@triton.jit
def _scores_half(KC, c_base, row0, offs_h, q_h, km_t, s0, s1, s2, s3, s4, s5, s6, s7, BITS: tl.constexpr, MAGIC: tl.constexpr):
    """Adds one channel half's contribution to the 8 slabs' scores^T [ROWS, BLOCK_G]; returns them and q . z of the half."""
    ks, kz = _half2(tl.load(km_t + offs_h))  # [DH]
    qst = tl.trans((q_h * ks[None, :]).to(tl.float16))  # [DH, BLOCK_G]
    qz = tl.sum(q_h * kz[None, :], 1)  # [BLOCK_G]
    wk = tl.load(KC + c_base + row0 + offs_h[None, :])  # [ROWS, DH]
    s0 = tl.dot(_codes_fp16(wk, 0, BITS, MAGIC), qst, s0)
    s1 = tl.dot(_codes_fp16(wk, 1, BITS, MAGIC), qst, s1)
    s2 = tl.dot(_codes_fp16(wk, 2, BITS, MAGIC), qst, s2)
    s3 = tl.dot(_codes_fp16(wk, 3, BITS, MAGIC), qst, s3)
    s4 = tl.dot(_codes_fp16(wk, 4, BITS, MAGIC), qst, s4)
    s5 = tl.dot(_codes_fp16(wk, 5, BITS, MAGIC), qst, s5)
    s6 = tl.dot(_codes_fp16(wk, 6, BITS, MAGIC), qst, s6)
    s7 = tl.dot(_codes_fp16(wk, 7, BITS, MAGIC), qst, s7)
    return s0, s1, s2, s3, s4, s5, s6, s7, qz


@triton.jit
def _pv_half(VC, c_base, row0, offs_h, acc, p0, p1, p2, p3, p4, p5, p6, p7, BITS: tl.constexpr, MAGIC: tl.constexpr):
    """acc [DH, BLOCK_G] += C_v[:, half]^T . p_j for the 8 slabs (p_j = p o s_v in fp16, [ROWS, BLOCK_G])."""
    wv = tl.load(VC + c_base + row0 + offs_h[None, :])  # [ROWS, DH]
    acc = tl.dot(tl.trans(_codes_fp16(wv, 0, BITS, MAGIC)), p0, acc)
    acc = tl.dot(tl.trans(_codes_fp16(wv, 1, BITS, MAGIC)), p1, acc)
    acc = tl.dot(tl.trans(_codes_fp16(wv, 2, BITS, MAGIC)), p2, acc)
    acc = tl.dot(tl.trans(_codes_fp16(wv, 3, BITS, MAGIC)), p3, acc)
    acc = tl.dot(tl.trans(_codes_fp16(wv, 4, BITS, MAGIC)), p4, acc)
    acc = tl.dot(tl.trans(_codes_fp16(wv, 5, BITS, MAGIC)), p5, acc)
    acc = tl.dot(tl.trans(_codes_fp16(wv, 6, BITS, MAGIC)), p6, acc)
    acc = tl.dot(tl.trans(_codes_fp16(wv, 7, BITS, MAGIC)), p7, acc)
    return acc


@triton.jit
def _pv_pairs(VC32, c_base32, row0_32, offs_q, acc_e, acc_o, p0, p1, p2, p3, p4, p5, p6, p7, MAGIC: tl.constexpr):
    """The 2-bit value product on one channel half read as int32 channel pairs [ROWS, DQ]:
    acc_e [DQ, BLOCK_G] (even channels) and acc_o (odd) += C^T . p_j for the 8 slabs."""
    wv = tl.load(VC32 + c_base32 + row0_32 + offs_q[None, :])  # [ROWS, DQ] int32
    e, o = _pair_codes(wv, 0, MAGIC)
    acc_e, acc_o = tl.dot(tl.trans(e), p0, acc_e), tl.dot(tl.trans(o), p0, acc_o)
    e, o = _pair_codes(wv, 1, MAGIC)
    acc_e, acc_o = tl.dot(tl.trans(e), p1, acc_e), tl.dot(tl.trans(o), p1, acc_o)
    e, o = _pair_codes(wv, 2, MAGIC)
    acc_e, acc_o = tl.dot(tl.trans(e), p2, acc_e), tl.dot(tl.trans(o), p2, acc_o)
    e, o = _pair_codes(wv, 3, MAGIC)
    acc_e, acc_o = tl.dot(tl.trans(e), p3, acc_e), tl.dot(tl.trans(o), p3, acc_o)
    e, o = _pair_codes(wv, 4, MAGIC)
    acc_e, acc_o = tl.dot(tl.trans(e), p4, acc_e), tl.dot(tl.trans(o), p4, acc_o)
    e, o = _pair_codes(wv, 5, MAGIC)
    acc_e, acc_o = tl.dot(tl.trans(e), p5, acc_e), tl.dot(tl.trans(o), p5, acc_o)
    e, o = _pair_codes(wv, 6, MAGIC)
    acc_e, acc_o = tl.dot(tl.trans(e), p6, acc_e), tl.dot(tl.trans(o), p6, acc_o)
    e, o = _pair_codes(wv, 7, MAGIC)
    acc_e, acc_o = tl.dot(tl.trans(e), p7, acc_e), tl.dot(tl.trans(o), p7, acc_o)
    return acc_e, acc_o


@triton.jit
def _pj(s, m_i, vm_t, offs_w, j: tl.constexpr, BITS: tl.constexpr, MAGIC: tl.constexpr, PAIRS: tl.constexpr):
    """p = 2^(s - m) of slab j [ROWS, BLOCK_G], its p o s_v as the fp16 operand, and p * z_v (the sums
    over tokens are taken once per tile, after the 8 slabs are added: one cross-lane reduction, not 8).
    PAIRS: the operand of the channel-pair codes, which read 2^(2 (j % 4)) too large, takes its inverse."""
    p = tl.exp2(s - m_i[None, :])
    vs, vz = _half2(tl.load(vm_t + j * offs_w.shape[0] + offs_w))  # [ROWS]
    if PAIRS:
        pv = (p * (vs * (1.0 / (1 << (2 * (j % 4)))))[:, None]).to(tl.float16)
    else:
        pv = _pv_operand(p * vs[:, None], j, BITS, MAGIC)
    return pv, p, p * vz[:, None]


@triton.jit
def _tm2_split_kernel(
    Q, KC, KM, VC, VM, KR, VR, PartialOut, Lse, qk_scale,
    stride_qb, stride_qh, stride_cb, stride_ch, stride_kmb, stride_kmh, stride_vmb, stride_vmh, stride_rb, stride_rh, stride_rs,
    Hkv, n_tiles, tiles_per_split, num_splits, res_len,
    G: tl.constexpr, BLOCK_G: tl.constexpr, D: tl.constexpr, BITS: tl.constexpr, TILE: tl.constexpr,
    K_PER_CHANNEL: tl.constexpr, BLOCK_R: tl.constexpr, MAGIC: tl.constexpr, LAZY: tl.constexpr,
):
    """Arguments as kernels/bitdecode/tm.py's `_tm_split_kernel` (K_PER_CHANNEL must be True)."""
    PER: tl.constexpr = 8
    ROWS: tl.constexpr = TILE // PER
    DH: tl.constexpr = D // 2
    DQ: tl.constexpr = D // 4
    PAIRS: tl.constexpr = BITS == 2 and MAGIC >= 3 and D >= 64  # V as int32 channel pairs (module docstring; D/4 >= 16 rows for tl.dot)
    b, split, heads, g_mask, q, b64, kvh64, c_base, km_base, vm_base = _split_setup(
        Q, KM, VM, stride_qb, stride_qh, stride_cb, stride_ch, stride_kmb, stride_kmh, stride_vmb, stride_vmh, Hkv, G, BLOCK_G, D)
    offs_h = tl.arange(0, DH)
    offs_w = tl.arange(0, ROWS)
    offs_q = tl.arange(0, DQ)
    VC32 = VC.to(tl.pointer_type(tl.int32))
    c_base32 = c_base // 2  # even: both strides are multiples of a tile's 16 * D words
    q_ptr = Q + b64 * stride_qb + heads[:, None] * stride_qh + offs_h[None, :]
    if split < num_splits:
        q_lo = tl.load(q_ptr, mask=g_mask[:, None], other=0.0).to(tl.float32)  # [BLOCK_G, DH]
        q_hi = tl.load(q_ptr + DH, mask=g_mask[:, None], other=0.0).to(tl.float32)
        m_i = tl.full([BLOCK_G], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_G], tl.float32)
        z_i = tl.zeros([BLOCK_G], tl.float32)
        if PAIRS:
            acc_elo = tl.zeros([DQ, BLOCK_G], tl.float32)  # even channels of the low half, and so on
            acc_olo = tl.zeros([DQ, BLOCK_G], tl.float32)
            acc_ehi = tl.zeros([DQ, BLOCK_G], tl.float32)
            acc_ohi = tl.zeros([DQ, BLOCK_G], tl.float32)
        else:
            acc_lo = tl.zeros([DH, BLOCK_G], tl.float32)
            acc_hi = tl.zeros([DH, BLOCK_G], tl.float32)
        t_end = tl.minimum((split + 1) * tiles_per_split, n_tiles)
        for t in range(split * tiles_per_split, t_end):
            row0 = (t * ROWS + offs_w)[:, None] * D  # [ROWS, 1]
            z = tl.zeros([ROWS, BLOCK_G], tl.float32)
            s0, s1, s2, s3, s4, s5, s6, s7, qz = _scores_half(KC, c_base, row0, offs_h, q_lo, km_base + t * D,
                                                              z, z, z, z, z, z, z, z, BITS, MAGIC)
            s0, s1, s2, s3, s4, s5, s6, s7, qz2 = _scores_half(KC, c_base, row0 + DH, offs_h, q_hi, km_base + t * D + DH,
                                                               s0, s1, s2, s3, s4, s5, s6, s7, BITS, MAGIC)
            c = ((qz + qz2) * qk_scale)[None, :]
            s0 = _unscale_scores(s0, 0, BITS, MAGIC) * qk_scale + c
            s1 = _unscale_scores(s1, 1, BITS, MAGIC) * qk_scale + c
            s2 = _unscale_scores(s2, 2, BITS, MAGIC) * qk_scale + c
            s3 = _unscale_scores(s3, 3, BITS, MAGIC) * qk_scale + c
            s4 = _unscale_scores(s4, 4, BITS, MAGIC) * qk_scale + c
            s5 = _unscale_scores(s5, 5, BITS, MAGIC) * qk_scale + c
            s6 = _unscale_scores(s6, 6, BITS, MAGIC) * qk_scale + c
            s7 = _unscale_scores(s7, 7, BITS, MAGIC) * qk_scale + c
            # the 8 slabs combined elementwise first, so each statistic takes one cross-lane reduction per tile
            mx = tl.max(tl.maximum(tl.maximum(tl.maximum(s0, s1), tl.maximum(s2, s3)),
                                   tl.maximum(tl.maximum(s4, s5), tl.maximum(s6, s7))), 0)
            m_new = tl.maximum(m_i, mx)
            if tl.max(m_new - m_i, 0) > LAZY:  # rescale only when the max grew by more than 2^LAZY
                alpha = tl.exp2(m_i - m_new)
                if PAIRS:
                    acc_elo = acc_elo * alpha[None, :]
                    acc_olo = acc_olo * alpha[None, :]
                    acc_ehi = acc_ehi * alpha[None, :]
                    acc_ohi = acc_ohi * alpha[None, :]
                else:
                    acc_lo = acc_lo * alpha[None, :]
                    acc_hi = acc_hi * alpha[None, :]
                l_i = l_i * alpha
                z_i = z_i * alpha
                m_i = m_new
            vm_t = vm_base + t * TILE
            p0, a0, b0 = _pj(s0, m_i, vm_t, offs_w, 0, BITS, MAGIC, PAIRS)
            p1, a1, b1 = _pj(s1, m_i, vm_t, offs_w, 1, BITS, MAGIC, PAIRS)
            p2, a2, b2 = _pj(s2, m_i, vm_t, offs_w, 2, BITS, MAGIC, PAIRS)
            p3, a3, b3 = _pj(s3, m_i, vm_t, offs_w, 3, BITS, MAGIC, PAIRS)
            p4, a4, b4 = _pj(s4, m_i, vm_t, offs_w, 4, BITS, MAGIC, PAIRS)
            p5, a5, b5 = _pj(s5, m_i, vm_t, offs_w, 5, BITS, MAGIC, PAIRS)
            p6, a6, b6 = _pj(s6, m_i, vm_t, offs_w, 6, BITS, MAGIC, PAIRS)
            p7, a7, b7 = _pj(s7, m_i, vm_t, offs_w, 7, BITS, MAGIC, PAIRS)
            l_i = l_i + tl.sum(((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)), 0)
            z_i = z_i + tl.sum(((b0 + b1) + (b2 + b3)) + ((b4 + b5) + (b6 + b7)), 0)
            if PAIRS:
                row0_32 = (t * ROWS + offs_w)[:, None] * DH  # [ROWS, 1] in int32 words
                acc_elo, acc_olo = _pv_pairs(VC32, c_base32, row0_32, offs_q, acc_elo, acc_olo,
                                             p0, p1, p2, p3, p4, p5, p6, p7, MAGIC)
                acc_ehi, acc_ohi = _pv_pairs(VC32, c_base32, row0_32 + DQ, offs_q, acc_ehi, acc_ohi,
                                             p0, p1, p2, p3, p4, p5, p6, p7, MAGIC)
            else:
                acc_lo = _pv_half(VC, c_base, row0, offs_h, acc_lo, p0, p1, p2, p3, p4, p5, p6, p7, BITS, MAGIC)
                acc_hi = _pv_half(VC, c_base, row0 + DH, offs_h, acc_hi, p0, p1, p2, p3, p4, p5, p6, p7, BITS, MAGIC)
        sub = 16777216.0 if MAGIC >= 3 else 1.0  # SUB_SCALE: the subnormal convert's 2^-24
        if PAIRS:
            out_elo = tl.trans(acc_elo * sub + z_i[None, :])  # [BLOCK_G, DQ]
            out_olo = tl.trans(acc_olo * sub + z_i[None, :])
            out_ehi = tl.trans(acc_ehi * sub + z_i[None, :])
            out_ohi = tl.trans(acc_ohi * sub + z_i[None, :])
        else:
            out_lo = tl.trans(acc_lo * sub + z_i[None, :])  # [BLOCK_G, DH]
            out_hi = tl.trans(acc_hi * sub + z_i[None, :])
    else:
        m_i, l_i, out = _residual_part(q, KR, VR, b64 * stride_rb + kvh64 * stride_rh, stride_rs, res_len, qk_scale,
                                       BLOCK_G, D, BLOCK_R, False)
        if PAIRS:  # channel h * DH + 2 i + parity -> [BLOCK_G, i, parity, h]
            x_lo, x_hi = tl.split(tl.permute(tl.reshape(out, [BLOCK_G, 2, DQ, 2]), [0, 2, 3, 1]))
            out_elo, out_olo = tl.split(x_lo)
            out_ehi, out_ohi = tl.split(x_hi)
        else:
            out_lo, out_hi = tl.split(tl.permute(tl.reshape(out, [BLOCK_G, 2, DH]), [0, 2, 1]))
    has = l_i > 0
    inv = 1.0 / tl.where(has, l_i, 1.0)
    lse = tl.where(has, (m_i + tl.log2(tl.where(has, l_i, 1.0))) * 0.6931471805599453, float("-inf"))
    total = num_splits + 1
    row = (b * Hkv * G + heads) * total + split  # [BLOCK_G]
    if PAIRS:
        out_ptr = PartialOut + row[:, None] * D + 2 * offs_q[None, :]
        tl.store(out_ptr, out_elo * inv[:, None], mask=g_mask[:, None])
        tl.store(out_ptr + 1, out_olo * inv[:, None], mask=g_mask[:, None])
        tl.store(out_ptr + DH, out_ehi * inv[:, None], mask=g_mask[:, None])
        tl.store(out_ptr + DH + 1, out_ohi * inv[:, None], mask=g_mask[:, None])
    else:
        out_ptr = PartialOut + row[:, None] * D + offs_h[None, :]
        tl.store(out_ptr, out_lo * inv[:, None], mask=g_mask[:, None])
        tl.store(out_ptr + DH, out_hi * inv[:, None], mask=g_mask[:, None])
    tl.store(Lse + row, lse, mask=g_mask)
