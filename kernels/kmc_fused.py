"""Fused in-place parts of a TorchKMC step: two Triton kernels instead of about two dozen small
torch kernels per step.

A TorchKMC step (kmc_torch.py) is pure functions, which torch.compile fuses, and two in-place parts
it leaves eager so that compiling never copies the (R, N) species array: `_commit` (swap the vacancy
and the atom, move the vacancy, update the site -> vacancy map or the vacancy table, the clock, the
energy and the event count) and `_store` (write the affected vacancies' rates and energy changes,
their totals and the block sums of the two-level choice). Eager, each line is one or two kernels.
Under CUDA-graph replay a kernel costs about the same couple of microseconds whatever it does, so at
the largest boxes, where the number of replicas is bound by memory, these launches were a large part
of a step. Here each part is one kernel, one lane per replica; `commit` and `store` do exactly what `TorchKMC._commit` and
`TorchKMC._store` do (tests/simulators/test_kmc_fused.py runs both on the same states).

The two cannot be one kernel: the rates that `store` writes are computed from the committed state.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .targets import target

# The launch (BLOCK_R lanes, Triton's default 4 warps, no shared-memory tiles, no tl.dot) was timed on
# an H200 and fits every capability from sm_80 (kernels/targets.py): it is the fallback too, compiled
# for sm_80, sm_89 and sm_90a in CI (tests/kernels/test_compile_targets.py).
BLOCK_R = 128  # replicas per program
MAX_M = 64  # store: at most this many vacancies per replica (the kernel unrolls over them)


@triton.jit
def _commit_kernel(V_, VS, TS, X, DE, ACT, NEW_TIME,
                   SPECIES, VAC_POS, VMAP, VTAB, OVF_ST, TIME, ENERGY, EVENTS,
                   R, N, V, NT, HAS_MAP: tl.constexpr, HAS_TABLE: tl.constexpr, SLOTS: tl.constexpr,
                   BLOCK: tl.constexpr):
    r = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = r < R
    r64 = r.to(tl.int64)
    v = tl.load(V_ + r, mask=ok, other=0)
    vs = tl.load(VS + r, mask=ok, other=0)
    ts = tl.load(TS + r, mask=ok, other=0)
    x = tl.load(X + r, mask=ok, other=0)
    act = tl.load(ACT + r, mask=ok, other=0) != 0
    zero = tl.zeros_like(x)
    tl.store(SPECIES + r64 * N + vs, tl.where(act, x, zero), mask=ok)  # the atom moves into the vacancy's site
    tl.store(SPECIES + r64 * N + ts, tl.where(act, zero, x), mask=ok)
    tl.store(VAC_POS + r64 * V + v, tl.where(act, ts, vs), mask=ok)
    if HAS_MAP:
        old = tl.load(VMAP + r64 * N + ts, mask=ok, other=0)  # -1: the target holds an atom
        vm = v.to(old.dtype)
        tl.store(VMAP + r64 * N + vs, tl.where(act, tl.zeros_like(vm) - 1, vm), mask=ok)
        tl.store(VMAP + r64 * N + ts, tl.where(act, vm, old), mask=ok)
    if HAS_TABLE:  # v leaves its slot in bin(vs), takes the first free slot of bin(ts); full: overflow
        k = tl.arange(0, SLOTS)
        hv, ht = vs & (NT - 1), ts & (NT - 1)
        moved = act & (hv != ht) & ok
        base = r64 * NT * SLOTS
        row = tl.load(VTAB + (base + hv * SLOTS)[:, None] + k[None, :], mask=ok[:, None], other=0)
        vm = v.to(row.dtype)
        mine = tl.min(tl.where(row == vm[:, None], k[None, :], SLOTS), 1)
        tl.store(VTAB + base + hv * SLOTS + mine, tl.zeros_like(vm) - 1, mask=moved & (mine < SLOTS))
        row = tl.load(VTAB + (base + ht * SLOTS)[:, None] + k[None, :], mask=ok[:, None], other=0)
        free = tl.min(tl.where(row < 0, k[None, :], SLOTS), 1)
        tl.store(VTAB + base + ht * SLOTS + free, vm, mask=moved & (free < SLOTS))
        o = tl.load(OVF_ST + r, mask=ok, other=0)
        tl.store(OVF_ST + r, o | (moved & (free >= SLOTS)).to(o.dtype), mask=ok)
    tl.store(TIME + r, tl.load(NEW_TIME + r, mask=ok, other=0.0), mask=ok)
    de = tl.load(DE + r, mask=ok, other=0.0)
    e = tl.load(ENERGY + r, mask=ok, other=0.0)
    tl.store(ENERGY + r, e + tl.where(act, de, tl.zeros_like(de)), mask=ok)
    n = tl.load(EVENTS + r, mask=ok, other=0)
    tl.store(EVENTS + r, n + act.to(n.dtype), mask=ok)


@triton.jit
def _store_kernel(VIDX, G, DEM, OVF, RATES, DE_ST, VTOT, BSUM, OVF_ST,
                  R, V, NBK, NB, M: tl.constexpr, BK: tl.constexpr, BKP: tl.constexpr, BLOCK: tl.constexpr):
    r = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = r < R
    r64 = r.to(tl.int64)
    j = tl.arange(0, 8)
    for m in tl.static_range(M):  # rates, dE and totals of the affected vacancies (duplicates: equal values)
        vi = tl.load(VIDX + r64 * M + m, mask=ok, other=0)
        src = (r64 * M + m)[:, None] * 8 + j[None, :]
        g = tl.load(G + src, mask=ok[:, None], other=0.0)
        dst = (r64 * V + vi)[:, None] * 8 + j[None, :]
        tl.store(RATES + dst, g, mask=ok[:, None])
        tl.store(DE_ST + dst, tl.load(DEM + src, mask=ok[:, None], other=0.0), mask=ok[:, None])
        tl.store(VTOT + r64 * NBK + vi, tl.sum(g, 1), mask=ok)
    tl.debug_barrier()  # a replica's lane reads back the totals its own program wrote
    k = tl.arange(0, BKP)
    for m in tl.static_range(M):  # block sums of the blocks that hold them
        b = tl.load(VIDX + r64 * M + m, mask=ok, other=0) // BK
        w = tl.load(VTOT + (r64 * NBK + b * BK)[:, None] + k[None, :], mask=ok[:, None] & (k[None, :] < BK), other=0.0)
        tl.store(BSUM + r64 * NB + b, tl.sum(w, 1), mask=ok)
    o = tl.load(OVF + r, mask=ok, other=0)
    tl.store(OVF_ST + r, tl.load(OVF_ST + r, mask=ok, other=0) | o, mask=ok)


def commit(kmc, v, vs, ts, X, dE, active, new_time) -> None:
    """TorchKMC._commit in one kernel (kmc's state changed in place). Raises UnsupportedGPU below sm_80."""
    target(kmc.species.device)
    vmap = kmc._vmap if kmc._vmap is not None else kmc.species  # placeholder pointers where absent
    vtab = kmc._vtab if kmc._vtab is not None else kmc.species
    _commit_kernel[(triton.cdiv(kmc.R, BLOCK_R),)](
        v.contiguous(), vs.contiguous(), ts.contiguous(), X.contiguous(), dE.contiguous(),
        active.contiguous().view(torch.int8), new_time.contiguous(),
        kmc.species, kmc.vac_pos, vmap, vtab, kmc._overflow.view(torch.int8), kmc.time, kmc.energy, kmc.events,
        kmc.R, kmc.N, kmc.V, kmc._nt, HAS_MAP=kmc._vmap is not None, HAS_TABLE=kmc._vtab is not None,
        SLOTS=kmc.TABLE_SLOTS, BLOCK=BLOCK_R)


def store(kmc, vidx, g, dE, overflow) -> None:
    """TorchKMC._store in one kernel (kmc's state changed in place). Raises UnsupportedGPU below sm_80."""
    target(kmc.species.device)
    M = vidx.shape[1]
    _store_kernel[(triton.cdiv(kmc.R, BLOCK_R),)](
        vidx.contiguous(), g.contiguous(), dE.to(kmc._dE.dtype).contiguous(), overflow.contiguous().view(torch.int8),
        kmc._rates, kmc._dE, kmc._vtot_pad, kmc._bsum, kmc._overflow.view(torch.int8),
        kmc.R, kmc.V, kmc._nb * kmc._Bk, kmc._nb,
        M=M, BK=kmc._Bk, BKP=triton.next_power_of_2(kmc._Bk), BLOCK=BLOCK_R)
