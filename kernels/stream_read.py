"""A streaming read of one buffer, the read-only ceiling of the memory roofline (msrbook.bench.measure_bandwidth).

Each program loads UNROLL blocks of BLOCK fp32 values (16-byte loads, evict-first, so the stream
does not keep L2) and stores one partial sum, so the bytes moved are the buffer's, plus one float per
program (under 0.01 % at the sizes timed).
"""

import triton
import triton.language as tl

from .targets import target

# (BLOCK, UNROLL, num_warps) tried, the fastest kept (timed on an H200). No shared-memory tiles (only
# the final sum's scratch) and at most 32 values per thread in flight: every capability from sm_80
# runs the same shapes (kernels/targets.py), compiled for sm_80, sm_89 and sm_90a in CI
# (tests/kernels/test_compile_targets.py).
LAUNCH_SHAPES = ((4096, 4, 8), (8192, 8, 8), (2048, 16, 4))


def launch_shapes(device) -> tuple:
    """The (BLOCK, UNROLL, num_warps) shapes to try on `device`; raises UnsupportedGPU below sm_80."""
    target(device)
    return LAUNCH_SHAPES


@triton.jit
def stream_read(X, Partial, n, BLOCK: tl.constexpr, UNROLL: tl.constexpr):
    # X [n] fp32, Partial [cdiv(n, BLOCK * UNROLL)] fp32
    base = tl.program_id(0) * BLOCK * UNROLL
    acc = tl.zeros([BLOCK], tl.float32)
    for i in tl.static_range(UNROLL):
        offs = base + i * BLOCK + tl.arange(0, BLOCK)
        acc += tl.load(X + offs, mask=offs < n, other=0.0, eviction_policy="evict_first")
    tl.store(Partial + tl.program_id(0), tl.sum(acc, 0))
