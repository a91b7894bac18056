"""Dense split-KV flash-decoding in TileLang: the same algorithm as `decode_attention.py` (Triton).

Glossary: B batch, H query heads, Hkv KV heads, G = H // Hkv, S cached tokens, D head dim.
q [B, H, D]; k, v [B, Hkv, S, D]; out [B, H, D]. S is a dynamic (symbolic) dimension, so one
compiled kernel serves every cache length; B, H, Hkv, D, the split count and tile sizes are baked in.

One program per (split, kv head, b) loads the G query heads of its KV head (padded to `block_g`
rows for the tensor cores), streams its chunk of K and V through shared memory with a pipelined
copy, and keeps an online softmax in fp32 (base 2); a second kernel in the same function combines
the splits by their log-sum-exp. TileLang is imported lazily: this module imports where it is
missing, and its kernels run only on a CUDA GPU (`lower_cuda_source` works on a CPU).
"""

import functools
import math

import torch

from .decode_attention import decode_attention_ref, default_config, device_limits

LOG2E = 1.4426950408889634
LN2 = 0.6931471805599453


def _default_block_g(G: int) -> int:
    return max(16, 1 << (G - 1).bit_length())  # the q block is a power of two >= 16 (MMA's M)


def decode_attention_kernel(B, H, Hkv, D, num_splits, block_n=64, num_stages=2, threads=128,
                            dtype="float16", sm_scale=None):
    """Kernel factory: returns a T.prim_func(Q, K, V, PartialOut, Lse, Out) with dynamic S."""
    import tilelang.language as T

    G = H // Hkv
    block_g = _default_block_g(G)
    qk_scale = (1.0 / math.sqrt(D) if sm_scale is None else sm_scale) * LOG2E
    accum = "float32"
    S = T.dynamic("S")

    @T.prim_func
    def decode_attention_split_kv(
        Q: T.Tensor([B, H, D], dtype),
        K: T.Tensor([B, Hkv, S, D], dtype),
        V: T.Tensor([B, Hkv, S, D], dtype),
        PartialOut: T.Tensor([B, H, num_splits, D], accum),
        Lse: T.Tensor([B, H, num_splits], accum),
        Out: T.Tensor([B, H, D], dtype),
    ):
        with T.Kernel(num_splits, Hkv, B, threads=threads) as (split, kvh, b):
            Q_shared = T.alloc_shared([block_g, D], dtype)  # [BLOCK_G, D] this KV head's query heads
            K_shared = T.alloc_shared([block_n, D], dtype)  # [BLOCK_N, D]
            V_shared = T.alloc_shared([block_n, D], dtype)  # [BLOCK_N, D]
            acc_s = T.alloc_fragment([block_g, block_n], accum)  # [BLOCK_G, BLOCK_N] scores, then p
            P_shared = T.alloc_shared([block_g, block_n], dtype)  # [BLOCK_G, BLOCK_N] p for the PV product
            acc_o = T.alloc_fragment([block_g, D], accum)  # [BLOCK_G, D] unnormalized output
            m_i = T.alloc_fragment([block_g], accum)  # [BLOCK_G] running max, base 2
            m_prev = T.alloc_fragment([block_g], accum)
            alpha = T.alloc_fragment([block_g], accum)
            l_i = T.alloc_fragment([block_g], accum)  # [BLOCK_G] running sum of exp2
            s_sum = T.alloc_fragment([block_g], accum)

            for i, d in T.Parallel(block_g, D):
                Q_shared[i, d] = T.if_then_else(i < G, Q[b, kvh * G + i, d], T.cast(0, dtype))
            T.fill(acc_o, 0)
            T.fill(l_i, 0)
            T.fill(m_i, -T.infinity(accum))
            # Split length is whole tiles, as in the Triton kernel; trailing splits may be empty.
            split_len = T.ceildiv(T.ceildiv(S, num_splits), block_n) * block_n
            start = split * split_len
            end = T.min(start + split_len, S)
            n_blocks = T.max(T.ceildiv(end - start, block_n), 0)
            for kb in T.Pipelined(n_blocks, num_stages=num_stages):
                n0 = start + kb * block_n
                T.copy(K[b, kvh, n0:n0 + block_n, :], K_shared)  # out-of-range rows are zero-filled
                T.clear(acc_s)
                T.gemm(Q_shared, K_shared, acc_s, transpose_B=True, policy=T.GemmWarpPolicy.FullCol)
                for i, j in T.Parallel(block_g, block_n):
                    acc_s[i, j] = T.if_then_else(n0 + j < end, acc_s[i, j] * qk_scale, -T.infinity(accum))
                T.copy(m_i, m_prev)
                T.reduce_max(acc_s, m_i, dim=1, clear=False)
                for i in T.Parallel(block_g):
                    alpha[i] = T.exp2(m_prev[i] - m_i[i])
                for i, j in T.Parallel(block_g, block_n):
                    acc_s[i, j] = T.exp2(acc_s[i, j] - m_i[i])
                T.reduce_sum(acc_s, s_sum, dim=1)
                for i in T.Parallel(block_g):
                    l_i[i] = l_i[i] * alpha[i] + s_sum[i]
                T.copy(acc_s, P_shared)
                for i, d in T.Parallel(block_g, D):
                    acc_o[i, d] *= alpha[i]
                T.copy(V[b, kvh, n0:n0 + block_n, :], V_shared)
                T.gemm(P_shared, V_shared, acc_o, policy=T.GemmWarpPolicy.FullCol)
            for i, d in T.Parallel(block_g, D):
                if i < G:
                    PartialOut[b, kvh * G + i, split, d] = T.if_then_else(l_i[i] > 0, acc_o[i, d] / l_i[i], 0)
            for i in T.Parallel(block_g):
                if i < G:
                    Lse[b, kvh * G + i, split] = T.if_then_else(
                        l_i[i] > 0, (m_i[i] + T.log2(l_i[i])) * LN2, -T.infinity(accum))

        with T.Kernel(H, B, threads=D) as (h, b):
            o_acc = T.alloc_fragment([D], accum)  # [D]
            lse_max = T.alloc_local([1], accum)
            w_sum = T.alloc_local([1], accum)
            w = T.alloc_local([1], accum)
            lse_max[0] = -T.infinity(accum)
            for s in T.serial(num_splits):
                lse_max[0] = T.max(lse_max[0], Lse[b, h, s])
            w_sum[0] = 0
            T.clear(o_acc)
            for s in T.serial(num_splits):
                w[0] = T.exp2((Lse[b, h, s] - lse_max[0]) * LOG2E)  # 0 for an empty split
                w_sum[0] += w[0]
                for d in T.Parallel(D):
                    o_acc[d] += w[0] * PartialOut[b, h, s, d]
            for d in T.Parallel(D):
                Out[b, h, d] = T.cast(o_acc[d] / w_sum[0], dtype)

    return decode_attention_split_kv


def lower_cuda_source(B, H, Hkv, S, D, dtype="float16", target="cuda -arch=sm_90a", num_splits=4, **knobs) -> str:
    """Lower the kernel for `target` and return its CUDA source. Needs no GPU. S is only recorded:
    the kernel is compiled for a dynamic S."""
    import tilelang
    from tvm.target import Target

    del S
    if isinstance(target, str):  # TileLang 0.1.15's TVM takes only the dict form of a target
        kind, *opts = target.split()
        target = {"kind": kind, **dict(o.lstrip("-").split("=", 1) for o in opts)}
    func = decode_attention_kernel(B, H, Hkv, D, num_splits, dtype=dtype, **knobs)
    with Target(target):
        artifact = tilelang.lower(func, target=target)
    return artifact.kernel_source


@functools.lru_cache(maxsize=64)
def _compiled(B, H, Hkv, D, num_splits, block_n, num_stages, threads, dtype, sm_scale):
    import tilelang

    func = decode_attention_kernel(B, H, Hkv, D, num_splits, block_n, num_stages, threads, dtype, sm_scale)
    return tilelang.compile(func, out_idx=None, target="cuda")


def plan(q, k, *, sm_scale=None, num_splits=None, block_n=128, num_stages=2, threads=128) -> tuple:
    """The compile key for these inputs: (B, H, Hkv, D, num_splits, block_n, num_stages, threads,
    dtype, sm_scale). Runs anywhere (no TileLang), so CPU tests cover it. `num_splits` defaults to
    the Triton heuristic; block_n=128 with 2 stages was the fastest of the four settings timed
    (kernels/NOTES-decode.md)."""
    B, H, D = q.shape
    Hkv, S = k.shape[1], k.shape[2]
    assert k.shape[0] == B and k.shape[3] == D and H % Hkv == 0, f"q {tuple(q.shape)}, k {tuple(k.shape)}"
    dtype = {torch.float16: "float16", torch.bfloat16: "bfloat16"}[q.dtype]
    if num_splits is None:
        limits = device_limits(q.device)
        num_splits = default_config(B, Hkv, S, D, limits["sm_count"], elem_bytes=q.element_size(),
                                    smem_bytes=limits["smem_bytes"]).num_splits
    return (B, H, Hkv, D, num_splits, block_n, num_stages, threads, dtype, sm_scale)


def decode_attention_tilelang(q, k, v, *, sm_scale=None, num_splits=None, block_n=128, num_stages=2, threads=128):
    """q [B, H, D]; k, v [B, Hkv, S, D] (fp16 or bf16, CUDA) -> out [B, H, D]. Compiled once per
    `plan` key; any S reuses it."""
    assert q.is_cuda and k.shape == v.shape, "CUDA tensors, q [B, H, D], k = v [B, Hkv, S, D]"
    key = plan(q, k, sm_scale=sm_scale, num_splits=num_splits, block_n=block_n, num_stages=num_stages,
               threads=threads)
    kernel = _compiled(*key)
    B, H, _, D, num_splits = key[:5]
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    partial_out = torch.empty(B, H, num_splits, D, device=q.device, dtype=torch.float32)  # [B, H, splits, D]
    lse = torch.empty(B, H, num_splits, device=q.device, dtype=torch.float32)  # [B, H, splits]
    out = torch.empty(B, H, D, device=q.device, dtype=q.dtype)  # [B, H, D]
    kernel(q, k, v, partial_out, lse, out)
    return out


def main(B=2, H=16, Hkv=2, S=1000, D=128, dtype=torch.float16):
    """GPU self-check against the naive reference; raises on a mismatch."""
    from torch.testing import assert_close  # kernels import nothing from the library: torch's check

    q = torch.randn(B, H, D, device="cuda", dtype=dtype)
    k, v = (torch.randn(B, Hkv, S, D, device="cuda", dtype=dtype) for _ in range(2))
    out = decode_attention_tilelang(q, k, v)
    assert_close(out.float(), decode_attention_ref(q, k, v), rtol=2e-2, atol=2e-2, msg=lambda m: f"tilelang vs ref: {m}")
    print(f"decode_attention_tilelang ok: B={B} H={H} Hkv={Hkv} S={S} D={D} {dtype}")


if __name__ == "__main__":
    main()
