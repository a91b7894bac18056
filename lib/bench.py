"""The shared timing harness: medians of CUDA-event timings, bandwidth ceilings, SDPA baselines.

Units: ms for time; decimal GB/s (1 GB = 1e9 bytes) for bandwidth, gbps = bytes / (ms * 1e-3) / 1e9.
The roofline for a memory-bound kernel is the higher of two measured ceilings of the same run
(`roofline_gbps`): a read-only stream and a device-to-device copy (bytes read + bytes written).
On a CPU every function here still runs, so notebooks and tests execute, but a CPU timing is not a
speed measurement and is never reported as one.
"""

import statistics
import time
import warnings
from typing import Callable, Sequence

import torch

from msrbook.kernels.decode_attention import decode_attention
from msrbook.kernels.decode_attention_tilelang import decode_attention_tilelang  # imports tilelang only when called
from msrbook.kernels.stream_read import launch_shapes, stream_read
from msrbook.testing import assert_close

SDPA_BACKENDS = ("flash", "cudnn", "efficient", "math")
DECODE_BASELINES = ("triton", "tilelang", "sdpa_flash", "sdpa_cudnn")  # dense decode: ours, then PyTorch SDPA


def _on_cuda(device) -> bool:
    return torch.device(device).type == "cuda" if device is not None else torch.cuda.is_available()


def time_ms(fn: Callable[[], object], warmup: float = 25, rep: float = 100, device=None) -> float:
    """Median time of one `fn()` call in ms. `warmup` and `rep` are time budgets in ms, as in
    `triton.testing.do_bench`. On CUDA: do_bench (CUDA events, L2 flushed before every call,
    median). On CPU: median of perf_counter over repeated calls, for code paths only."""
    if _on_cuda(device):
        import triton.testing

        return float(triton.testing.do_bench(fn, warmup=warmup, rep=rep, return_mode="median"))
    t0 = time.perf_counter()
    fn()  # the first call also warms up
    first = (time.perf_counter() - t0) * 1e3
    n = int(min(100, max(3, rep / max(first, 1e-3))))
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def time_graph_ms(fn: Callable[[], object], warmup: float = 25, rep: float = 100, device=None) -> tuple[float, bool]:
    """GPU time of one `fn()` call without the host's share: on CUDA, fn is captured once in a CUDA
    graph (after three eager warm-up calls on a side stream) and the replay is timed as `time_ms`
    times a call (L2 flushed before each, median), as a decode loop that replays its step would run
    it. Returns (ms, graphed). Where capture fails, or off CUDA, it falls back to `time_ms` and
    says so (graphed False). Why it matters: `time_ms` hides only as much host time as the L2 flush
    before each call takes on the GPU (about 0.08 ms for do_bench's 256 MB); a call whose Python and
    launch overhead is longer than that is timed partly on the host."""
    if not _on_cuda(device):
        return time_ms(fn, warmup, rep, device), False
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                fn()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
    except Exception:  # noqa: BLE001 -- any capture failure: time it eagerly and say so
        torch.cuda.synchronize()
        return time_ms(fn, warmup, rep, device), False
    try:
        return time_ms(graph.replay, warmup, rep, device), True
    finally:
        del graph


def rotation_copies(nbytes_per_set: int, device, factor: float = 4.0, max_sets: int = 64) -> int:
    """How many input sets make rotating through them exceed `factor` x the L2 cache, so that a
    small kernel's inputs are never L2 hits (1 on CPU)."""
    if not _on_cuda(device):
        return 1
    l2 = torch.cuda.get_device_properties(torch.device(device)).L2_cache_size
    return int(min(max_sets, max(1, -(-int(factor * l2) // max(1, nbytes_per_set)))))


def rotating(fn: Callable, input_sets: Sequence[tuple]) -> Callable[[], object]:
    """A no-argument callable that runs fn(*input_sets[i]) with i advancing on every call, for
    timing small inputs that would otherwise stay in L2 (see `rotation_copies`)."""
    state = {"i": 0}

    def call():
        args = input_sets[state["i"] % len(input_sets)]
        state["i"] += 1
        return fn(*args)

    return call


def gbps(nbytes: int, ms: float) -> float:
    """Decimal GB/s: nbytes / (ms * 1e-3) / 1e9."""
    return nbytes / (ms * 1e-3) / 1e9


def measure_bandwidth(device, nbytes: int = 2**31) -> dict:
    """Measured ceilings in GB/s: {"read_gbps": ..., "copy_gbps": ...}. Read: the faster of a torch
    sum and a Triton streaming read of an `nbytes` fp32 buffer (bytes = nbytes; the partial sums are
    <0.01% more). Copy: dst.copy_(src) of `nbytes` (bytes = 2 * nbytes: read + written). Random
    data, median of CUDA-event timings; on CPU only the torch paths run (no roofline)."""
    device = torch.device(device)
    n = nbytes // 4
    src = torch.rand(n, device=device, dtype=torch.float32)
    dst = torch.empty_like(src)
    read_ms = time_ms(lambda: src.sum(), device=device)
    if device.type == "cuda":
        kernel = stream_read
        for block, unroll, warps in launch_shapes(device):  # keep the fastest shape (refuses below sm_80)
            partial = torch.empty(-(-n // (block * unroll)), device=device, dtype=torch.float32)
            launch = lambda: kernel[(partial.numel(),)](src, partial, n, BLOCK=block, UNROLL=unroll, num_warps=warps)  # noqa: E731
            launch()
            assert_close(partial.double().sum(), src.double().sum(), rtol=1e-4, atol=0.0, name="stream read")
            read_ms = min(read_ms, time_ms(launch, device=device))
    copy_ms = time_ms(lambda: dst.copy_(src), device=device)
    del src, dst
    return {"read_gbps": gbps(4 * n, read_ms), "copy_gbps": gbps(8 * n, copy_ms)}


def roofline_gbps(bw: dict) -> float:
    """The memory roofline of a run: the higher of its read-only and copy bandwidths."""
    return max(bw["read_gbps"], bw["copy_gbps"])


def _sdpa_backend(name: str):
    from torch.nn.attention import SDPBackend

    return {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
            "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}[name]


def sdpa_decode(q, k, v, backend: str, sm_scale=None):
    """PyTorch SDPA as a decode baseline. q [B, H, D]; k, v [B, Hkv, S, D] -> [B, H, D].
    GQA through `enable_gqa=True`, never by expanding K and V; `backend` in SDPA_BACKENDS is the
    only one allowed, so a backend that cannot run raises instead of falling back."""
    from torch.nn.attention import sdpa_kernel

    with sdpa_kernel(_sdpa_backend(backend)):
        out = torch.nn.functional.scaled_dot_product_attention(
            q[:, :, None, :], k, v, scale=sm_scale, enable_gqa=True)  # [B, H, 1, D]
    return out[:, :, 0, :]  # [B, H, D]


def available_sdpa_backends(q, k, v, backends: Sequence[str] = SDPA_BACKENDS) -> list[str]:
    """The SDPA backends that run on these inputs (each tried once)."""
    ok = []
    for name in backends:
        try:
            with warnings.catch_warnings():  # each refusing backend warns why; the list says enough
                warnings.simplefilter("ignore")
                sdpa_decode(q, k, v, name)
            ok.append(name)
        except RuntimeError:  # "No available kernel" and unsupported-input errors
            continue
    return ok


def decode_baseline(name: str, q, k, v) -> Callable[[], torch.Tensor]:
    """A no-argument callable running the dense decode `name` on q [B, H, D], k, v [B, Hkv, S, D]:
    "triton" (our split-KV kernel), "tilelang" (its TileLang twin; GPU only), or "sdpa_<backend>"
    (PyTorch SDPA with exactly that backend). The chapters time their kernels against the fastest
    of these on the same GPU in the same run. Raises ValueError for an unknown name."""
    if name == "triton":
        return lambda: decode_attention(q, k, v)
    if name == "tilelang":
        return lambda: decode_attention_tilelang(q, k, v)
    if name.startswith("sdpa_"):
        return lambda: sdpa_decode(q, k, v, name.removeprefix("sdpa_"))
    raise ValueError(f"unknown decode baseline {name!r}; valid: {', '.join(DECODE_BASELINES)}")
