"""Low-bit (4/2-bit) KV-cache decode attention and the fused quantize-and-pack kernel, in Triton.

Glossary: B batch, H query heads, Hkv KV heads, G = H // Hkv, T cached tokens, D head dim, b bits,
PER = 8 codes per word (int32 at 4 bits, int16 at 2 bits), TILE tokens per packed tile (128),
ROWS = TILE // PER word rows per tile (16). The cache layout (kernels/bitdecode/quant.py, `QuantKVCache`): codes
packed along tokens, word row i of a tile holds token j * ROWS + i in bit slot j, so
`(words >> b*j) & (2^b - 1)` is a slab of ROWS consecutive tokens: the [ROWS, D] operand of one
pair of `tl.dot`s. Triton then loads the words from shared memory straight into the tensor-core
operand's register layout and shifts, masks and converts them there (checked in the compiled
TTGIR: no fp16 copy of the tile goes through shared memory).

Scale and zero are folded out of the inner loop, so the per-element work is only turning a code into
fp16 (small integers are exact in fp16): a shift, a mask and a convert (magic_cvt=False), the
0x6400 magic number (True), inline PTX that decodes four codes of two words in five instructions
("asm", `ASM_SLOT_PAIR`), or on a GPU, by default, the same as fp16 subnormals c * 2^-24 in three
("sub", `ASM_SLOT_PAIR_SUB`; the scale is undone once, in fp32). The tensor cores do the rest:
  K per channel over the tile's tokens (KC):  q . (c o s + z) = (q o s) . c + q . z
      (q o s computed once per tile, q . z is one number per query head and tile)
  K per token (KT):                           q . (c s_n + z_n) = s_n (q . c) + z_n sum(q)
  V per token:                                sum_n p_n (c_n s_n + z_n) = (p o s) . c + sum_n p_n z_n
Stage 1 is split-KV flash decoding: one program per (b, kv head, split) streams whole tiles of the
packed part with an online softmax, with the G query heads of the KV head folded into the rows of
the tl.dot operand (padded to 16). One extra split per (b, kv head) attends to the fp16 residual.
Stage 2 merges all splits by log-sum-exp (the dense kernel's combine).
"""

import math
import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from msrbook.kernels.decode_attention import _decode_combine_kernel, decode_attention, decode_attention_ref, device_limits

# ---------------------------------------------------------------------------------------- config space

SWEEP = {  # knob ranges the notebook's gpu profile and tools/gpu_bitdecode_check.py try
    "num_splits": (16, 32, 64),
    "num_warps": (4, 8),
    "num_stages": (2, 3, 4),
}


@dataclass(frozen=True)
class BitDecodeConfig:
    num_splits: int  # splits of the packed part per (b, kv head); the residual adds one more
    num_warps: int  # warps per stage-1 program
    num_stages: int  # software-pipelining depth of the packed-word loads


def default_config(B: int, Hkv: int, n_tiles: int, sm_count: int) -> BitDecodeConfig:
    """About 8 programs per SM (as the dense kernel's sweep found best), rounded down to a power of
    two of splits, each split >= 4 tiles so the fp32 partial outputs (2 * G * D * 4 bytes per split)
    stay small beside the packed words it reads, and <= 64 tiles: at batch 64, 32K tokens the
    one-split-per-head config (256 tiles in one program) gave a 4e-2 relative error for int4 with
    the plain convert on an H200 (the cause is not found; 4 splits pass), see
    kernels/NOTES-bitdecode.md. 2 warps: with the query heads padded to 16 rows the score product
    has only two 8-wide column tiles, and a third or fourth warp would repeat the dequantization of
    K (read off the compiled PTX: 384 instead of 256 converts per thread per tile); the H200 sweep
    agrees (0.24 ms at 2 warps, 0.39 ms at 4). 3 stages."""
    most = max(1, min(triton.cdiv(8 * sm_count, B * Hkv), n_tiles // 4, 256))
    most = max(most, triton.cdiv(n_tiles, 64))
    splits = 1 << (most.bit_length() - 1)
    if triton.cdiv(n_tiles, splits) > 64:
        splits *= 2
    return BitDecodeConfig(splits, num_warps=2, num_stages=3)


# ------------------------------------------------------------------------------------------- kernels


@triton.jit
def _half2(w):
    """A 32-bit word holding an fp16 pair (scale in the low half, zero in the high half, as the
    cache stores them side by side) -> (scale, zero) in fp32. One 4-byte load per pair lets Triton
    pipeline the metadata loads with cp.async like the packed words."""
    lo = (w & 0xFFFF).to(tl.int16).to(tl.float16, bitcast=True)
    hi = ((w >> 16) & 0xFFFF).to(tl.int16).to(tl.float16, bitcast=True)
    return lo.to(tl.float32), hi.to(tl.float32)


# PTX for the "asm" convert: two words per call (Triton's pack=2: the two elements a thread holds
# side by side, which in the tensor-core operand layout are the two K-dim neighbours that share one
# 32-bit register) -> two half2 registers: slots 2k and 2k+1 of both words. 0x6400 | c is the fp16
# number 1024 + c; (c << 4) | 0x6400 is 1024 + 16 c, so x / 16 - 64 = c. All exact in fp16.
#   4-bit (int32 words w0, w1): prmt puts byte k of w0 in bytes 0-1 and byte k of w1 in bytes 2-3,
#     then two lop3 ((t & mask) | 0x64006400, LUT 0xEA), one sub.f16x2 and one fma.rn.f16x2:
#     5 instructions for 4 codes (the plain path: a bfe and a quarter-rate cvt per code).
#   2-bit (int16 words w0, w1, which Triton passes packed in one register as w0 | w1 << 16): a
#     shift by 4k, then the same two lop3 with 2-bit masks and the two f16x2 ops.
_ASM_TAIL = """
    mov.b32 rm, 0x64006400;
    sub.f16x2 $0, rlo, rm;
    mov.b32 rs, {scale};
    mov.b32 rb, {bias};
    fma.rn.f16x2 $1, rhi, rs, rb;
}}"""
_ASM4 = """{{
    .reg .b32 rt, rlo, rhi, rm, rs, rb;
    prmt.b32 rt, $2, $3, {sel};
    lop3.b32 rlo, rt, 0x000F000F, 0x64006400, 0xEA;
    lop3.b32 rhi, rt, 0x00F000F0, 0x64006400, 0xEA;""" + _ASM_TAIL
_ASM2 = """{{
    .reg .b32 rt, rlo, rhi, rm, rs, rb;
    shr.b32 rt, $2, {shift};
    lop3.b32 rlo, rt, 0x00030003, 0x64006400, 0xEA;
    lop3.b32 rhi, rt, 0x000C000C, 0x64006400, 0xEA;""" + _ASM_TAIL
# fp16 pairs: 1/16 = 0x2C00, -64 = 0xD400 (4-bit high nibble); 1/4 = 0x3400, -256 = 0xDC00 (2-bit)
ASM_SLOT_PAIR = {
    (4, k): _ASM4.format(sel=hex(k | k << 4 | (4 + k) << 8 | (4 + k) << 12), scale="0x2C002C00", bias="0xD400D400")
    for k in range(4)
} | {(2, k): _ASM2.format(shift=4 * k, scale="0x34003400", bias="0xDC00DC00") for k in range(4)}


# The subnormal convert (magic_cvt="sub"): with a zero exponent field the 16-bit pattern c is the fp16
# subnormal c * 2^-24, exact, with no offset to remove, so the masks alone finish the job: 3
# instructions for 4 codes. The high code of a pair comes out as (2^b c) * 2^-24. The caller undoes
# the scale once, in fp32 (`_unscale_scores`, `_pv_operand`, `SUB_SCALE`): the tensor cores take
# fp16 subnormal inputs and multiply them exactly (products land far inside fp32's range).
_ASM4_SUB = """{{
    .reg .b32 rt;
    prmt.b32 rt, $2, $3, {sel};
    and.b32 $0, rt, 0x000F000F;
    and.b32 $1, rt, 0x00F000F0;
}}"""
_ASM2_SUB = """{{
    .reg .b32 rt;
    shr.b32 rt, $2, {shift};
    and.b32 $0, rt, 0x00030003;
    and.b32 $1, rt, 0x000C000C;
}}"""
ASM_SLOT_PAIR_SUB = {(4, k): _ASM4_SUB.format(sel=hex(k | k << 4 | (4 + k) << 8 | (4 + k) << 12)) for k in range(4)} | {
    (2, k): _ASM2_SUB.format(shift=4 * k) for k in range(4)}
SUB_SCALE = 2.0**24  # a subnormal-converted code c reads c * 2^-24 (low slot of a pair)

# one constexpr global per program: a jit function cannot index a Python dict
_A4_0, _A4_1, _A4_2, _A4_3 = (tl.constexpr(ASM_SLOT_PAIR[(4, k)]) for k in range(4))
_A2_0, _A2_1, _A2_2, _A2_3 = (tl.constexpr(ASM_SLOT_PAIR[(2, k)]) for k in range(4))
_S4_0, _S4_1, _S4_2, _S4_3 = (tl.constexpr(ASM_SLOT_PAIR_SUB[(4, k)]) for k in range(4))
_S2_0, _S2_1, _S2_2, _S2_3 = (tl.constexpr(ASM_SLOT_PAIR_SUB[(2, k)]) for k in range(4))


@triton.jit
def _asm_pair(words, asm: tl.constexpr, cons: tl.constexpr):
    return tl.inline_asm_elementwise(asm, cons, [words], dtype=(tl.float16, tl.float16), is_pure=True, pack=2)


@triton.jit
def _codes_pair_asm(words, k: tl.constexpr, BITS: tl.constexpr, SUB: tl.constexpr = False):
    """Slots 2k and 2k+1 of every word as fp16 codes (see ASM_SLOT_PAIR; SUB: ASM_SLOT_PAIR_SUB, the
    subnormal form). Pure, so the second call with the same words and k is merged into the first by
    the compiler (CSE)."""
    if SUB:
        if BITS == 4:
            if k == 0:
                return _asm_pair(words, _S4_0, "=r,=r,r,r")
            elif k == 1:
                return _asm_pair(words, _S4_1, "=r,=r,r,r")
            elif k == 2:
                return _asm_pair(words, _S4_2, "=r,=r,r,r")
            else:
                return _asm_pair(words, _S4_3, "=r,=r,r,r")
        else:
            if k == 0:
                return _asm_pair(words, _S2_0, "=r,=r,r")
            elif k == 1:
                return _asm_pair(words, _S2_1, "=r,=r,r")
            elif k == 2:
                return _asm_pair(words, _S2_2, "=r,=r,r")
            else:
                return _asm_pair(words, _S2_3, "=r,=r,r")
    if BITS == 4:
        if k == 0:
            return _asm_pair(words, _A4_0, "=r,=r,r,r")
        elif k == 1:
            return _asm_pair(words, _A4_1, "=r,=r,r,r")
        elif k == 2:
            return _asm_pair(words, _A4_2, "=r,=r,r,r")
        else:
            return _asm_pair(words, _A4_3, "=r,=r,r,r")
    else:
        if k == 0:
            return _asm_pair(words, _A2_0, "=r,=r,r")
        elif k == 1:
            return _asm_pair(words, _A2_1, "=r,=r,r")
        elif k == 2:
            return _asm_pair(words, _A2_2, "=r,=r,r")
        else:
            return _asm_pair(words, _A2_3, "=r,=r,r")


@triton.jit
def _codes_fp16(words, j: tl.constexpr, BITS: tl.constexpr, MAGIC: tl.constexpr):
    """Bit slot j of every word -> the codes as fp16, by the magic-number trick: the 16-bit pattern
    0x6400 | c is the fp16 number 1024 + c (c < 1024), so a shift, an and-or, a free bitcast and an
    exact fp16 subtraction replace the slow (quarter-rate) int->float convert. The 1024 must go
    before the product: left in and removed from the fp32 sums afterwards, it cost up to 2x10^-2
    of the output on an H200 (the tensor cores' accumulation is not exact at 1024x the signal)."""
    if MAGIC == 3:  # subnormal, inline PTX: slot j reads c * 2^-24 (j even) or c * 2^(b-24) (j odd)
        lo, hi = _codes_pair_asm(words, j // 2, BITS, True)
        if j % 2 == 0:
            return lo
        return hi
    if MAGIC == 4:  # the same values with plain ops (runs in the interpreter too)
        c = (words >> ((j // 2) * 2 * BITS)) & (((1 << BITS) - 1) << (BITS * (j % 2)))
        return c.to(tl.int16).to(tl.float16, bitcast=True)
    if MAGIC == 2:  # inline PTX, two slots of two words per call (GPU only: not in the interpreter)
        lo, hi = _codes_pair_asm(words, j // 2, BITS)
        if j % 2 == 0:
            return lo
        return hi
    if MAGIC == 1:
        c = ((words >> (j * BITS)) & ((1 << BITS) - 1)) | 0x6400
        return c.to(tl.int16).to(tl.float16, bitcast=True) - 1024.0
    return ((words >> (j * BITS)) & ((1 << BITS) - 1)).to(tl.float16)  # the plain convert


@triton.jit
def _unscale_scores(s, j: tl.constexpr, BITS: tl.constexpr, MAGIC: tl.constexpr):
    """Products of slab j's codes, undone of the subnormal convert's scale (MAGIC 3, 4: 2^24 for an
    even slot, 2^(24-b) for an odd one, exact powers of two); unchanged otherwise."""
    if MAGIC >= 3:
        if j % 2 == 0:
            return s * 16777216.0
        elif BITS == 4:
            return s * 1048576.0
        else:
            return s * 4194304.0
    return s


@triton.jit
def _pv_operand(pv, j: tl.constexpr, BITS: tl.constexpr, MAGIC: tl.constexpr):
    """p o s_v of slab j as the fp16 operand of the value product. With the subnormal convert an odd
    slot's codes read 2^b times too large, so its operand takes 2^-b (exact): every slab's products
    then carry the same 2^-24, removed once from the accumulator (SUB_SCALE)."""
    if MAGIC >= 3:
        if j % 2 == 1:
            if BITS == 4:
                return (pv * 0.0625).to(tl.float16)
            else:
                return (pv * 0.25).to(tl.float16)
    return pv.to(tl.float16)


@triton.jit
def _slab_scores(wk, j: tl.constexpr, qs, qz, q16, q_sum, km_base, t0, offs_w, BITS: tl.constexpr,
                 K_PER_CHANNEL: tl.constexpr, MAGIC: tl.constexpr):
    """Scores (before qk_scale) of slab j of a tile: q . k for tokens t0 + j*ROWS + [0, ROWS)."""
    ROWS: tl.constexpr = offs_w.shape[0]
    ck = _codes_fp16(wk, j, BITS, MAGIC)  # [ROWS, D] codes, exact in fp16
    if K_PER_CHANNEL:
        s = _unscale_scores(tl.dot(qs, tl.trans(ck)), j, BITS, MAGIC) + qz[:, None]  # [BLOCK_G, ROWS]
    else:
        ks, kz = _half2(tl.load(km_base + t0 + j * ROWS + offs_w))  # [ROWS] scale and zero of each token
        s = _unscale_scores(tl.dot(q16, tl.trans(ck)), j, BITS, MAGIC) * ks[None, :] + q_sum[:, None] * kz[None, :]
    return s


@triton.jit
def _slab_pv(p, wv, j: tl.constexpr, vm_base, t0, offs_w, acc, z_vec, BITS: tl.constexpr, MAGIC: tl.constexpr):
    """acc += (p o s) . c for slab j's V codes; z_vec collects p * z (added to every channel at the end)."""
    ROWS: tl.constexpr = offs_w.shape[0]
    vs, vz = _half2(tl.load(vm_base + t0 + j * ROWS + offs_w))  # [ROWS]
    pvs = _pv_operand(p * vs[None, :], j, BITS, MAGIC)  # [BLOCK_G, ROWS] p o s
    acc = acc + tl.dot(pvs, _codes_fp16(wv, j, BITS, MAGIC))  # [BLOCK_G, D]
    return acc, z_vec + p * vz[None, :]


@triton.jit
def _online_update(s, m_i, l_vec):
    """One online-softmax step on base-2 scores s [BLOCK_G, N]: returns p, alpha, the new running
    max and the running (unreduced) sum l_vec [BLOCK_G, N] (reduced once, at the end of a split)."""
    m_new = tl.maximum(m_i, tl.max(s, 1))
    alpha = tl.exp2(m_i - m_new)  # [BLOCK_G]
    p = tl.exp2(s - m_new[:, None])  # [BLOCK_G, N]
    return p, alpha, m_new, l_vec * alpha[:, None] + p


@triton.jit
def _residual_part(q, KR, VR, r_base, stride_rs, res_len, qk_scale, BLOCK_G: tl.constexpr,
                   D: tl.constexpr, BLOCK_R: tl.constexpr, USE_DOT: tl.constexpr):
    """Attend to the fp16 residual (res_len tokens, tiles of BLOCK_R); q [BLOCK_G, D] fp32.
    Returns (m, l, acc) of this split."""
    offs_r = tl.arange(0, BLOCK_R)
    offs_d = tl.arange(0, D)
    m_i = tl.full([BLOCK_G], float("-inf"), tl.float32)
    l_vec = tl.zeros([BLOCK_G, BLOCK_R], tl.float32)
    acc = tl.zeros([BLOCK_G, D], tl.float32)
    for r0 in range(0, res_len, BLOCK_R):
        r = r0 + offs_r
        r_mask = r < res_len
        k = tl.load(KR + r_base + r[:, None] * stride_rs + offs_d[None, :], mask=r_mask[:, None], other=0.0)  # [BLOCK_R, D]
        v = tl.load(VR + r_base + r[:, None] * stride_rs + offs_d[None, :], mask=r_mask[:, None], other=0.0)  # [BLOCK_R, D]
        if USE_DOT:
            s = tl.dot(q.to(tl.float16), tl.trans(k))  # [BLOCK_G, BLOCK_R]
        else:
            s = tl.sum(q[:, None, :] * k.to(tl.float32)[None, :, :], 2)
        s = tl.where(r_mask[None, :], s * qk_scale, float("-inf"))
        p, alpha, m_i, l_vec = _online_update(s, m_i, l_vec)
        if USE_DOT:
            pv = tl.dot(p.to(tl.float16), v)
        else:
            pv = tl.sum(p[:, :, None] * v.to(tl.float32)[None, :, :], 1)
        acc = acc * alpha[:, None] + pv
    return m_i, tl.sum(l_vec, 1), acc


@triton.jit
def _split_setup(Q, KM, VM, stride_qb, stride_qh, stride_cb, stride_ch, stride_kmb, stride_kmh, stride_vmb, stride_vmh,
                 Hkv, G: tl.constexpr, BLOCK_G: tl.constexpr, D: tl.constexpr):
    """What every split program starts from: its batch element b, split, the query heads of its KV
    head (and which are real), their queries q [BLOCK_G, D] in fp32, int64 b and KV head (a long
    cache has > 2^31 words), and the bases of its packed words and metadata."""
    pid_bk = tl.program_id(0)  # b * Hkv + kv head
    split = tl.program_id(1)  # 0 .. num_splits-1: packed part; num_splits: the residual
    b = pid_bk // Hkv
    kvh = pid_bk % Hkv
    offs_g = tl.arange(0, BLOCK_G)  # [BLOCK_G] query heads of this KV head (padded)
    heads = kvh * G + offs_g
    g_mask = offs_g < G
    q = tl.load(Q + b * stride_qb + heads[:, None] * stride_qh + tl.arange(0, D)[None, :],
                mask=g_mask[:, None], other=0.0).to(tl.float32)  # [BLOCK_G, D]
    b64, kvh64 = b.to(tl.int64), kvh.to(tl.int64)
    c_base = b64 * stride_cb + kvh64 * stride_ch
    km_base = KM + b64 * stride_kmb + kvh64 * stride_kmh
    vm_base = VM + b64 * stride_vmb + kvh64 * stride_vmh
    return b, split, heads, g_mask, q, b64, kvh64, c_base, km_base, vm_base


@triton.jit
def _bitdecode_split_kernel(
    Q, KC, KM, VC, VM, KR, VR, PartialOut, Lse,
    # q [B, H, D]; KC, VC [B, Hkv, P/8, D] int32 (4-bit) / int16 (2-bit) words;
    # KM (scale, zero) fp16 pairs read as int32: KC [B, Hkv, P/TILE, D] / KT [B, Hkv, P]; VM [B, Hkv, P] likewise;
    # KR, VR [B, Hkv, R, D] fp16; PartialOut [B*H, splits+1, D] fp32; Lse [B*H, splits+1]
    qk_scale,  # sm_scale * log2(e)
    stride_qb, stride_qh, stride_cb, stride_ch, stride_kmb, stride_kmh, stride_vmb, stride_vmh, stride_rb, stride_rh, stride_rs,
    Hkv, n_tiles, tiles_per_split, num_splits, res_len,
    G: tl.constexpr, BLOCK_G: tl.constexpr, D: tl.constexpr, BITS: tl.constexpr, TILE: tl.constexpr,
    K_PER_CHANNEL: tl.constexpr, BLOCK_R: tl.constexpr, USE_DOT: tl.constexpr, TILE_SOFTMAX: tl.constexpr,
    MAGIC: tl.constexpr,
):
    PER: tl.constexpr = 8  # codes per word (int32 at 4 bits, int16 at 2 bits)
    ROWS: tl.constexpr = TILE // PER  # word rows per tile = tokens per slab
    b, split, heads, g_mask, q, b64, kvh64, c_base, km_base, vm_base = _split_setup(
        Q, KM, VM, stride_qb, stride_qh, stride_cb, stride_ch, stride_kmb, stride_kmh, stride_vmb, stride_vmh, Hkv, G, BLOCK_G, D)
    offs_d = tl.arange(0, D)
    offs_w = tl.arange(0, ROWS)  # [ROWS] word rows of a tile
    if split < num_splits:
        q16 = q.to(tl.float16)
        q_sum = tl.sum(q, 1)  # [BLOCK_G], for KT's zero term
        m_i = tl.full([BLOCK_G], float("-inf"), tl.float32)
        l_vec = tl.zeros([BLOCK_G, ROWS], tl.float32)  # running sum of p, reduced at the end
        z_vec = tl.zeros([BLOCK_G, ROWS], tl.float32)  # running sum of p * v_zero, reduced at the end
        acc = tl.zeros([BLOCK_G, D], tl.float32)
        t_end = tl.minimum((split + 1) * tiles_per_split, n_tiles)
        for t in range(split * tiles_per_split, t_end):
            w_offs = (t * ROWS + offs_w)[:, None] * D + offs_d[None, :]  # [ROWS, D]
            wk = tl.load(KC + c_base + w_offs)  # [ROWS, D] packed K words of tile t
            wv = tl.load(VC + c_base + w_offs)  # [ROWS, D] packed V words
            if K_PER_CHANNEL:
                ks, kz = _half2(tl.load(km_base + t * D + offs_d))  # [D] scale and zero of each channel
                qs = (q * ks[None, :]).to(tl.float16)  # [BLOCK_G, D] q o s, once per tile
                qz = tl.sum(q * kz[None, :], 1)  # [BLOCK_G] q . z
            else:
                qs, qz = q16, q_sum  # unused in KT mode
            if TILE_SOFTMAX:  # scores of all 8 slabs first: one max and one rescale per tile
                t0 = t * TILE
                S = tl.join(
                    tl.join(tl.join(_slab_scores(wk, 0, qs, qz, q16, q_sum, km_base, t0, offs_w, BITS, K_PER_CHANNEL, MAGIC),
                                    _slab_scores(wk, 1, qs, qz, q16, q_sum, km_base, t0, offs_w, BITS, K_PER_CHANNEL, MAGIC)),
                            tl.join(_slab_scores(wk, 2, qs, qz, q16, q_sum, km_base, t0, offs_w, BITS, K_PER_CHANNEL, MAGIC),
                                    _slab_scores(wk, 3, qs, qz, q16, q_sum, km_base, t0, offs_w, BITS, K_PER_CHANNEL, MAGIC))),
                    tl.join(tl.join(_slab_scores(wk, 4, qs, qz, q16, q_sum, km_base, t0, offs_w, BITS, K_PER_CHANNEL, MAGIC),
                                    _slab_scores(wk, 5, qs, qz, q16, q_sum, km_base, t0, offs_w, BITS, K_PER_CHANNEL, MAGIC)),
                            tl.join(_slab_scores(wk, 6, qs, qz, q16, q_sum, km_base, t0, offs_w, BITS, K_PER_CHANNEL, MAGIC),
                                    _slab_scores(wk, 7, qs, qz, q16, q_sum, km_base, t0, offs_w, BITS, K_PER_CHANNEL, MAGIC))),
                ) * qk_scale  # [BLOCK_G, ROWS, 2, 2, 2]: slab j = 4*a + 2*b + c at [..., c, b, a]
                m_new = tl.maximum(m_i, tl.max(tl.max(tl.max(tl.max(S, 4), 3), 2), 1))
                alpha = tl.exp2(m_i - m_new)
                P = tl.exp2(S - m_new[:, None, None, None, None])
                l_vec = l_vec * alpha[:, None] + tl.sum(tl.sum(tl.sum(P, 4), 3), 2)
                m_i = m_new
                acc = acc * alpha[:, None]
                z_vec = z_vec * alpha[:, None]
                P03, P47 = tl.split(P)
                P01, P23 = tl.split(P03)
                P45, P67 = tl.split(P47)
                p0, p1 = tl.split(P01)
                p2, p3 = tl.split(P23)
                p4, p5 = tl.split(P45)
                p6, p7 = tl.split(P67)
                acc, z_vec = _slab_pv(p0, wv, 0, vm_base, t0, offs_w, acc, z_vec, BITS, MAGIC)
                acc, z_vec = _slab_pv(p1, wv, 1, vm_base, t0, offs_w, acc, z_vec, BITS, MAGIC)
                acc, z_vec = _slab_pv(p2, wv, 2, vm_base, t0, offs_w, acc, z_vec, BITS, MAGIC)
                acc, z_vec = _slab_pv(p3, wv, 3, vm_base, t0, offs_w, acc, z_vec, BITS, MAGIC)
                acc, z_vec = _slab_pv(p4, wv, 4, vm_base, t0, offs_w, acc, z_vec, BITS, MAGIC)
                acc, z_vec = _slab_pv(p5, wv, 5, vm_base, t0, offs_w, acc, z_vec, BITS, MAGIC)
                acc, z_vec = _slab_pv(p6, wv, 6, vm_base, t0, offs_w, acc, z_vec, BITS, MAGIC)
                acc, z_vec = _slab_pv(p7, wv, 7, vm_base, t0, offs_w, acc, z_vec, BITS, MAGIC)
            else:  # one online-softmax step per 16-token slab
                for j in tl.static_range(PER):
                    s = _slab_scores(wk, j, qs, qz, q16, q_sum, km_base, t * TILE, offs_w, BITS, K_PER_CHANNEL, MAGIC)
                    p, alpha, m_i, l_vec = _online_update(s * qk_scale, m_i, l_vec)
                    acc, z_vec = _slab_pv(p, wv, j, vm_base, t * TILE, offs_w, acc * alpha[:, None], z_vec * alpha[:, None], BITS, MAGIC)
        if MAGIC >= 3:
            acc = acc * 16777216.0  # SUB_SCALE: the subnormal convert's 2^-24
        acc += tl.sum(z_vec, 1)[:, None]  # sum_n p_n z_n adds to every channel
        l_i = tl.sum(l_vec, 1)
    else:
        m_i, l_i, acc = _residual_part(q, KR, VR, b64 * stride_rb + kvh64 * stride_rh, stride_rs, res_len, qk_scale,
                                       BLOCK_G, D, BLOCK_R, USE_DOT)
    _store_split(PartialOut, Lse, acc, m_i, l_i, b, Hkv, G, heads, g_mask, split, num_splits + 1, D)


@triton.jit
def _store_split(PartialOut, Lse, acc, m_i, l_i, b, Hkv, G, heads, g_mask, split, total_splits, D: tl.constexpr):
    """Normalized partial output and natural-log LSE of one split (-inf for an empty split)."""
    has = l_i > 0
    out = acc / tl.where(has, l_i, 1.0)[:, None]
    lse = tl.where(has, (m_i + tl.log2(tl.where(has, l_i, 1.0))) * 0.6931471805599453, float("-inf"))
    row = (b * Hkv * G + heads) * total_splits + split  # [BLOCK_G] row of [B * H * (splits+1)]
    offs_d = tl.arange(0, D)
    tl.store(PartialOut + row[:, None] * D + offs_d[None, :], out, mask=g_mask[:, None])
    tl.store(Lse + row, lse, mask=g_mask)


@triton.jit
def _bitdecode_split_cuda_core_kernel(
    Q, KC, KM, VC, VM, KR, VR, PartialOut, Lse, qk_scale,
    stride_qb, stride_qh, stride_cb, stride_ch, stride_kmb, stride_kmh, stride_vmb, stride_vmh, stride_rb, stride_rh, stride_rs,
    Hkv, n_tiles, tiles_per_split, num_splits, res_len,
    G: tl.constexpr, BLOCK_G: tl.constexpr, D: tl.constexpr, BITS: tl.constexpr, TILE: tl.constexpr,
    K_PER_CHANNEL: tl.constexpr, BLOCK_R: tl.constexpr, USE_DOT: tl.constexpr,
):
    """The CUDA-core variant (KIVI-style): the same cache, splits and metadata loads, but every
    element is dequantized (c * s + z) in registers and the products are broadcast multiplies and
    tl.sum, no tl.dot. Works one slab of ROWS consecutive tokens (one bit slot) at a time."""
    PER: tl.constexpr = 8
    ROWS: tl.constexpr = TILE // PER
    MASK: tl.constexpr = (1 << BITS) - 1
    b, split, heads, g_mask, q, b64, kvh64, c_base, km_base, vm_base = _split_setup(
        Q, KM, VM, stride_qb, stride_qh, stride_cb, stride_ch, stride_kmb, stride_kmh, stride_vmb, stride_vmh, Hkv, G, BLOCK_G, D)
    offs_d = tl.arange(0, D)
    offs_w = tl.arange(0, ROWS)  # [ROWS] word rows of a tile
    if split < num_splits:
        m_i = tl.full([BLOCK_G], float("-inf"), tl.float32)
        l_vec = tl.zeros([BLOCK_G, ROWS], tl.float32)
        acc = tl.zeros([BLOCK_G, D], tl.float32)
        t_end = tl.minimum((split + 1) * tiles_per_split, n_tiles)
        for t in range(split * tiles_per_split, t_end):
            w_offs = (t * ROWS + offs_w)[:, None] * D + offs_d[None, :]  # [ROWS, D]
            wk = tl.load(KC + c_base + w_offs)  # [ROWS, D] words
            wv = tl.load(VC + c_base + w_offs)
            if K_PER_CHANNEL:
                ks, kz = _half2(tl.load(km_base + t * D + offs_d))  # [D]
            for j in tl.static_range(PER):
                tok = t * TILE + j * ROWS + offs_w  # [ROWS] tokens of slab j
                ck = ((wk >> (j * BITS)) & MASK).to(tl.float32)  # [ROWS, D]
                if K_PER_CHANNEL:
                    k = ck * ks[None, :] + kz[None, :]
                else:
                    kst, kzt = _half2(tl.load(km_base + tok))  # [ROWS]
                    k = ck * kst[:, None] + kzt[:, None]
                s = tl.sum(q[:, None, :] * k[None, :, :], 2) * qk_scale  # [BLOCK_G, ROWS]
                p, alpha, m_i, l_vec = _online_update(s, m_i, l_vec)
                vs, vz = _half2(tl.load(vm_base + tok))  # [ROWS]
                v = ((wv >> (j * BITS)) & MASK).to(tl.float32) * vs[:, None] + vz[:, None]  # [ROWS, D]
                acc = acc * alpha[:, None] + tl.sum(p[:, :, None] * v[None, :, :], 1)
        l_i = tl.sum(l_vec, 1)
    else:
        m_i, l_i, acc = _residual_part(q, KR, VR, b64 * stride_rb + kvh64 * stride_rh, stride_rs, res_len, qk_scale,
                                       BLOCK_G, D, BLOCK_R, USE_DOT)
    _store_split(PartialOut, Lse, acc, m_i, l_i, b, Hkv, G, heads, g_mask, split, num_splits + 1, D)


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


# -------------------------------------------------------------------------------------- host wrappers


def quantize_pack_kv(k, v, k_codes, k_meta, v_codes, v_meta, *, bits: int, tile: int, k_per_channel: bool):
    """Fused quantize-and-pack of k, v [B, Hkv, n, D] (n a multiple of `tile`) into the given
    output views (QuantKVCache's layout; codes and metadata rows must be contiguous in their last
    dims). One kernel launch for K and V."""
    B, Hkv, n, D = k.shape
    assert v.shape == k.shape and n % tile == 0, (k.shape, v.shape, tile)
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
        num_warps=4,
        enable_fp_fusion=False,  # (x - z) * inv + 0.5 as two roundings, exactly as torch computes it
    )


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def default_cvt():
    """magic_cvt when none is given: the subnormal inline PTX on an NVIDIA GPU (faster than "asm" for
    every kernel at the claim shape on an H200, and correct in every case of
    `tools/gpu_bitdecode_check.py --sub`); the plain convert under the Triton interpreter (which
    cannot run PTX) and on ROCm."""
    return False if _interpreting() or torch.version.hip else "sub"


def _cvt_mode(magic_cvt, interpreter_ok=False) -> int:
    """The MAGIC constexpr: False -> 0 (plain convert), True -> 1 (magic number, one code at a
    time), "asm" -> 2 (inline PTX, two codes of two words per instruction; GPU only), "sub" -> 3
    (fp16 subnormals, inline PTX, 3 instructions per 4 codes; GPU only), "sub_plain" -> 4 (the same
    values with plain ops)."""
    modes = {False: 0, True: 1, "asm": 2, 2: 2, "sub": 3, 3: 3, "sub_plain": 4, 4: 4}  # ints as the profiles write them
    if magic_cvt not in modes:
        raise ValueError(f"magic_cvt must be False, True, 'asm', 'sub' or 'sub_plain', not {magic_cvt!r}")
    if modes[magic_cvt] in (2, 3) and not interpreter_ok and _interpreting():
        raise ValueError(f"magic_cvt={magic_cvt!r} is inline PTX, which the Triton interpreter cannot run")
    return modes[magic_cvt]


def plan(q, cache, num_splits=None):
    """(n_tiles, num_splits, tiles_per_split) for q over this cache."""
    B, H, D = q.shape
    n_tiles = cache.packed_len // cache.cfg.tile
    cfg = default_config(B, cache.Hkv, n_tiles, device_limits(q.device)["sm_count"])
    num_splits = num_splits or cfg.num_splits
    tiles_per_split = triton.cdiv(n_tiles, num_splits) if n_tiles else 0
    return n_tiles, num_splits, tiles_per_split


def bitdecode_attention(q, cache, *, sm_scale=None, impl="triton", num_splits=None, num_warps=None, num_stages=None,
                        tile_softmax=None, magic_cvt=None, maxnreg=None):
    """Decode attention of q [B, H, D] over a QuantKVCache -> [B, H, D] in q's dtype.
    impl: "triton" (tensor cores), "triton_tm" (tensor cores with the tokens in the rows of the
    products, kernels/bitdecode/tm.py, experimental; 1 warp and 2 stages by default), "triton_tm2"
    (the same in channel halves, fewer live registers, K per channel only; kernels/bitdecode/tm2.py), "cuda_core"
    (broadcast products), "naive" (dequantize to a full fp16 K/V with torch ops, then our dense
    Triton decode), "ref" (fp32 reference on the dequantized cache). Knobs left as None come from
    `default_config`. tile_softmax (Triton impl): one softmax max and rescale per 128-token tile
    (all 8 slabs' scores kept, joined in registers) instead of one per 16-token slab. magic_cvt
    (Triton and tokens-in-M impls): False for the plain int->fp16 convert, True for the 0x6400 magic
    number one code at a time, "asm" for inline PTX (two codes of two words per instruction), "sub"
    for the fp16-subnormal form (inline PTX, masks only; "sub_plain" the same with plain ops).
    Defaults: tile_softmax and "sub" on a GPU (`default_cvt`; tile_softmax the faster in the H200
    sweep of tools/gpu_bitdecode_check.py), the plain per-slab path under the
    Triton interpreter (which cannot run inline PTX). maxnreg (GPU kernels): a cap on registers per
    thread (ptxas .maxnreg), trading spills for more resident warps; None leaves it to ptxas."""
    B, H, D = q.shape
    assert (cache.B, cache.D) == (B, D) and H % cache.Hkv == 0, (q.shape, cache.B, cache.Hkv, cache.D)
    sm_scale = 1.0 / math.sqrt(D) if sm_scale is None else sm_scale
    if impl == "ref":
        k, v = cache.dequantized()
        return decode_attention_ref(q, k, v, sm_scale=sm_scale).to(q.dtype)
    if impl == "naive":
        return _naive(q, cache, sm_scale)
    assert impl in ("triton", "triton_tm", "triton_tm2", "cuda_core"), impl
    if impl == "triton_tm2" and cache.cfg.k_mode != "KC":
        raise ValueError("impl='triton_tm2' needs K per channel (KC), not " + cache.cfg.k_mode)
    cfg, Hkv, G = cache.cfg, cache.Hkv, H // cache.Hkv
    n_tiles, splits, tiles_per_split = plan(q, cache, num_splits)
    dflt = default_config(B, Hkv, n_tiles, device_limits(q.device)["sm_count"])
    q = q if q.stride(-1) == 1 else q.contiguous()
    partial = torch.empty(B * H, splits + 1, D, device=q.device, dtype=torch.float32)  # [B*H, splits+1, D]
    lse = torch.empty(B * H, splits + 1, device=q.device, dtype=torch.float32)  # [B*H, splits+1]
    out = torch.empty(B, H, D, device=q.device, dtype=q.dtype)
    kc, vc, kr, vr = cache.k_codes, cache.v_codes, cache._res_k, cache._res_v
    km, vm = cache.k_meta.view(torch.int32)[..., 0], cache.v_meta.view(torch.int32)[..., 0]  # (scale, zero) pairs as words
    magic = _cvt_mode(default_cvt() if magic_cvt is None else magic_cvt)
    block_g = triton.next_power_of_2(G)
    if impl == "triton":
        kernel, block_g = _bitdecode_split_kernel, max(16, block_g)  # tl.dot rows: at least 16
        tile_softmax = not _interpreting() if tile_softmax is None else tile_softmax
        extra = dict(USE_DOT=True, TILE_SOFTMAX=bool(tile_softmax), MAGIC=magic)
    elif impl in ("triton_tm", "triton_tm2"):
        if impl == "triton_tm":
            from msrbook.kernels.bitdecode.tm import _tm_split_kernel as kernel  # it imports this module
        else:
            from msrbook.kernels.bitdecode.tm2 import _tm2_split_kernel as kernel

        # 1 warp and 2 stages: the fastest of its settings in the H200 check (tools/gpu_bitdecode_check.py)
        extra, num_warps, num_stages = dict(MAGIC=magic, LAZY=8.0), num_warps or 1, num_stages or 2
    else:
        kernel, extra = _bitdecode_split_cuda_core_kernel, dict(USE_DOT=False)
    kernel[(B * Hkv, splits + 1)](
        q, kc, km, vc, vm, kr, vr, partial, lse, sm_scale * 1.4426950408889634,
        q.stride(0), q.stride(1), cache._k_codes.stride(0), cache._k_codes.stride(1),
        km.stride(0), km.stride(1), vm.stride(0), vm.stride(1), kr.stride(0), kr.stride(1), kr.stride(2),
        Hkv, n_tiles, tiles_per_split, splits, cache.res_len,
        G=G, BLOCK_G=block_g, D=D, BITS=cfg.bits, TILE=cfg.tile, K_PER_CHANNEL=cfg.k_mode == "KC",
        BLOCK_R=16,  # small residual tiles keep shared memory (and so occupancy) for the packed loop
        **extra,
        num_warps=num_warps or dflt.num_warps, num_stages=num_stages or dflt.num_stages,
        **({"maxnreg": int(maxnreg)} if maxnreg else {}),
    )
    total = splits + 1
    _decode_combine_kernel[(B * H,)](
        partial, lse, out, total,
        D=D, BLOCK_SPLITS=triton.next_power_of_2(total), CHUNK=min(16, triton.next_power_of_2(total)), num_warps=4,
    )
    return out


def _unpack_codes(words, bits: int, tile: int):
    """Packed words [B, Hkv, P/8, D] -> codes [B, Hkv, P, D] fp32 in logical order (torch, int32 shifts)."""
    B, Hkv, Pw, D = words.shape
    rows = tile // 8
    w = words.to(torch.int32).reshape(B, Hkv, Pw // rows, 1, rows, D)  # [B, Hkv, tiles, 1, rows, D]
    shifts = (torch.arange(8, device=words.device, dtype=torch.int32) * bits).reshape(1, 1, 1, 8, 1, 1)
    return ((w >> shifts) & (2**bits - 1)).reshape(B, Hkv, Pw * 8, D).float()  # slot j, row i -> token j*rows+i


def _naive(q, cache, sm_scale):
    """Dequantize element by element into a full fp16 K and V (torch ops: unpack, c * s + z in fp32
    rounded once to fp16, concatenate the residual), then run our dense fp16 Triton decode. Moves
    the packed bytes, then writes and re-reads a full fp16 cache: slower than attending to fp16."""
    cfg, B, Hkv = cache.cfg, cache.B, cache.Hkv
    kc = _unpack_codes(cache.k_codes, cfg.bits, cfg.tile)  # [B, Hkv, P, D]
    P, D = kc.shape[2], kc.shape[3]
    km, vm = cache.k_meta.float(), cache.v_meta.float()
    if cfg.k_mode == "KC":
        kc = kc.view(B, Hkv, P // cfg.tile, cfg.tile, D)  # [B, Hkv, tiles, TILE, D]
        k16 = (kc * km[:, :, :, None, :, 0] + km[:, :, :, None, :, 1]).view(B, Hkv, P, D).half()
    else:
        k16 = (kc * km[..., 0:1] + km[..., 1:2]).half()
    del kc
    v16 = (_unpack_codes(cache.v_codes, cfg.bits, cfg.tile) * vm[..., 0:1] + vm[..., 1:2]).half()
    k16 = torch.cat([k16, cache.k_res], dim=2)  # [B, Hkv, T, D]
    v16 = torch.cat([v16, cache.v_res], dim=2)
    return decode_attention(q.to(torch.float16), k16, v16, sm_scale=sm_scale).to(q.dtype)


# ------------------------------------------------------------------------------ compile without a GPU


def compile_for_target(kernel: str, *, bits: int, k_mode: str = "KC", G: int = 4, D: int = 128, tile: int = 128,
                       arch: int = 90, tile_softmax: bool = True, magic_cvt: bool = True, num_warps: int = 4,
                       num_stages: int = 3, maxnreg: int | None = None):
    """Compile one kernel for GPUTarget("cuda", arch, 32) with no GPU present (the interpreter lets
    some errors through). kernel: "triton", "triton_tm", "triton_tm2", "cuda_core" or "quantize_pack". Pointer
    and stride arguments are marked 16-divisible as the JIT marks them at run time. Returns the
    compiled kernel (its .asm holds ttgir and ptx). Must run in a process where TRITON_INTERPRET is
    unset."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    word = "*i32" if bits == 4 else "*i16"
    if kernel == "quantize_pack":
        fn = _quantize_pack_kernel
        types = dict(K="*fp16", V="*fp16", KCo=word, KMo="*fp16", VCo=word, VMo="*fp16")
        const = dict(K_PER_CHANNEL=k_mode == "KC", BITS=bits, TILE=tile, D=D)
    else:
        types = dict(Q="*fp16", KC=word, KM="*i32", VC=word, VM="*i32", KR="*fp16", VR="*fp16",
                     PartialOut="*fp32", Lse="*fp32", qk_scale="fp32")
        const = dict(G=G, BLOCK_G=triton.next_power_of_2(G), D=D, BITS=bits, TILE=tile, K_PER_CHANNEL=k_mode == "KC",
                     BLOCK_R=16)
        if kernel == "triton":
            fn = _bitdecode_split_kernel
            const.update(BLOCK_G=max(16, const["BLOCK_G"]), USE_DOT=True, TILE_SOFTMAX=tile_softmax,
                         MAGIC=_cvt_mode(magic_cvt, interpreter_ok=True))
        elif kernel in ("triton_tm", "triton_tm2"):
            from msrbook.kernels.bitdecode.tm import _tm_split_kernel as fn
            from msrbook.kernels.bitdecode.tm2 import _tm2_split_kernel

            fn = _tm2_split_kernel if kernel == "triton_tm2" else fn
            const.update(MAGIC=_cvt_mode(magic_cvt, interpreter_ok=True), LAZY=8.0)
        else:
            fn, const["USE_DOT"] = _bitdecode_split_cuda_core_kernel, False
    sig = {name: types.get(name, "constexpr" if name in const else "i32") for name in fn.arg_names}
    div16 = [i for i, name in enumerate(fn.arg_names) if types.get(name, "").startswith("*") or name.startswith("stride_")]
    attrs = {(i,): [["tt.divisibility", 16]] for i in div16}
    return triton.compile(ASTSource(fn=fn, signature=sig, constexprs=const, attrs=attrs), target=GPUTarget("cuda", arch, 32),
                          options=dict(num_warps=num_warps, num_stages=num_stages, **({"maxnreg": maxnreg} if maxnreg else {})))


# ------------------------------------------------------------------------------------ bytes and main


def bitdecode_bytes(cache, H: int, elem_bytes: int = 2) -> int:
    """Fewest bytes a decode step moves: the packed codes, scales and zeros, the fp16 residual,
    q read and out written: cache.nbytes() + 2 * B * H * D * elem_bytes. (The fp32 split buffers
    are extra traffic of the split-KV method and are not counted.)"""
    return cache.nbytes() + 2 * cache.B * H * cache.D * elem_bytes


def main(B=2, H=8, Hkv=2, T=300, D=64, bits=4, k_mode="KC", device=None):
    """Small self-check: every impl against the fp32 reference on the dequantized cache. Raises."""
    from msrbook.kernels.bitdecode.quant import QuantConfig, QuantKVCache
    from msrbook.testing import assert_close

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    gen = torch.Generator(device="cpu").manual_seed(0)
    q, k, v = (torch.randn(*s, generator=gen).to(device, torch.float16) for s in ((B, H, D), (B, Hkv, T, D), (B, Hkv, T, D)))
    cache = QuantKVCache(QuantConfig(bits=bits, k_mode=k_mode), B, Hkv, D, device=device)
    cache.append(k, v)
    ref = bitdecode_attention(q, cache, impl="ref").float()
    for impl in ("triton", "cuda_core", "naive"):
        assert_close(bitdecode_attention(q, cache, impl=impl).float(), ref, rtol=1e-2, atol=1e-2, name=impl)
    print(f"bitdecode ok: B={B} H={H} Hkv={Hkv} T={T} D={D} {bits}-bit {k_mode}")


# -------------------------------------------------------------------------------------------- bench

FP16_BACKENDS = ("sdpa_cudnn", "sdpa_flash", "triton_fp16")  # the dense baselines, fastest of them counts
LOWBIT_IMPLS = ("triton", "cuda_core", "naive")
SCALED_TOL = 1e-2  # of the reference's largest |value|: fp16 rounding of q o s, p o s and the output (see tests)


def _fp16_fn(name, q, k, v):
    """The fp16 baselines as decode_bench runs them; our dense kernel is "triton_fp16" in these tables."""
    from msrbook.chapters.decode_roofline.sweep import _backend_fn

    return _backend_fn("triton" if name == "triton_fp16" else name, q, k, v)


def bench_shape(B, H, Hkv, T, D=128, *, bits=(4, 2), impls=LOWBIT_IMPLS, fp16=FP16_BACKENDS, k_mode="KC",
                configs=(), warmup=25, rep=100, seed=0, strict=True, graph=True):
    """Time every fp16 baseline and every (bits, impl) on one shape [B, H/Hkv heads, T tokens, D]
    on the GPU. Each output is first checked on its first and last batch elements (an offset that
    overflows or a program that reads another sequence shows up only past the first): fp16 backends
    against the fp32 reference on K/V, low-bit impls against it on the dequantized cache; a
    mismatch raises. `configs`: extra knob dicts (num_splits, num_warps, num_stages, ...) timed for
    the Triton impl, or for the impl a dict names ("impl": "triton_tm"), each its own row. graph:
    time every backend, fp16 ones included, as a CUDA-graph replay (`bench.time_graph_ms`: GPU
    time, no host overhead; `graphed` says where capture worked). Rows: {batch, seq_len, n_q, n_kv,
    head_dim, bits, backend, config, ms, gbps, bytes, graphed, error}. A backend that cannot run (no
    kernel, out of memory) gets an error and NaN. strict=False records a wrong result as an error
    starting "WRONG" (not timed) instead of raising."""
    from msrbook.bench import gbps, time_graph_ms, time_ms
    from msrbook.kernels.decode_attention import decode_bytes
    from msrbook.kernels.bitdecode.quant import QuantConfig, QuantKVCache
    from msrbook.testing import assert_close

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gen = torch.Generator(device=dev).manual_seed(seed)
    base = dict(batch=B, seq_len=T, n_q=H, n_kv=Hkv, head_dim=D)
    rows = []

    def record(backend, nbits, fn, nbytes, ref, config=""):
        row = dict(base, bits=nbits, backend=backend, config=config, ms=math.nan, gbps=math.nan, bytes=nbytes,
                   graphed=False, error="")
        try:
            out = fn()
            if ref is not None:
                assert_close(out[checked].float(), ref, rtol=0.0, atol=SCALED_TOL * float(ref.abs().max()),
                             name=f"{backend} {config} B={B} T={T} H={H}/{Hkv}")
            if graph:
                row["ms"], row["graphed"] = time_graph_ms(fn, warmup=warmup, rep=rep, device=dev)
            else:
                row["ms"] = time_ms(fn, warmup=warmup, rep=rep, device=dev)
            row["gbps"] = gbps(nbytes, row["ms"])
        except (RuntimeError, torch.cuda.OutOfMemoryError) as err:  # cannot run here: say why, keep going
            row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''}"
        except AssertionError as err:
            if strict:
                raise
            row["error"] = f"WRONG: {str(err)[:200]}"
        rows.append(row)
        return row

    try:
        q = torch.randn(B, H, D, generator=gen, device=dev).to(torch.float16)  # [B, H, D]
        k = torch.randn(B, Hkv, T, D, generator=gen, device=dev).to(torch.float16)  # [B, Hkv, T, D]
        v = torch.randn(B, Hkv, T, D, generator=gen, device=dev).to(torch.float16)
    except torch.cuda.OutOfMemoryError as err:  # the fp16 cache itself does not fit: one row says so
        return [dict(base, bits=16, backend="fp16 cache", config="", ms=math.nan, gbps=math.nan, bytes=0, graphed=False,
                     error=f"OutOfMemoryError: {str(err).splitlines()[0][:160]}")]
    checked = sorted({0, B - 1})  # batch elements whose outputs are checked
    qc = q[checked]
    ref = decode_attention_ref(qc, k[checked], v[checked])  # [len(checked), H, D] fp32
    for name in fp16:
        record(name, 16, _fp16_fn(name, q, k, v), decode_bytes(B, H, Hkv, T, D, 2), ref)
    del ref
    for nbits in bits:
        cache = QuantKVCache(QuantConfig(bits=nbits, k_mode=k_mode), B, Hkv, D, device=dev, max_tokens=T)
        cache.append(k, v)  # prefill: one fused quantize-and-pack launch
        nbytes = bitdecode_bytes(cache, H)
        ref = decode_attention_ref(qc, *cache.dequantized(checked))
        for impl in impls:
            record(f"int{nbits}_{impl}", nbits, lambda impl=impl: bitdecode_attention(q, cache, impl=impl), nbytes, ref,
                   config="default" if impl != "naive" else "")
        for cfg in configs:  # knob dicts for the Triton impl, or for the one a dict names as "impl"
            cfg = {"impl": "triton", **cfg}
            record(f"int{nbits}_{cfg['impl']}", nbits, lambda cfg=cfg: bitdecode_attention(q, cache, **cfg),
                   nbytes, ref, config=",".join(f"{k_}={v_}" for k_, v_ in cfg.items() if k_ != "impl"))
        del cache, ref
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def quantize_pack_ms(B, Hkv, T, D=128, bits=4, k_mode="KC", warmup=25, rep=100, seed=0):
    """(ms, GB/s) of one fused quantize-and-pack launch over K and V [B, Hkv, T, D] fp16 (T a
    multiple of 128). Bytes: fp16 K and V read, packed words and metadata written."""
    from msrbook.bench import gbps, time_ms
    from msrbook.kernels.bitdecode.quant import QuantConfig, QuantKVCache

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gen = torch.Generator(device=dev).manual_seed(seed)
    k, v = (torch.randn(B, Hkv, T, D, generator=gen, device=dev).to(torch.float16) for _ in range(2))
    cfg = QuantConfig(bits=bits, k_mode=k_mode)
    cache = QuantKVCache(cfg, B, Hkv, D, device=dev, max_tokens=T)
    args = (cache._k_codes, cache._k_meta, cache._v_codes, cache._v_meta)
    fn = lambda: quantize_pack_kv(k, v, *args, bits=bits, tile=cfg.tile, k_per_channel=k_mode == "KC")  # noqa: E731
    ms = time_ms(fn, warmup=warmup, rep=rep, device=dev)
    nbytes = 2 * k.numel() * 2 + sum(t.numel() * t.element_size() for t in args)
    return ms, gbps(nbytes, ms)


if __name__ == "__main__":
    main()
