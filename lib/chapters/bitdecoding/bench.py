"""BitDecoding's benchmark drivers: every low-bit impl against the fastest fp16 decode of the same run,
on one shape, each output checked before it is timed; and the fused quantize-and-pack launch.

Glossary: B batch, H query heads, Hkv KV heads, T cached tokens, D head dim. Bytes: `bitdecode_bytes`
(codes, metadata, the fp16 residual, q and out) for the low-bit impls, `decode_bytes` for fp16.
"""

import math

import torch

from msrbook.bench import decode_baseline, gbps, time_graph_ms, time_ms
from msrbook.kernels.bitdecode import QuantConfig, QuantKVCache, bitdecode_attention, bitdecode_bytes, quantize_pack_kv
from msrbook.kernels.decode_attention import decode_attention_ref, decode_bytes
from msrbook.testing import assert_close

FP16_BACKENDS = ("sdpa_cudnn", "sdpa_flash", "triton_fp16")  # the dense baselines, fastest of them counts
LOWBIT_IMPLS = ("triton", "cuda_core", "naive")
SCALED_TOL = 1e-2  # of the reference's largest |value|: fp16 rounding of q o s, p o s and the output (see tests)


def _fp16_fn(name, q, k, v):
    """The fp16 baselines as `bench.decode_baseline` runs them; our dense kernel is "triton_fp16" in these tables."""
    return decode_baseline("triton" if name == "triton_fp16" else name, q, k, v)


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
