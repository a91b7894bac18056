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
from dataclasses import dataclass, replace

import torch
import triton
import triton.language as tl

from ..decode_attention import _decode_combine_kernel, decode_attention, decode_attention_ref
from ..targets import Target, compile_for_arch, target
from .codes import _half2, _online_update, _residual_part, _slab_pv, _slab_scores, _split_setup, _store_split
from .pack import _quantize_pack_kernel
from .quant import QuantConfig, QuantKVCache
from .tm import _tm_split_kernel
from .tm2 import _tm2_split_kernel

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
    magic_cvt: object = None  # the codes' convert (see `bitdecode_attention`); None: the wrapper's default
    tile_softmax: bool = True  # impl "triton": one softmax step per 128-token tile


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


def fallback_config(B: int, Hkv: int, n_tiles: int, sm_count: int) -> BitDecodeConfig:
    """For a GPU outside the measured table (kernels/targets.py; compiled for sm_80 and sm_89 in
    CI, not timed): the same splits and 2 warps as `default_config` (the warp count follows from
    the product shapes, not from the GPU), 2 stages (the least pipelining that overlaps a load with
    compute; 43 KB of shared memory at 3 stages is not needed to fit, but nothing was timed to earn
    it), and the 0x6400 inline-PTX convert ("asm": prmt, lop3 and f16x2 arithmetic, all valid from
    sm_53) instead of "sub", whose exact products of fp16 subnormals were checked on Hopper
    tensor cores only."""
    return BitDecodeConfig(default_config(B, Hkv, n_tiles, sm_count).num_splits, num_warps=2, num_stages=2,
                           magic_cvt=fallback_cvt())


# ------------------------------------------------------------------------------------------- kernels


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


# -------------------------------------------------------------------------------------- host wrappers


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def default_cvt():
    """magic_cvt when none is given: the subnormal inline PTX on an NVIDIA GPU (faster than "asm" for
    every kernel at the claim shape on an H200, and correct in every case of
    `tools/gpu_bitdecode_check.py --sub`); the plain convert under the Triton interpreter (which
    cannot run PTX) and on ROCm."""
    return False if _interpreting() or torch.version.hip else "sub"


def fallback_cvt():
    """magic_cvt outside the measured table: "asm" on an NVIDIA GPU (see `fallback_config`), the
    plain convert under the interpreter and on ROCm, as `default_cvt`."""
    return False if _interpreting() or torch.version.hip else "asm"


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


def config_for(tgt: Target, impl: str, B: int, Hkv: int, n_tiles: int) -> BitDecodeConfig:
    """The launch configuration of `impl` on `tgt` (kernels/targets.py). On the capability the
    defaults were timed on (H100, H200; a CPU plans as one): `default_config` with `default_cvt`,
    and for the tokens-in-M impls 1 warp and 2 stages (the fastest of their settings in the H200
    check, tools/gpu_bitdecode_check.py). Elsewhere `fallback_config`, with 2 warps and 2 stages
    for the tokens-in-M impls too: at 1 warp triton_tm spills at 4 bits (sm_90a,
    kernels/NOTES-bitdecode.md) and triton_tm2 at 2 bits with the "asm" convert and G=4 (sm_89
    build); 2 warps halve the accumulator's registers per thread."""
    base = (default_config if tgt.measured else fallback_config)(B, Hkv, n_tiles, tgt.sm_count)
    warps, stages = base.num_warps, base.num_stages
    if impl in ("triton_tm", "triton_tm2"):
        warps, stages = (1 if tgt.measured else 2), 2
    cvt = default_cvt() if tgt.measured else base.magic_cvt
    return BitDecodeConfig(base.num_splits, warps, stages, cvt, tile_softmax=not _interpreting())


def launch_config(q, cache, impl="triton", num_splits=None) -> BitDecodeConfig:
    """What `bitdecode_attention` launches q [B, H, D] over this cache with where no knob is given
    (`config_for` the target of q's device). Raises UnsupportedGPU on a GPU below sm_80."""
    cfg = config_for(target(q.device), impl, q.shape[0], cache.Hkv, cache.packed_len // cache.cfg.tile)
    return replace(cfg, num_splits=num_splits or cfg.num_splits)


def plan(q, cache, num_splits=None):
    """(n_tiles, num_splits, tiles_per_split) for q over this cache."""
    n_tiles = cache.packed_len // cache.cfg.tile
    num_splits = launch_config(q, cache, num_splits=num_splits).num_splits
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
    Triton interpreter (which cannot run inline PTX); on a GPU other than an H100 or H200, the
    fallback of `launch_config`. maxnreg (GPU kernels): a cap on registers per
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
    dflt = launch_config(q, cache, impl, num_splits)
    n_tiles, splits = cache.packed_len // cfg.tile, dflt.num_splits
    tiles_per_split = triton.cdiv(n_tiles, splits) if n_tiles else 0
    q = q if q.stride(-1) == 1 else q.contiguous()
    partial = torch.empty(B * H, splits + 1, D, device=q.device, dtype=torch.float32)  # [B*H, splits+1, D]
    lse = torch.empty(B * H, splits + 1, device=q.device, dtype=torch.float32)  # [B*H, splits+1]
    out = torch.empty(B, H, D, device=q.device, dtype=q.dtype)
    kc, vc, kr, vr = cache.k_codes, cache.v_codes, cache._res_k, cache._res_v
    km, vm = cache.k_meta.view(torch.int32)[..., 0], cache.v_meta.view(torch.int32)[..., 0]  # (scale, zero) pairs as words
    magic = _cvt_mode(dflt.magic_cvt if magic_cvt is None else magic_cvt)
    block_g = triton.next_power_of_2(G)
    if impl == "triton":
        kernel, block_g = _bitdecode_split_kernel, max(16, block_g)  # tl.dot rows: at least 16
        tile_softmax = dflt.tile_softmax if tile_softmax is None else tile_softmax
        extra = dict(USE_DOT=True, TILE_SOFTMAX=bool(tile_softmax), MAGIC=magic)
    elif impl in ("triton_tm", "triton_tm2"):
        kernel = _tm_split_kernel if impl == "triton_tm" else _tm2_split_kernel
        extra = dict(MAGIC=magic, LAZY=8.0)  # warps and stages: `launch_config`
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
            fn = _tm2_split_kernel if kernel == "triton_tm2" else _tm_split_kernel
            const.update(MAGIC=_cvt_mode(magic_cvt, interpreter_ok=True), LAZY=8.0)
        else:
            fn, const["USE_DOT"] = _bitdecode_split_cuda_core_kernel, False
    return compile_for_arch(fn, types, const, arch, num_warps=num_warps, num_stages=num_stages,
                            **({"maxnreg": maxnreg} if maxnreg else {}))


# ------------------------------------------------------------------------------------ bytes and main


def bitdecode_bytes(cache, H: int, elem_bytes: int = 2) -> int:
    """Fewest bytes a decode step moves: the packed codes, scales and zeros, the fp16 residual,
    q read and out written: cache.nbytes() + 2 * B * H * D * elem_bytes. (The fp32 split buffers
    are extra traffic of the split-KV method and are not counted.)"""
    return cache.nbytes() + 2 * cache.B * H * cache.D * elem_bytes


def main(B=2, H=8, Hkv=2, T=300, D=64, bits=4, k_mode="KC", device=None):
    """Small self-check: every impl against the fp32 reference on the dequantized cache. Raises."""
    from torch.testing import assert_close  # kernels import nothing from the library: torch's check, same tolerances

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    gen = torch.Generator(device="cpu").manual_seed(0)
    q, k, v = (torch.randn(*s, generator=gen).to(device, torch.float16) for s in ((B, H, D), (B, Hkv, T, D), (B, Hkv, T, D)))
    cache = QuantKVCache(QuantConfig(bits=bits, k_mode=k_mode), B, Hkv, D, device=device)
    cache.append(k, v)
    ref = bitdecode_attention(q, cache, impl="ref").float()
    for impl in ("triton", "cuda_core", "naive"):
        assert_close(bitdecode_attention(q, cache, impl=impl).float(), ref, rtol=1e-2, atol=1e-2,
                     msg=lambda m, impl=impl: f"{impl}: {m}")
    print(f"bitdecode ok: B={B} H={H} Hkv={Hkv} T={T} D={D} {bits}-bit {k_mode}")


if __name__ == "__main__":
    main()
