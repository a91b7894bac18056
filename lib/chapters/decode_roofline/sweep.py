"""Decode-attention benchmark sweep: our kernels against PyTorch SDPA on the same GPU, same run.

Every configuration is allocated once with random data, every backend's output is checked against
an fp32 reference before anything is timed (a mismatch raises: a wrong kernel is never timed), and
each row reports ms (median, `bench.time_ms`) and GB/s over `decode_bytes` (K and V read once, q
read, out written). Glossary: B batch, H (n_q) query heads, Hkv (n_kv) KV heads, S (seq_len), D.
"""

import itertools
import math
from typing import Callable, Iterable, Sequence

import torch
from tqdm.auto import tqdm

from msrbook.bench import DECODE_BASELINES, decode_baseline, gbps, time_ms
from msrbook.kernels.decode_attention import decode_attention_ref, decode_bytes
from msrbook.testing import assert_close

# Tolerance relative to the output's largest magnitude. Both our kernels and SDPA round p to the
# input dtype before the PV product and round the output once (fp16: 2^-11, bf16: 2^-8 relative),
# so 1e-2 (fp16) and 3e-2 (bf16) of the output scale sit well above correct results and far below
# any indexing or masking error; fp32 inputs are computed in fp32 throughout.
SCALED_TOL = {torch.float16: 1e-2, torch.bfloat16: 3e-2, torch.float32: 1e-4}


def _reference(q, k, v) -> torch.Tensor:
    """fp32 reference one batch element at a time, so its fp32 copies of K/V stay small. [B, H, D]"""
    return torch.cat([decode_attention_ref(q[b:b + 1], k[b:b + 1], v[b:b + 1]) for b in range(q.shape[0])])


def _does_not_fit(B, H, Hkv, S, D, dtype, device) -> str:
    """A reason string when the inputs (plus the fp32 reference of one batch element and slack)
    exceed the GPU's free memory; '' when they fit or on CPU."""
    if torch.device(device).type != "cuda":
        return ""
    elem = torch.tensor([], dtype=dtype).element_size()
    need = 2 * B * Hkv * S * D * elem + 2 * Hkv * S * D * 4 + H * S * 4 + 2**30
    free, _ = torch.cuda.mem_get_info(device)
    return f"does not fit: needs {need / 1e9:.1f} GB, {free / 1e9:.1f} GB free" if need > free else ""


def _config_rows(B, S, H, Hkv, D, dtype, backends, device, warmup, rep, gen, bar) -> list[dict]:
    base = dict(batch=B, seq_len=S, n_q=H, n_kv=Hkv, head_dim=D, dtype=str(dtype).removeprefix("torch."),
                bytes=decode_bytes(B, H, Hkv, S, D, torch.tensor([], dtype=dtype).element_size()))
    results = {name: dict(base, backend=name, ms=math.nan, gbps=math.nan, error="") for name in backends}
    reason = _does_not_fit(B, H, Hkv, S, D, dtype, device)
    if reason:
        for row in results.values():
            row["error"] = reason
        bar.update(len(backends))
        return list(results.values())
    q = torch.randn(B, H, D, generator=gen, device=device).to(dtype)  # [B, H, D]
    k = torch.randn(B, Hkv, S, D, generator=gen, device=device).to(dtype)  # [B, Hkv, S, D]
    v = torch.randn(B, Hkv, S, D, generator=gen, device=device).to(dtype)  # [B, Hkv, S, D]
    ref = _reference(q, k, v)  # [B, H, D] fp32
    tol = SCALED_TOL[dtype] * float(ref.abs().max())
    fns = {}
    for name in backends:  # check every backend before timing any
        try:
            fn = decode_baseline(name, q, k, v)
            out = fn()
        except (ImportError, RuntimeError, KeyError, AssertionError) as err:  # cannot run here: record why
            results[name]["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
            continue
        assert_close(out.float(), ref, rtol=0.0, atol=tol, name=f"{name} B={B} S={S} H={H} Hkv={Hkv} {dtype}")
        fns[name] = fn
    del ref
    for name, fn in fns.items():
        ms = time_ms(fn, warmup=warmup, rep=rep, device=device)
        results[name].update(ms=ms, gbps=gbps(base["bytes"], ms))
        bar.update(1)
    bar.update(len(backends) - len(fns))
    return list(results.values())


def sweep(batches: Iterable[int], lengths: Iterable[int], head_configs: Iterable[tuple[int, int]], D: int = 128,
          dtype=torch.float16, backends: Sequence[str] = DECODE_BASELINES,
          warmup: float = 25, rep: float = 100, progress: bool = True, device=None, seed: int = 0) -> list[dict]:
    """Rows {batch, seq_len, n_q, n_kv, head_dim, dtype, backend, ms, gbps, bytes, error} for every
    (B, S, (H, Hkv)) and backend. `error` says why a backend or config was skipped ('' if timed).
    `warmup`/`rep` are ms budgets (see `time_ms`). Raises AssertionError on a wrong result."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    gen = torch.Generator(device=device).manual_seed(seed)
    configs = list(itertools.product(batches, lengths, head_configs))
    rows = []
    with tqdm(total=len(configs) * len(backends), disable=not progress, desc="decode sweep") as bar:
        for B, S, (H, Hkv) in configs:
            bar.set_postfix_str(f"B={B} S={S} H={H}/{Hkv}")
            try:
                rows += _config_rows(B, S, H, Hkv, D, dtype, backends, device, warmup, rep, gen, bar)
            except torch.cuda.OutOfMemoryError as err:
                rows += [dict(batch=B, seq_len=S, n_q=H, n_kv=Hkv, head_dim=D, dtype=str(dtype).removeprefix("torch."),
                              backend=name, ms=math.nan, gbps=math.nan, bytes=0, error=f"out of memory: {str(err)[:120]}")
                         for name in backends]
            finally:
                if device.type == "cuda":
                    torch.cuda.empty_cache()  # free this config's KV cache before the next allocates
    return rows


def best_backend_ratio(rows: list[dict], batch: int, seq_len: int, n_q: int, n_kv: int) -> float:
    """Fastest SDPA backend's ms over our Triton kernel's ms for one configuration (above 1: ours
    is faster). Raises ValueError when either side has no timing."""
    sel = [r for r in rows if (r["batch"], r["seq_len"], r["n_q"], r["n_kv"]) == (batch, seq_len, n_q, n_kv)
           and not r["error"]]
    sdpa = [r["ms"] for r in sel if r["backend"].startswith("sdpa_")]
    ours = [r["ms"] for r in sel if r["backend"] == "triton"]
    if not sdpa or not ours:
        raise ValueError(f"no timed SDPA and triton rows for B={batch} S={seq_len} H={n_q} Hkv={n_kv}")
    return min(sdpa) / ours[0]
