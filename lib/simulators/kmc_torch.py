"""Vacancy kinetic Monte Carlo of Fe-Cu in tensors: many replicas, many vacancies, one exact BKL event
per replica per step, on CPU (tests) or CUDA (speed).

State of R independent replicas of one periodic BCC box of N = 2 cells^3 sites (bcc.py numbering):

    species   (R, N) int8     0 vacancy, 1 Fe, 2 Cu (1 byte per site: the only per-site state without the map)
    vac_pos   (R, V) int64    site of each vacancy
    rates     (R, V, 8)       Gamma of each vacancy's 8 first-neighbour jumps (bcc.NN1 order), 1/s
    time      (R,)  float64   physical time, s;  energy (R,) float64, eV, tracked by adding dE
    (optional) site -> vacancy map (R, N) int16, or vacancy table (R, NT, 8) int16; see `site_map`

A step is the residence-time (BKL) algorithm run in every replica at once:

    P(v, a) = Gamma_va / sum Gamma,        dt = -ln(u) / sum Gamma

sampled by a two-level inverse CDF: the vacancies are grouped in blocks of BLOCK (the last block padded
with zero-rate entries that are never chosen), a block is picked from the (R, V / BLOCK) block sums, a
vacancy inside it, then one of its 8 jumps, so the choice costs O(V / BLOCK + BLOCK), not O(V). The
block sums are recomputed (not incremented: no drift) for the blocks whose vacancies changed.

Then the chosen vacancy swaps with its neighbour, and only the rates that can have changed are
recomputed: the moved vacancy's, and those of vacancies at an offset in bcc.influence_offsets()
(periodic minimum image) from either changed site. At most `max_local`
such other vacancies per replica are recomputed per step (fixed shapes, no host sync); a step that
would need more sets an overflow flag, and `check()` (called by `run`) raises. With
V - 1 <= max_local (or cells <= 3) every vacancy is recomputed every step. Otherwise the vacancies
near an event are found by scanning all V positions, or from the 78 sites around the two changed
sites: their species says which hold a vacancy, and either an (R, N) int16 site -> vacancy map
(site_map="map", 2 more bytes per site) or a small hashed vacancy table (site_map="table", a few
hundred bytes per vacancy) says which vacancy it is.

Neighbour sites are computed from coordinates, not read from an (N, 14) table, so memory stays at
one byte per site (three with the site map) plus (R, V)-sized state. On CUDA, `run`/`advance` replay
a CUDA graph of `graph_steps` steps (use_graph); random numbers come from the simulator's own
generator, drawn outside the graph. compile=True also runs the step through torch.compile.
"""

from __future__ import annotations

import math
import time

import pandas as pd
import torch

from . import bcc
from msrbook.kernels import kmc_fused
from .energy import DEFAULT, CU, VAC, FeCuParams, energy_from_scratch, jump_dE, jump_rates
from .observables import cluster_stats_torch


def random_species(cells: int, replicas: int, cu_frac: float, vacancies: int, generator: torch.Generator,
                   device="cpu") -> torch.Tensor:
    """(R, N) int8 random solid solutions: exactly round(cu_frac * N) Cu and `vacancies` vacancies per
    replica, the rest Fe, placed uniformly at random. Replicas are drawn in chunks to bound memory."""
    N = bcc.n_sites(cells)
    n_cu = int(round(cu_frac * N))
    if n_cu + vacancies > N:
        raise ValueError(f"{n_cu} Cu + {vacancies} vacancies do not fit in {N} sites")
    out = torch.full((replicas, N), 1, dtype=torch.int8, device=device)
    if N >= 1 << 20:  # large boxes: one random permutation per replica (a top-k of N keys is slower)
        base = torch.ones(N, dtype=torch.int8, device=device)
        base[:vacancies], base[vacancies:vacancies + n_cu] = VAC, CU
        for r in range(replicas):
            out[r] = base[torch.randperm(N, generator=generator, device=device)]
        return out
    chunk = max(1, (1 << 24) // N)
    for r0 in range(0, replicas, chunk):
        r1 = min(replicas, r0 + chunk)
        key = torch.rand(r1 - r0, N, generator=generator, device=device)
        pick = key.topk(n_cu + vacancies, dim=1).indices  # (c, n_cu + V) distinct random sites
        rows = out[r0:r1]
        rows.scatter_(1, pick[:, :vacancies], VAC)
        rows.scatter_(1, pick[:, vacancies:], CU)
    return out


class TorchKMC:
    """R replicas of a cells^3 BCC Fe-Cu box with V vacancies each; see the module docstring.

    cells: box edge in BCC cells (N = 2 cells^3 sites); replicas: R; cu_frac: Cu atom fraction
    (exactly round(cu_frac N) Cu per replica); vacancies: V per replica; temperature: K; seed: of the
    simulator's own torch.Generator (initial configurations and all jumps); device, dtype: of rates
    (time and energy are always float64). species0: optional (R, N) initial configurations instead of
    random ones (any integer dtype; each row must hold exactly V vacancies).

    site_map: how a step finds the vacancies whose rates it changed. False: a scan of all V vacancy
    positions. Otherwise by 78 look-ups around the two changed sites, where `species` says which
    hold a vacancy and one of two structures, updated with every jump, says which vacancy:
    "map" (or True): an (R, N) int16 map site -> vacancy index (-1 where no vacancy; int32 if
    V >= 32768): 2 bytes per site, 3 in all with `species`. "table": a hash table of the vacancies
    by site, NT = next power of 2 >= 8 V bins of TABLE_SLOTS slots (vacancy indices, -1 free) per
    replica, bin = site mod NT; a look-up reads one bin's slots and the vacancy positions they name.
    It costs 2 * 8 * NT / N (16 to 32 V / N) bytes per site: the box is 1 byte per site in all. A jump
    into a full bin sets the overflow flag (`check()` raises). With 1/16 to 1/8 of a vacancy per bin
    on average (randomly placed vacancies), a jump lands in a bin that already holds 8 with
    probability about 5e-15 to 1.3e-12 (Poisson): one run of 1e10 jumps fails with a chance of at
    most about 1 %. None: "table" when V > 64. Either exists only where rates are updated locally
    (V - 1 > max_local and cells >= 4); `self.site_map` is "map", "table" or False.

    fused: do the in-place parts of a step (`_commit`, `_store`) as two Triton kernels
    (kmc_fused.py) instead of about two dozen torch kernels; the same arithmetic (local updates only:
    the build's store of all V vacancies stays in torch). None: on CUDA."""

    BLOCK = 32  # vacancies per block of the two-level choice (fewer when V is smaller)
    TABLE_SLOTS = 8  # vacancies per bin of the hashed vacancy table (site_map="table")

    def __init__(self, cells: int, replicas: int, cu_frac: float = 0.0134, vacancies: int = 1,
                 temperature: float = 573.0, seed: int = 0, device="cpu", dtype=torch.float64,
                 params: FeCuParams = DEFAULT, species0: torch.Tensor | None = None, max_local: int = 16,
                 graph_steps: int = 32, use_graph: bool = True, compile: bool = False,
                 site_map: bool | None = None, fused: bool | None = None):
        self.cells = bcc.check_cells(cells)
        self.N, self.R, self.V = bcc.n_sites(cells), int(replicas), int(vacancies)
        self.temperature, self.params, self.dtype = float(temperature), params, dtype
        self.device = torch.device(device)
        self.fused = self.device.type == "cuda" if fused is None else bool(fused)
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(seed)
        if species0 is None:
            self.species = random_species(self.cells, self.R, cu_frac, self.V, self.gen, self.device)
        else:
            self.species = torch.as_tensor(species0).to(self.device, torch.int8).clone()
            if self.species.shape != (self.R, self.N):
                raise ValueError(f"species0 has shape {tuple(self.species.shape)}, expected {(self.R, self.N)}")
        self.vac_pos = torch.empty(self.R, self.V, dtype=torch.int64, device=self.device)
        step = max(1, (1 << 26) // self.N)  # replicas per block: the (r, N) mask stays small
        for r0 in range(0, self.R, step):
            vac = (self.species[r0:r0 + step] == VAC).nonzero()  # rows sorted by replica
            if vac.shape[0] != self.vac_pos[r0:r0 + step].numel():
                raise ValueError(f"every replica needs exactly {self.V} vacancies")
            self.vac_pos[r0:r0 + step] = vac[:, 1].reshape(-1, self.V)
        self.n_cu = int((self.species[0] == CU).sum())
        self.time = torch.zeros(self.R, dtype=torch.float64, device=self.device)
        self.events = torch.zeros(self.R, dtype=torch.int64, device=self.device)
        self.max_local = int(max_local)
        self._overflow = torch.zeros(self.R, dtype=torch.bool, device=self.device)
        self._W = torch.from_numpy(params.swap_table()).to(self.device, dtype)  # (3, 14, 3)
        self._ea0 = torch.tensor(params.ea0, dtype=dtype, device=self.device)
        self._shell = torch.from_numpy(bcc.SHELL).to(self.device, torch.int32)  # (14, 3)
        # offsets of a vacancy's 14 shell sites, then of the 14 shell sites of each of its 8 targets
        both = torch.cat([torch.from_numpy(bcc.SHELL), torch.from_numpy(bcc.NN1[:, None] + bcc.SHELL[None]).reshape(-1, 3)])
        self._reach = both.to(self.device, torch.int32)  # (14 + 8*14, 3)
        infl = torch.zeros(9, 9, 9, dtype=torch.bool)  # offsets -4..4; True where a vacancy there is affected
        d = torch.from_numpy(bcc.influence_offsets()) + 4
        infl[d[:, 0], d[:, 1], d[:, 2]] = True
        self._influence = infl.to(self.device)
        self._rows = torch.arange(self.R, device=self.device)
        self._vidx = torch.arange(self.V, device=self.device).expand(self.R, self.V)
        self._rates = torch.zeros(self.R, self.V, 8, dtype=dtype, device=self.device)
        self._dE = torch.zeros_like(self._rates)
        # per-vacancy totals in nb blocks of Bk (zero padding past V) and the block sums
        self._Bk = min(self.BLOCK, self.V)
        self._nb = -(-self.V // self._Bk)
        self._vtot_pad = torch.zeros(self.R, self._nb * self._Bk, dtype=dtype, device=self.device)
        self._vtot = self._vtot_pad[:, :self.V]  # a view
        self._bsum = torch.zeros(self.R, self._nb, dtype=dtype, device=self.device)
        self._local = not (self.V - 1 <= self.max_local or self.cells <= 3)
        mode = ("table" if self.V > 64 else False) if site_map is None else site_map
        if mode is True:
            mode = "map"
        if mode not in (False, "map", "table"):
            raise ValueError(f"site_map must be None, False, True, 'map' or 'table', not {site_map!r}")
        self.site_map = mode if self._local else False
        self._vmap = self._vtab = None
        self._nt = 1  # vacancy-table bins (table mode sets a power of 2 >= 8 V)
        mdt = torch.int16 if self.V < 32768 else torch.int32
        if self.site_map == "map":
            self._vmap = torch.full((self.R, self.N), -1, dtype=mdt, device=self.device)
            self._vmap.scatter_(1, self.vac_pos, self._vidx.to(mdt))
        elif self.site_map == "table":
            self._nt = 1 << max(0, 8 * self.V - 1).bit_length()  # bins: a power of 2 >= 8 V
            self._vtab = self._table_of(self.vac_pos, mdt)
        if self.site_map:
            # offsets from the vacancy's old site of all sites whose vacancy a jump along NN1[a]
            # can affect: influence set of the old site united with that of the new site (0 included)
            infl = {tuple(o) for o in bcc.influence_offsets()}
            near = [sorted(infl | {tuple(int(x) for x in n + o) for o in infl}) for n in bcc.NN1]
            self._near = torch.tensor(near, dtype=torch.int32, device=self.device)  # (8, 78, 3)
        # rates of all V vacancies, in replica chunks so that the (r, V, 126) site temporaries stay small
        g, dE = torch.empty_like(self._rates), torch.empty_like(self._dE)  # every replica chunk below fills them
        step = max(1, (1 << 22) // (self.V * self._reach.shape[0]))
        for r0 in range(0, self.R, step):
            r1 = min(self.R, r0 + step)
            g[r0:r1], dE[r0:r1] = self._rates_of(self.vac_pos[r0:r1], self.species[r0:r1])
        self._store(self._vidx, g, dE, self._overflow)
        del g, dE
        # on a GPU, larger site chunks (fewer launches at many replicas; temporaries ~ 2^26 entries)
        self.energy = energy_from_scratch(self.species, self.cells, params,
                                          block=1 << (26 if self.device.type == "cuda" else 22))
        self.graph_steps, self.use_graph = int(graph_steps), bool(use_graph)
        self._graph = None
        # torch.compile fuses the pure parts of a step (many small elementwise kernels; CUDA, compile
        # time up to ~1 min per box shape)
        pure = (self._choose_classical, self._decide, self._update)
        self._pure = tuple(torch.compile(f, dynamic=False) for f in pure) if compile else pure

    # -- neighbours ----------------------------------------------------------------------------
    def _shell_sites(self, sites: torch.Tensor, offsets: torch.Tensor | None = None) -> torch.Tensor:
        """(...,) site indices -> (..., K) int64 sites at offsets (K, 3) (default the 14 of bcc.SHELL), or
        at per-site offsets (..., K, 3). Coordinates in int32 (faster than int64 on CPU and GPU),
        wrapped by one conditional add (offsets within +-4 half units)."""
        o = self._shell if offsets is None else offsets
        m, L = 2 * self.cells, self.cells
        out = None
        for d, Xd in enumerate(bcc.coords(sites.to(torch.int32), L)):
            X = Xd[..., None] + o[..., d]  # (..., K), in [-4, m + 3]
            X = torch.where(X < 0, X + m, X)
            X = torch.where(X >= m, X - m, X)
            out = (X >> 1) if out is None else out * L + (X >> 1)
        return (out * 2 + (X & 1)).long()

    def _target(self, vs: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """(R,) site of jump a from site vs."""
        return self._shell_sites(vs, self._shell[:8]).gather(1, a[:, None]).squeeze(1)

    def _gather(self, sites: torch.Tensor, species: torch.Tensor | None = None) -> torch.Tensor:
        """species at (R, ...) sites, as int64 (of the rows `species`, default all of self.species)."""
        R = sites.shape[0]
        sp = self.species if species is None else species
        return sp.gather(1, sites.reshape(R, -1)).reshape(sites.shape).long()

    def _table_of(self, vac_pos: torch.Tensor, dtype) -> torch.Tensor:
        """(R, NT * TABLE_SLOTS) hashed vacancy table of positions vac_pos (R, V): vacancy v in the
        first free slot of bin vac_pos[v] mod NT, in order of v. Raises if a bin overflows."""
        R, S = vac_pos.shape[0], self.TABLE_SLOTS
        h = vac_pos & (self._nt - 1)
        hs, order = h.sort(dim=1, stable=True)
        idx = torch.arange(self.V, device=vac_pos.device).expand(R, -1)
        start = torch.ones_like(hs, dtype=torch.bool)
        start[:, 1:] = hs[:, 1:] != hs[:, :-1]
        rank = idx - torch.where(start, idx, torch.zeros_like(idx)).cummax(1).values  # place within its bin
        if bool((rank >= S).any()):
            raise ValueError(f"more than {S} vacancies in one bin of the vacancy table")
        tab = torch.full((R, self._nt * S), -1, dtype=dtype, device=vac_pos.device)
        return tab.scatter_(1, hs * S + rank, order.to(dtype))

    def neighbour_species(self) -> torch.Tensor:
        """(R, V, 14) int64: species on each vacancy's 1NN shell (entries 0..7, bcc.NN1 order, the same
        order as the 8 jumps of `rates`) and 2NN shell (entries 8..13, bcc.NN2 order)."""
        return self._gather(self._shell_sites(self.vac_pos))

    def target_neighbour_species(self) -> torch.Tensor:
        """(R, V, 8, 14) int64: for each jump a of each vacancy, the species on the 1NN and 2NN shells
        of the jump's target site (bcc.SHELL order; entry 7 - a of jump a is the vacancy itself)."""
        return self._gather(self._shell_sites(self._shell_sites(self.vac_pos)[..., :8]))

    # -- rates ---------------------------------------------------------------------------------
    def _rates_of(self, sites: torch.Tensor, species: torch.Tensor | None = None):
        """Rates and dE (R, M, 8) of vacancies at sites (R, M) (in the rows `species`, default all)."""
        sp = self._gather(self._shell_sites(sites, self._reach), species)  # (R, M, 14 + 8*14)
        s_v, s_t = sp[..., :bcc.K], sp[..., bcc.K:].unflatten(-1, (8, bcc.K))  # (R, M, 14), (R, M, 8, 14)
        dE = jump_dE(s_v, s_t, self._W)
        return jump_rates(s_v[..., :8], dE, self.temperature, self.params, self._ea0), dE

    def rates(self) -> torch.Tensor:
        """(R, V, 8) current jump rates, 1/s (0 for a jump onto another vacancy)."""
        return self._rates

    def jump_dE(self) -> torch.Tensor:
        """(R, V, 8) energy change of each candidate jump, eV."""
        return self._dE

    def total_rate(self) -> torch.Tensor:
        """(R,) escape rate sum Gamma."""
        return self._bsum.sum(1)

    # -- one event -----------------------------------------------------------------------------
    @staticmethod
    def _pick(w: torch.Tensor, r: torch.Tensor, rest: bool = True):
        """Inverse CDF over the last axis of nonnegative weights w (R, n) at r (R, 1): the index j (R, 1)
        with cdf[j-1] <= r < cdf[j], and r - cdf[j-1]. Never a zero-weight entry (round-off guards): r
        is clamped at 0 (a round-off negative remainder would pick a leading zero), and j is at most
        the first index where cdf reaches its total, the last entry with positive weight (a round-off
        r >= cdf[-1] would pick a trailing zero)."""
        cdf = w.cumsum(1)
        r = r.clamp(min=0)
        j = torch.minimum(torch.searchsorted(cdf, r, right=True), (cdf < cdf[:, -1:]).sum(1, keepdim=True))
        return j, (r - cdf.gather(1, j) + w.gather(1, j) if rest else None)

    def _choose_classical(self, u: torch.Tensor):
        """Inverse-CDF choice in three levels: block of vacancies by its rate sum, vacancy in the block
        by its total rate, then its jump. u: (R,). Returns v, a (R,) and the total rate (R,)."""
        bs, Bk = self._bsum, self._Bk
        total = bs.sum(1)
        r = (u * total)[:, None]
        if self._nb == 1:  # V <= BLOCK: one block
            v, r2 = self._pick(self._vtot_pad, r)
        else:
            b, r1 = self._pick(bs, r)  # (R, 1)
            w = self._vtot_pad.view(self.R, self._nb, Bk).gather(1, b[..., None].expand(-1, 1, Bk)).squeeze(1)
            j, r2 = self._pick(w, r1)
            v = b * Bk + j  # (R, 1); a padded entry has zero weight, so v < V
        g = self._rates.gather(1, v[..., None].expand(-1, -1, 8)).squeeze(1)  # (R, 8)
        a, _ = self._pick(g, r2, rest=False)
        return v.squeeze(1), a.squeeze(1), total

    def _choose_policy(self, u: torch.Tensor, logits: torch.Tensor):
        """P(v,a) = softmax(logits)_va Gamma_va / sum_b softmax(logits)_b Gamma_b; returns log w too."""
        g = self._rates.reshape(self.R, -1)  # (R, V*8)
        total = g.sum(1)
        logp = torch.log_softmax(logits.reshape(self.R, -1).to(g.dtype), 1) + torch.log(g)
        logp = logp - torch.logsumexp(logp, 1, keepdim=True)
        p = logp.exp()
        idx = torch.searchsorted(p.cumsum(1), u[:, None].to(p.dtype).contiguous(), right=True).clamp_(max=p.shape[1] - 1)
        last = p.shape[1] - 1 - (p.flip(1) > 0).to(torch.int8).argmax(1, keepdim=True)
        idx = torch.where(p.gather(1, idx) > 0, idx, last)
        log_w = torch.log(g.gather(1, idx).squeeze(1) / total) - logp.gather(1, idx).squeeze(1)
        idx = idx.squeeze(1)
        return idx // 8, idx % 8, total, log_w

    # A step is split into pure functions (read the state, return small tensors; these are what
    # torch.compile fuses) and in-place commits (eager), so that compiling never copies the (R, N)
    # species array to "functionalize" a mutation.
    def _decide(self, v, a, total, u_dt, t_stop):
        """Pure: the event's sites, atom, dE, whether it happens (t_stop None: always) and new clocks."""
        dt = -torch.log1p(-u_dt) / total  # u_dt in [0, 1): -ln(1 - u) is Exp(1)
        vs = self.vac_pos.gather(1, v[:, None]).squeeze(1)  # (R,)
        ts = self._target(vs, a)  # (R,)
        X = self.species.gather(1, ts[:, None]).squeeze(1)  # int8
        dE = self._dE.gather(1, v[:, None, None].expand(-1, 1, 8)).squeeze(1).gather(1, a[:, None]).squeeze(1)
        if t_stop is None:
            active = torch.ones_like(vs, dtype=torch.bool)
            new_time = self.time + dt
        else:  # an event past t_stop does not happen; the clock stops at t_stop (Exp is memoryless)
            active = self.time + dt <= t_stop
            new_time = torch.where(active, self.time + dt, torch.maximum(self.time, t_stop))
        return dt, vs, ts, X, dE.to(torch.float64), active, new_time

    def _commit(self, v, vs, ts, X, dE, active, new_time) -> None:
        """In place: swap vacancy and atom where active, move the vacancy, advance clocks and energy."""
        if self.fused:
            return kmc_fused.commit(self, v, vs, ts, X, dE, active, new_time)
        rows, zero = self._rows, torch.zeros_like(X)
        self.species[rows, vs] = torch.where(active, X, zero)
        self.species[rows, ts] = torch.where(active, zero, X)
        self.vac_pos[rows, v] = torch.where(active, ts, vs)
        if self._vmap is not None:
            vm = v.to(self._vmap.dtype)
            old = self._vmap[rows, ts]  # -1: the target holds an atom
            self._vmap[rows, vs] = torch.where(active, torch.full_like(vm, -1), vm)
            self._vmap[rows, ts] = torch.where(active, vm, old)
        if self._vtab is not None:  # v leaves its slot in bin(vs) and takes the first free one in bin(ts)
            S, vm = self.TABLE_SLOTS, v.to(self._vtab.dtype)
            k = torch.arange(S, device=self.device)
            hv, ht = vs & (self._nt - 1), ts & (self._nt - 1)
            moved = active & (hv != ht)
            mine = self._vtab.gather(1, hv[:, None] * S + k) == vm[:, None]  # (R, S); none once overflowed
            at = hv * S + mine.to(torch.int8).argmax(1)
            self._vtab[rows, at] = torch.where(moved & mine.any(1), torch.full_like(vm, -1), self._vtab[rows, at])
            row = self._vtab.gather(1, ht[:, None] * S + k)
            free = row < 0
            at = ht * S + free.to(torch.int8).argmax(1)
            full = ~free.any(1)
            self._vtab[rows, at] = torch.where(moved & ~full, vm, self._vtab[rows, at])
            self._overflow |= moved & full
        self.time.copy_(new_time)
        self.energy += torch.where(active, dE, torch.zeros_like(dE))
        self.events += active

    def _affected(self, v, a, vs, ts):
        """Pure: (R, M) vacancies whose rates may have changed (v first) and an (R,) overflow flag."""
        if not self._local:  # tiny box or few vacancies (images alias in a tiny box): recompute all
            return self._vidx, torch.zeros_like(self._overflow)
        K = self.max_local
        if self._vmap is not None:
            # vacancies on the 78 sites around the old and new site (distinct sites for cells >= 4)
            cand = self._vmap.gather(1, self._shell_sites(vs, self._near[a])).long()  # (R, 78)
            near = (cand >= 0) & (cand != v[:, None])
        elif self._vtab is not None:
            # the same 78 sites; a vacancy there other than v (now at vac_pos[v]) is looked up after
            # compaction, in its table bin: the slot whose vacancy sits at that site
            sites = self._shell_sites(vs, self._near[a])  # (R, 78)
            here = self.vac_pos.gather(1, v[:, None])  # (R, 1)
            near = (self._gather(sites) == VAC) & (sites != here)
            fs, overflow = self._compact(near, sites, sites.new_full((1, 1), -1))  # (R, K) sites, -1 free
            S = self.TABLE_SLOTS
            bins = (fs & (self._nt - 1))[..., None] * S + torch.arange(S, device=self.device)  # (R, K, S)
            ids = self._vtab.gather(1, bins.reshape(self.R, -1)).long()  # (R, K * S)
            pos = self.vac_pos.gather(1, ids.clamp(min=0)).view(self.R, K, S)
            ids = ids.view(self.R, K, S)
            hit = (ids >= 0) & (pos == fs[..., None]) & (fs[..., None] >= 0)
            found = torch.where(hit, ids, -1).amax(-1)  # (R, K); -1: a free slot
            return torch.cat([v[:, None], torch.where(found >= 0, found, v[:, None])], 1), overflow
        else:
            # scan all V vacancy positions (int32 coordinates)
            m = 2 * self.cells
            P = torch.stack(bcc.coords(self.vac_pos.to(torch.int32), self.cells), -1)  # (R, V, 3)
            near = torch.zeros(self.R, self.V, dtype=torch.bool, device=self.device)
            for s in (vs, ts):
                c = torch.stack(bcc.coords(s.to(torch.int32), self.cells), -1)[:, None, :]  # (R, 1, 3)
                d = (P - c + self.cells) % m - self.cells  # periodic minimum image, half units
                d = d.clamp(-4, 4) + 4  # outside +-3 maps to the table's False border
                near = near | self._influence[d[..., 0], d[..., 1], d[..., 2]]
            near = near & (self._vidx != v[:, None])
            cand = self._vidx
        # free slots keep v, whose recompute is repeated harmlessly
        buf, overflow = self._compact(near, cand, v[:, None])
        return torch.cat([v[:, None], buf], 1), overflow

    def _compact(self, near, values, fill):
        """Pure: the values (R, N) where near (R, N) is set, in order, packed into max_local slots
        (a scan, no sort) -> (R, max_local), the free slots holding fill ((R, 1) or (1, 1)); and an
        (R,) flag where more than max_local were set. Slot max_local collects the excess and is dropped."""
        K = self.max_local
        count = near.cumsum(1, dtype=torch.int32)
        slot = torch.where(near, count - 1, K).clamp_(max=K).long()
        buf = fill.expand(self.R, K + 1).scatter(1, slot, values)
        return buf[:, :K], count[:, -1] > K

    def _update(self, v, a, vs, ts):
        """Pure: affected vacancies (R, M), their new rates and dE (R, M, 8), overflow (R,)."""
        vidx, overflow = self._affected(v, a, vs, ts)
        g, dE = self._rates_of(self.vac_pos.gather(1, vidx))
        return vidx, g, dE, overflow

    def _store(self, vidx, g, dE, overflow) -> None:
        """In place: rates and dE (R, M, 8) of vacancies vidx (R, M) (duplicates carry equal values);
        the block sums of the blocks holding them are recomputed from the vacancy totals."""
        if self.fused and vidx.shape[1] <= kmc_fused.MAX_M:  # a local update (the build stores all V)
            return kmc_fused.store(self, vidx, g, dE, overflow)
        i8 = vidx[..., None].expand(-1, -1, 8)
        self._rates.scatter_(1, i8, g)
        self._dE.scatter_(1, i8, dE)
        self._vtot_pad.scatter_(1, vidx, g.sum(-1))
        R, nb, Bk = self.R, self._nb, self._Bk
        blocks = self._vtot_pad.view(R, nb, Bk)
        if vidx.shape[1] >= nb:  # as cheap to redo every block
            self._bsum.copy_(blocks.sum(-1))
        else:
            bi = vidx // Bk  # (R, M); duplicates get equal sums
            self._bsum.scatter_(1, bi, blocks.gather(1, bi[..., None].expand(-1, -1, Bk)).sum(-1))
        self._overflow |= overflow

    def _apply(self, v, a, total, u_dt, t_stop=None):
        """Advance clocks, swap vacancy v with its neighbour a (where active), update rates locally."""
        dt, vs, ts, X, dE, active, new_time = self._decide(v, a, total, u_dt, t_stop)
        self._commit(v, vs, ts, X, dE, active, new_time)
        self._store(*self._update(v, a, vs, ts))
        return dt, dE, active

    def step(self, logits: torch.Tensor | None = None) -> dict:
        """One event in every replica. logits None: P(v,a) = Gamma_va / sum Gamma (BKL). logits (R, V, 8):
        P(v,a) = softmax(logits)_va Gamma_va / sum_b softmax(logits)_b Gamma_b (policy x rate).
        The clock always advances by dt = -ln(u) / sum Gamma, the residence time of the true process.
        Returns tensors (R,): v, a (the jump), dt, dE (eV), log_w = log((Gamma_a / sum Gamma) / P(a))
        (0 without logits), total (sum Gamma before the event). No host sync."""
        u = torch.rand(self.R, 2, generator=self.gen, device=self.device, dtype=torch.float64)
        if logits is None:
            v, a, total = self._choose_classical(u[:, 0].to(self.dtype))
            log_w = torch.zeros(self.R, dtype=torch.float64, device=self.device)
        else:
            v, a, total, log_w = self._choose_policy(u[:, 0], logits)
        dt, dE, _ = self._apply(v, a, total.to(torch.float64), u[:, 1])
        return {"v": v, "a": a, "dt": dt, "dE": dE, "log_w": log_w.to(torch.float64), "total": total}

    # -- many events ---------------------------------------------------------------------------
    def _one_step(self, u: torch.Tensor, t_stop: torch.Tensor) -> None:
        """One classical step of every replica, an event past t_stop suppressed. u: (R, 2) uniforms."""
        choose, decide, update = self._pure
        v, a, total = choose(u[:, 0].to(self.dtype))
        dt, vs, ts, X, dE, active, new_time = decide(v, a, total.to(torch.float64), u[:, 1], t_stop)
        self._commit(v, vs, ts, X, dE, active, new_time)
        self._store(*update(v, a, vs, ts))

    def _steps_until(self, u: torch.Tensor, t_stop: torch.Tensor) -> None:
        """len(u) classical steps. u: (S, R, 2) uniforms."""
        for k in range(u.shape[0]):
            self._one_step(u[k], t_stop)

    def _chunk(self, t_stop: float) -> None:
        S = self.graph_steps
        if self.device.type != "cuda" or not self.use_graph:
            u = torch.rand(S, self.R, 2, generator=self.gen, device=self.device, dtype=torch.float64)
            self._steps_until(u, torch.full_like(self.time, t_stop))
            return
        if self._graph is None:
            self._u = torch.zeros(S, self.R, 2, dtype=torch.float64, device=self.device)
            # t_stop = -1 s: every event is suppressed, so warm-up changes nothing (rates are recomputed
            # to the values they have); capture itself runs nothing
            self._t_stop = torch.full_like(self.time, -1.0)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # warm-up on a side stream, as torch.cuda.graphs asks
                self._steps_until(self._u[:2], self._t_stop)
            torch.cuda.current_stream().wait_stream(side)
            self._graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self._graph):
                self._steps_until(self._u, self._t_stop)
        self._u.uniform_(generator=self.gen)
        self._t_stop.fill_(t_stop)
        self._graph.replay()

    def advance(self, until_time: float, max_wall_s: float | None = None) -> bool:
        """Run every replica to physical time until_time (s): the state afterwards is each replica's
        state at that time. Syncs with the host once per `graph_steps` steps. With max_wall_s, stops
        after that many wall seconds; returns whether every replica reached until_time."""
        t0 = time.perf_counter()
        while True:
            self._chunk(until_time)
            if bool((self.time >= until_time).all()):
                self.check()
                return True
            if max_wall_s is not None and time.perf_counter() - t0 > max_wall_s:
                self.check()
                return False

    def close(self) -> None:
        """Drop the CUDA graph and compiled functions (they hold references to this simulator's
        tensors); call torch._dynamo.reset() too to free compiled code caches."""
        self._graph = None
        self._pure = (self._choose_classical, self._decide, self._update)

    def check(self) -> None:
        """Raise if a local update ever missed a vacancy (more than max_local near the changed sites) or
        the vacancy table overflowed."""
        if bool(self._overflow.any()):
            table = (f"; or, with the vacancy table (site_map='table' here), a vacancy jumped into a full bin: "
                     f"raise TorchKMC.TABLE_SLOTS (now {self.TABLE_SLOTS})") if self._vtab is not None else ""
            raise RuntimeError(f"a local rate update missed a vacancy: more than max_local={self.max_local} "
                               f"vacancies were near one event (raise max_local){table}")

    def observe(self) -> pd.DataFrame:
        """Per-replica observables now: time, events, energy, Cu clusters (observables.cluster_stats_torch)."""
        st = cluster_stats_torch(self.species, self.cells)
        cols = {"replica": self._rows, "time": self.time, "events": self.events, "energy": self.energy, **st}
        return pd.DataFrame({k: v.detach().cpu().numpy() for k, v in cols.items()})

    def run(self, steps: int | None = None, until_time: float | None = None, record_every=None) -> pd.DataFrame:
        """Observables of every replica vs time, one row per (record, replica).

        until_time given: record_every is a physical time interval (s; default until_time / 10); rows at
        t = record_every, 2 record_every, ..., until_time, each the exact state of every replica at t.
        steps given: record_every is a number of steps (default steps // 10); rows after every
        record_every events of each replica (replicas then sit at different physical times).
        The first rows (record 0) are the state before the run."""
        frames = [self.observe().assign(record=0)]
        if (steps is None) == (until_time is None):
            raise ValueError("give exactly one of steps and until_time")
        if until_time is not None:
            dt_rec = float(record_every or until_time / 10)
            n = max(1, math.ceil(until_time / dt_rec - 1e-9))
            for k in range(1, n + 1):
                self.advance(min(until_time, k * dt_rec))
                frames.append(self.observe().assign(record=k))
        else:
            every = int(record_every or max(1, steps // 10))
            for k in range(1, steps // every + 1):
                for _ in range(every):
                    self.step()
                self.check()
                frames.append(self.observe().assign(record=k))
        return pd.concat(frames, ignore_index=True)
