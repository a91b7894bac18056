"""Dense split-KV flash-decoding (one new query token per sequence) in Triton.

Glossary: B batch, H query heads, Hkv key/value heads, G = H // Hkv query heads per KV head (GQA),
S cached tokens, D head dim. Layouts are SDPA's: q [B, H, D], k and v [B, Hkv, S, D], out [B, H, D].

    out[b, h] = softmax(sm_scale * q[b, h] . k[b, h // G]^T) @ v[b, h // G]

Decode reads every cached byte once and does G FLOPs per fp16 byte of K/V (`decode_flops` over
`decode_bytes`; 8 for 64/8 heads), far too few to keep tensor cores busy: it is bound by memory
bandwidth. Stage 1 splits S into `num_splits` chunks; one program per (b, kv head, split)
streams its chunk of K and V once for all G query heads (the q block is padded to 16 rows so the
two products run on `tl.dot`), keeps an online softmax in fp32, and writes a partial output and its
log-sum-exp. Stage 2 combines the splits:  out = sum_s exp(lse_s - lse) * partial_s,
lse = log sum_s exp(lse_s).
"""

import math
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from .targets import Target, target

# ---------------------------------------------------------------------------------------- config space

SWEEP = {  # the knob ranges swept in kernels/NOTES-decode.md; every combination ran on an H200
    "num_splits": (4, 8, 12, 16, 24, 32, 48, 64),
    "block_n": (32, 64, 128),
    "num_warps": (2, 4, 8),
    "num_stages": (2, 3, 4),
}


@dataclass(frozen=True)
class DecodeConfig:
    num_splits: int  # chunks of S per (b, kv head); more splits fill more SMs, cost a bigger combine
    block_n: int  # tokens per K/V tile (BLOCK_N); a power of two >= 16 (tl.dot's minimum)
    num_warps: int  # warps per stage-1 program
    num_stages: int  # software-pipelining depth of the K/V loads


def default_config(B: int, Hkv: int, S: int, D: int, sm_count: int, *, elem_bytes: int = 2,
                   smem_bytes: int = 227 * 1024) -> DecodeConfig:
    """Heuristic, from the knob sweeps in kernels/NOTES-decode.md (H200, B=16, 64/8 heads, D=128):
    - tiles of up to 128 tokens, capped so one K+V stage is <= 64 KB (128 x D=128 x fp16) and at S;
      3 stages (two buffers, 128 KB) where shared memory allows, else 2;
    - about 8 programs per SM, rounded down to a power of two of splits (power-of-two S then splits
      evenly, and the grid does not spill just past a full wave), each split >= 512 tokens (the
      fp32 split buffers then add <= 2 * G / 512 of the KV traffic) and >= one tile."""
    block_n = min(128, 32768 // (D * elem_bytes), max(16, triton.next_power_of_2(S)))
    stage_bytes = 2 * block_n * D * elem_bytes  # one K tile and one V tile
    num_stages = 3 if 2 * stage_bytes + 16 * 1024 <= smem_bytes else 2
    return DecodeConfig(_num_splits(B, Hkv, S, block_n, sm_count), block_n, num_warps=4, num_stages=num_stages)


def _num_splits(B: int, Hkv: int, S: int, block_n: int, sm_count: int) -> int:
    """About 8 programs per SM, each split >= 512 tokens and >= one tile, at most 256, rounded down
    to a power of two (the split rule of both configurations)."""
    most = max(1, min(triton.cdiv(8 * sm_count, B * Hkv), S // 512, triton.cdiv(S, block_n), 256))
    return 1 << (most.bit_length() - 1)


def fallback_config(B: int, Hkv: int, S: int, D: int, sm_count: int, *, elem_bytes: int = 2,
                    smem_bytes: int = 99 * 1024) -> DecodeConfig:
    """For a GPU the sweep did not run on (kernels/targets.py; compiled in CI for sm_80 and sm_89,
    not timed). Conservative beside `default_config`: tiles of at most 64 tokens (one K+V stage
    <= 32 KB at D=128 fp16, half the registers of the loaded tiles), 3 stages only where their
    buffers (two stages + 16 KB, as Triton allocates them) fit in half the opt-in shared memory, so
    two programs share an SM (A100: 3 stages, 72 KB; L4 / RTX 4090: 2 stages, 39 KB); the same
    4 warps and split rule."""
    block_n = min(64, 16384 // (D * elem_bytes), max(16, triton.next_power_of_2(S)))
    stage_bytes = 2 * block_n * D * elem_bytes
    num_stages = 3 if 2 * stage_bytes + 16 * 1024 <= smem_bytes // 2 else 2
    return DecodeConfig(_num_splits(B, Hkv, S, block_n, sm_count), block_n, num_warps=4, num_stages=num_stages)


def config_for(tgt: Target, B: int, Hkv: int, S: int, D: int, *, elem_bytes: int = 2) -> DecodeConfig:
    """The measured heuristic on a capability it was timed on (tgt.measured), else the fallback."""
    pick = default_config if tgt.measured else fallback_config
    return pick(B, Hkv, S, D, tgt.sm_count, elem_bytes=elem_bytes, smem_bytes=tgt.smem_bytes)


def launch_config(q, k) -> DecodeConfig:
    """The configuration `decode_attention` launches q [B, H, D] over k [B, Hkv, S, D] with when no
    knob is given. Raises UnsupportedGPU on a GPU below sm_80."""
    B, _, D = q.shape
    return config_for(target(q.device), B, k.shape[1], k.shape[2], D, elem_bytes=q.element_size())


def device_limits(device: torch.device) -> dict:
    """SM count and opt-in shared memory per block of `device` (its capability's, kernels/targets.py);
    an H100's on CPU, so CPU runs plan the same grid a GPU would."""
    tgt = target(device)
    return dict(sm_count=tgt.sm_count, smem_bytes=tgt.smem_bytes)


# ------------------------------------------------------------------------------------------- kernels


@triton.jit
def _decode_split_kernel(
    Q, K, V, PartialOut, Lse,  # q [B, H, D]; k, v [B, Hkv, S, D]; partial_out [B, H, splits, D] fp32; lse [B, H, splits] fp32
    qk_scale,  # sm_scale * log2(e): scores are kept in base 2
    stride_qb, stride_qh, stride_kb, stride_kh, stride_ks, stride_vb, stride_vh, stride_vs,
    Hkv, S, split_len, num_splits,
    G: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_N: tl.constexpr, D: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    pid_bk = tl.program_id(0)  # b * Hkv + kv head
    split = tl.program_id(1)
    b = pid_bk // Hkv
    kvh = pid_bk % Hkv
    offs_g = tl.arange(0, BLOCK_G)  # [BLOCK_G] query heads of this KV head, padded to >= 16
    offs_d = tl.arange(0, D)  # [D]
    offs_n = tl.arange(0, BLOCK_N)  # [BLOCK_N]
    heads = kvh * G + offs_g  # [BLOCK_G] query head index h
    g_mask = offs_g < G
    q = tl.load(Q + b * stride_qb + heads[:, None] * stride_qh + offs_d[None, :],
                mask=g_mask[:, None], other=0.0)  # [BLOCK_G, D]
    b64, kvh64 = b.to(tl.int64), kvh.to(tl.int64)  # a long cache has > 2^31 elements: int64 offsets
    k_base = K + b64 * stride_kb + kvh64 * stride_kh
    v_base = V + b64 * stride_vb + kvh64 * stride_vh

    start = split * split_len
    end = tl.minimum(start + split_len, S)  # an empty split (start >= S) runs no iteration
    m_i = tl.full([BLOCK_G], float("-inf"), tl.float32)  # [BLOCK_G] running max, base 2
    l_i = tl.zeros([BLOCK_G], tl.float32)  # [BLOCK_G] running sum of exp2
    acc = tl.zeros([BLOCK_G, D], tl.float32)  # [BLOCK_G, D] unnormalized output
    for n0 in range(start, end, BLOCK_N):
        n = n0 + offs_n  # [BLOCK_N] token index
        n_mask = n < end
        k = tl.load(k_base + n[:, None] * stride_ks + offs_d[None, :], mask=n_mask[:, None], other=0.0)  # [BLOCK_N, D]
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale  # [BLOCK_G, BLOCK_N]
        s = tl.where(n_mask[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))  # finite: every block holds >= 1 valid token
        alpha = tl.exp2(m_i - m_new)  # [BLOCK_G] rescales what was summed so far
        p = tl.exp2(s - m_new[:, None])  # [BLOCK_G, BLOCK_N]
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(v_base + n[:, None] * stride_vs + offs_d[None, :], mask=n_mask[:, None], other=0.0)  # [BLOCK_N, D]
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION)
        m_i = m_new

    has = l_i > 0  # False only for an empty split
    out = acc / tl.where(has, l_i, 1.0)[:, None]  # [BLOCK_G, D]
    lse = tl.where(has, (m_i + tl.log2(tl.where(has, l_i, 1.0))) * 0.6931471805599453, float("-inf"))  # natural log
    row = (b * Hkv * G + heads) * num_splits + split  # [BLOCK_G] row of [B * H * splits]
    tl.store(PartialOut + row[:, None] * D + offs_d[None, :], out, mask=g_mask[:, None])
    tl.store(Lse + row, lse, mask=g_mask)


@triton.jit
def _decode_combine_kernel(
    PartialOut, Lse, Out,  # partial_out [B, H, splits, D]; lse [B, H, splits]; out [B, H, D] contiguous
    num_splits,
    D: tl.constexpr, BLOCK_SPLITS: tl.constexpr, CHUNK: tl.constexpr,
):
    bh = tl.program_id(0)  # b * H + h
    offs_s = tl.arange(0, BLOCK_SPLITS)  # [BLOCK_SPLITS]
    lse = tl.load(Lse + bh * num_splits + offs_s, mask=offs_s < num_splits, other=float("-inf"))
    lse_max = tl.max(lse, 0)  # finite: split 0 always holds a token
    offs_c = tl.arange(0, CHUNK)  # [CHUNK] splits combined per step
    offs_d = tl.arange(0, D)  # [D]
    acc = tl.zeros([D], tl.float32)
    wsum = 0.0
    for s0 in range(0, num_splits, CHUNK):
        sc = s0 + offs_c
        lse_c = tl.load(Lse + bh * num_splits + sc, mask=sc < num_splits, other=float("-inf"))  # [CHUNK]
        w = tl.exp(lse_c - lse_max)  # [CHUNK]; 0 for empty or padded splits
        part = tl.load(PartialOut + (bh * num_splits + sc)[:, None] * D + offs_d[None, :],
                       mask=(sc < num_splits)[:, None], other=0.0)  # [CHUNK, D]
        acc += tl.sum(w[:, None] * part, 0)
        wsum += tl.sum(w, 0)
    tl.store(Out + bh * D + offs_d, (acc / wsum).to(Out.dtype.element_ty))


# -------------------------------------------------------------------------------------- host wrapper


def decode_attention(q, k, v, *, sm_scale=None, num_splits=None, block_n=None, num_warps=None, num_stages=None):
    """Split-KV decode attention. q [B, H, D]; k, v [B, Hkv, S, D] -> out [B, H, D] in q's dtype.
    Knobs left as None come from `launch_config` (`default_config` on an H100 or H200, else
    `fallback_config`)."""
    B, H, D = q.shape
    Bk, Hkv, S, Dk = k.shape
    assert k.shape == v.shape and Bk == B and Dk == D, f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
    assert H % Hkv == 0 and S >= 1, f"need H % Hkv == 0 and S >= 1, got H={H}, Hkv={Hkv}, S={S}"
    assert D >= 16 and D & (D - 1) == 0, f"D must be a power of two >= 16, got {D}"
    assert q.dtype == k.dtype == v.dtype and q.dtype in (torch.float16, torch.bfloat16, torch.float32)
    assert q.device == k.device == v.device
    q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
    cfg = launch_config(q, k)
    num_splits = num_splits or cfg.num_splits
    block_n = block_n or cfg.block_n
    assert block_n >= 16 and block_n & (block_n - 1) == 0, f"block_n must be a power of two >= 16, got {block_n}"
    G = H // Hkv
    sm_scale = 1.0 / math.sqrt(D) if sm_scale is None else sm_scale
    # Split length is whole tiles, so only the very last tile of S is partial; trailing splits may be empty.
    split_len = triton.cdiv(triton.cdiv(S, num_splits), block_n) * block_n

    partial_out = torch.empty(B, H, num_splits, D, device=q.device, dtype=torch.float32)  # [B, H, splits, D]
    lse = torch.empty(B, H, num_splits, device=q.device, dtype=torch.float32)  # [B, H, splits]
    out = torch.empty(B, H, D, device=q.device, dtype=q.dtype)  # [B, H, D]
    _decode_split_kernel[(B * Hkv, num_splits)](
        q, k, v, partial_out, lse, sm_scale * 1.4426950408889634,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), k.stride(2), v.stride(0), v.stride(1), v.stride(2),
        Hkv, S, split_len, num_splits,
        G=G, BLOCK_G=max(16, triton.next_power_of_2(G)), BLOCK_N=block_n, D=D,
        DOT_PRECISION="ieee" if q.dtype == torch.float32 else "tf32",  # tf32 is ignored for 16-bit inputs
        num_warps=num_warps or cfg.num_warps, num_stages=num_stages or cfg.num_stages,
    )
    _decode_combine_kernel[(B * H,)](
        partial_out, lse, out, num_splits,
        D=D, BLOCK_SPLITS=triton.next_power_of_2(num_splits), CHUNK=min(16, triton.next_power_of_2(num_splits)),
        num_warps=4,
    )
    return out


# ---------------------------------------------------------------------------------- naive reference


def decode_attention_ref(q, k, v, sm_scale=None):
    """Softmax attention in fp32, one line per step. Groups q instead of expanding K/V, so it also
    serves long caches. Returns fp32 [B, H, D]."""
    B, H, D = q.shape
    Hkv = k.shape[1]
    sm_scale = 1.0 / math.sqrt(D) if sm_scale is None else sm_scale
    qg = q.float().reshape(B, Hkv, H // Hkv, D)  # [B, Hkv, G, D]
    scores = torch.einsum("bkgd,bksd->bkgs", qg, k.float()) * sm_scale  # [B, Hkv, G, S]
    out = torch.einsum("bkgs,bksd->bkgd", scores.softmax(-1), v.float())  # [B, Hkv, G, D]
    return out.reshape(B, H, D)  # [B, H, D]


# -------------------------------------------------------------------------------- blocked reference


def decode_attention_blocked_ref(q, k, v, num_splits, block_n, sm_scale=None):
    """The kernel's algorithm in PyTorch with its buffer names: the same split lengths, tiles,
    base-2 online softmax, empty-split handling and combine. fp32 [B, H, D]."""
    B, H, D = q.shape
    Hkv, S = k.shape[1], k.shape[2]
    G = H // Hkv
    qk_scale = (1.0 / math.sqrt(D) if sm_scale is None else sm_scale) * math.log2(math.e)
    split_len = -(-(-(-S // num_splits)) // block_n) * block_n
    q = q.float().reshape(B, Hkv, G, D)  # [B, Hkv, G, D]
    partial_out = torch.zeros(B, Hkv, G, num_splits, D, device=q.device)  # [B, Hkv, G, splits, D]
    lse = torch.full((B, Hkv, G, num_splits), float("-inf"), device=q.device)  # [B, Hkv, G, splits]
    for split in range(num_splits):
        start, end = split * split_len, min(split * split_len + split_len, S)
        m_i = torch.full((B, Hkv, G), float("-inf"), device=q.device)  # [B, Hkv, G]
        l_i = torch.zeros(B, Hkv, G, device=q.device)  # [B, Hkv, G]
        acc = torch.zeros(B, Hkv, G, D, device=q.device)  # [B, Hkv, G, D]
        for n0 in range(start, end, block_n):
            k_tile = k[:, :, n0:min(n0 + block_n, end)].float()  # [B, Hkv, <=BLOCK_N, D]
            v_tile = v[:, :, n0:min(n0 + block_n, end)].float()  # [B, Hkv, <=BLOCK_N, D]
            s = torch.einsum("bkgd,bknd->bkgn", q, k_tile) * qk_scale  # [B, Hkv, G, <=BLOCK_N]
            m_new = torch.maximum(m_i, s.amax(-1))
            alpha = torch.exp2(m_i - m_new)
            p = torch.exp2(s - m_new[..., None])
            l_i = l_i * alpha + p.sum(-1)
            acc = acc * alpha[..., None] + torch.einsum("bkgn,bknd->bkgd", p, v_tile)
            m_i = m_new
        if end > start:
            partial_out[:, :, :, split] = acc / l_i[..., None]
            lse[:, :, :, split] = (m_i + torch.log2(l_i)) * math.log(2)
    w = torch.exp(lse - lse.amax(-1, keepdim=True))  # [B, Hkv, G, splits]
    out = (w[..., None] * partial_out).sum(-2) / w.sum(-1)[..., None]  # [B, Hkv, G, D]
    return out.reshape(B, H, D)  # [B, H, D]


# --------------------------------------------------------------------------------------------- main


def main(B=2, H=8, Hkv=2, S=100, D=64, dtype=torch.float32, device=None, num_splits=3, block_n=32):
    """Small self-check: kernel == blocked reference == naive reference. Raises on a mismatch."""
    from torch.testing import assert_close  # kernels import nothing from the library: torch's check

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    gen = torch.Generator(device="cpu").manual_seed(0)
    q, k, v = (torch.randn(*shape, generator=gen).to(device, dtype)
               for shape in ((B, H, D), (B, Hkv, S, D), (B, Hkv, S, D)))
    ref = decode_attention_ref(q, k, v)
    blocked = decode_attention_blocked_ref(q.cpu(), k.cpu(), v.cpu(), num_splits, block_n)
    assert_close(blocked, ref.cpu(), rtol=1e-5, atol=1e-5, msg=lambda m: f"blocked ref vs naive ref: {m}")
    out = decode_attention(q, k, v, num_splits=num_splits, block_n=block_n)
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    assert_close(out.float(), ref, rtol=tol, atol=tol, msg=lambda m: f"triton vs naive ref: {m}")
    print(f"decode_attention ok: B={B} H={H} Hkv={Hkv} S={S} D={D} {dtype}")


def bench(B=16, H=64, Hkv=8, S=32768, D=128, dtype=torch.float16, **knobs):
    """Time the kernel on a CUDA GPU; returns (ms, GB/s): median of CUDA-event timings with L2 flushed
    (triton.testing.do_bench), GB/s = decode_bytes / (ms * 1e-3) / 1e9."""
    from triton.testing import do_bench

    q = torch.randn(B, H, D, device="cuda", dtype=dtype)
    k, v = (torch.randn(B, Hkv, S, D, device="cuda", dtype=dtype) for _ in range(2))
    ms = float(do_bench(lambda: decode_attention(q, k, v, **knobs), return_mode="median"))
    return ms, decode_bytes(B, H, Hkv, S, D, q.element_size()) / (ms * 1e-3) / 1e9


def decode_bytes(B: int, H: int, Hkv: int, S: int, D: int, elem_bytes: int) -> int:
    """Fewest bytes a decode step must move: K and V read once, q read, out written:
    bytes = (2 * B * Hkv * S * D + 2 * B * H * D) * elem_bytes. (The fp32 split buffers are extra
    traffic of the split-KV method, ~0.1% at long S, and are not counted.)"""
    return (2 * B * Hkv * S * D + 2 * B * H * D) * elem_bytes


def decode_flops(B: int, H: int, S: int, D: int) -> int:
    """FLOPs of a decode step: q.k^T and p.v, each 2*S*D per query head: flops = 4 * B * H * S * D."""
    return 4 * B * H * S * D


if __name__ == "__main__":
    main()
