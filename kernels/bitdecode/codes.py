"""Device helpers shared by every BitDecoding decode kernel (kernel.py, tm.py, tm2.py): codes to fp16
(plain, 0x6400 magic, inline PTX slot pairs, fp16 subnormals), the per-slab score and value
products, the online-softmax update, the fp16 residual part, the per-program set-up and the store of
one split. The glossary and the packing layout are in kernel.py's docstring.
"""

import triton
import triton.language as tl


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
def _store_split(PartialOut, Lse, acc, m_i, l_i, b, Hkv, G, heads, g_mask, split, total_splits, D: tl.constexpr):
    """Normalized partial output and natural-log LSE of one split (-inf for an empty split)."""
    has = l_i > 0
    out = acc / tl.where(has, l_i, 1.0)[:, None]
    lse = tl.where(has, (m_i + tl.log2(tl.where(has, l_i, 1.0))) * 0.6931471805599453, float("-inf"))
    row = (b * Hkv * G + heads) * total_splits + split  # [BLOCK_G] row of [B * H * (splits+1)]
    offs_d = tl.arange(0, D)
    tl.store(PartialOut + row[:, None] * D + offs_d[None, :], out, mask=g_mask[:, None])
    tl.store(Lse + row, lse, mask=g_mask)
