"""Serial reference: residence-time (BKL) vacancy KMC of one Fe-Cu box, compiled with numba.

The same physics as kmc_torch (energy.py: pair energies, dE of a swap, Gamma = nu exp(-(E_a0 + dE/2)/kT))
written the way a careful serial code is written:

* per-vacancy jump rates (V, 8) and a binary sum tree over the V vacancy totals: choosing an event
  and updating a total cost O(log V);
* local updates: after a jump from site v to site t only the moved vacancy and the vacancies at an
  offset in bcc.influence_offsets() from v or t are recomputed, found through a site -> vacancy map;
* the clock advances by dt = -ln(u) / sum Gamma; `advance(t_stop)` stops at t_stop exactly (an event
  that would pass it is dropped, which is exact because the waiting time is memoryless).

numba's random state is one per process: `SerialKMC(seed=...)` reseeds it, so runs are reproducible
when instances are used one after the other.
"""

from __future__ import annotations

import time as _time

import numba as nb
import numpy as np
import pandas as pd
import torch

from . import bcc
from .energy import CU, DEFAULT, VAC, FeCuParams, beta, energy_from_scratch
from .kmc_torch import TorchKMC
from .observables import cluster_stats_torch, ensemble, zscores


@nb.njit(cache=True)
def _seed(seed):
    np.random.seed(seed)


@nb.njit(cache=True, inline="always")
def _wrap(X, m):
    # callers stay within 4 half units of the box (offsets of at most 3 from a wrapped site, m >= 4),
    # so one conditional add replaces a modulo (integer division is the slow part of a neighbour lookup)
    if X < 0:
        return X + m
    if X >= m:
        return X - m
    return X


@nb.njit(cache=True, inline="always")
def _site(X, Y, Z, L):
    m = 2 * L
    X, Y, Z = _wrap(X, m), _wrap(Y, m), _wrap(Z, m)
    return (((X >> 1) * L + (Y >> 1)) * L + (Z >> 1)) * 2 + (X & 1)


@nb.njit(cache=True, inline="always")
def _xyz(site, L):
    b = site & 1
    c = site >> 1
    return 2 * (c // (L * L)) + b, 2 * ((c // L) % L) + b, 2 * (c % L) + b


@nb.njit(cache=True)
def _vacancy_rates(species, L, site, shell, W, ea0, nu, beta_, g, dE):
    """Rates g (8,) and dE (8,) of the vacancy at `site` (energy.py's formula, written out)."""
    X0, Y0, Z0 = _xyz(site, L)
    sv = np.empty(14, np.int64)
    for k in range(14):
        sv[k] = species[_site(X0 + shell[k, 0], Y0 + shell[k, 1], Z0 + shell[k, 2], L)]
    for a in range(8):
        x = sv[a]
        if x == 0:  # a vacancy does not swap with a vacancy
            g[a] = 0.0
            dE[a] = 0.0
            continue
        X1, Y1, Z1 = X0 + shell[a, 0], Y0 + shell[a, 1], Z0 + shell[a, 2]
        e = 0.0
        for k in range(14):
            if k != a:  # bonds of v, except v-t
                e += W[x, k, sv[k]]
            if k != 7 - a:  # bonds of t, except t-v
                e -= W[x, k, species[_site(X1 + shell[k, 0], Y1 + shell[k, 1], Z1 + shell[k, 2], L)]]
        dE[a] = e
        g[a] = nu * np.exp(-(ea0[x] + 0.5 * e) * beta_)


@nb.njit(cache=True)
def _tree_set(tree, P, i, value):
    j = P + i
    tree[j] = value
    j >>= 1
    while j >= 1:
        tree[j] = tree[2 * j] + tree[2 * j + 1]
        j >>= 1


@nb.njit(cache=True)
def _tree_pick(tree, P, r):
    j = 1
    while j < P:
        if r < tree[2 * j] or tree[2 * j + 1] == 0.0:
            j = 2 * j
        else:
            r -= tree[2 * j]
            j = 2 * j + 1
    return j - P, r


@nb.njit(cache=True)
def _refresh(w, species, L, vac_pos, rates, dE, tree, P, shell, W, ea0, nu, beta_):
    _vacancy_rates(species, L, vac_pos[w], shell, W, ea0, nu, beta_, rates[w], dE[w])
    _tree_set(tree, P, w, rates[w].sum())


@nb.njit(cache=True)
def _advance(species, L, vac_pos, vac_at, rates, dE, tree, P, shell, infl, W, ea0, nu, beta_, clock,
             t_stop, max_events):
    """Events until clock[0] (time) reaches t_stop or max_events; clock = [time, energy, events]."""
    n = 0
    while n < max_events:
        total = tree[1]
        dt = -np.log(1.0 - np.random.random()) / total
        if clock[0] + dt > t_stop:
            clock[0] = t_stop
            break
        v, r = _tree_pick(tree, P, np.random.random() * total)
        a = 0
        acc = rates[v, 0]
        while (r >= acc or rates[v, a] == 0.0) and a < 7:  # last allowed jump absorbs round-off
            a += 1
            acc += rates[v, a]
        while rates[v, a] == 0.0:
            a -= 1
        vs = vac_pos[v]
        X, Y, Z = _xyz(vs, L)
        ts = _site(X + shell[a, 0], Y + shell[a, 1], Z + shell[a, 2], L)
        species[vs] = species[ts]
        species[ts] = 0
        vac_at[vs] = -1
        vac_at[ts] = v
        vac_pos[v] = ts
        clock[0] += dt
        clock[1] += dE[v, a]
        clock[2] += 1.0
        n += 1
        _refresh(v, species, L, vac_pos, rates, dE, tree, P, shell, W, ea0, nu, beta_)
        for s in (vs, ts):
            Xs, Ys, Zs = _xyz(s, L)
            for i in range(infl.shape[0]):
                w = vac_at[_site(Xs + infl[i, 0], Ys + infl[i, 1], Zs + infl[i, 2], L)]
                if w >= 0 and w != v:
                    _refresh(w, species, L, vac_pos, rates, dE, tree, P, shell, W, ea0, nu, beta_)
    return n


class SerialKMC:
    """One box (species (N,) in {0 V, 1 Fe, 2 Cu}) evolved by serial BKL; time (s), energy (eV), events."""

    def __init__(self, species, cells: int, temperature: float = 573.0, seed: int = 0,
                 params: FeCuParams = DEFAULT):
        self.cells = bcc.check_cells(cells)
        self.species = np.ascontiguousarray(np.asarray(species, dtype=np.int8)).copy()
        self.N = bcc.n_sites(cells)
        if self.species.shape != (self.N,):
            raise ValueError(f"species has shape {self.species.shape}, expected ({self.N},)")
        self.temperature, self.params = float(temperature), params
        self.vac_pos = np.flatnonzero(self.species == VAC).astype(np.int64)
        self.V = len(self.vac_pos)
        self.vac_at = np.full(self.N, -1, dtype=np.int32)
        self.vac_at[self.vac_pos] = np.arange(self.V, dtype=np.int32)
        self.P = 1 << max(0, int(np.ceil(np.log2(max(self.V, 1)))))
        self.tree = np.zeros(2 * self.P)
        self.rates = np.zeros((self.V, 8))
        self.dE = np.zeros((self.V, 8))
        self._args = (bcc.SHELL.copy(), bcc.influence_offsets(), params.swap_table(), np.array(params.ea0),
                      float(params.nu), beta(temperature))
        shell, _, W, ea0, nu, b = self._args
        for w in range(self.V):
            _refresh(w, self.species, self.cells, self.vac_pos, self.rates, self.dE, self.tree, self.P,
                     shell, W, ea0, nu, b)
        self.clock = np.array([0.0, float(energy_from_scratch(self.species, cells, params)[0]), 0.0])
        _seed(int(seed))

    time = property(lambda self: self.clock[0])
    energy = property(lambda self: self.clock[1])
    events = property(lambda self: int(self.clock[2]))

    def total_rate(self) -> float:
        return float(self.tree[1])

    def advance(self, until_time: float, max_events: int = 1 << 62) -> int:
        """Run to physical time until_time (or max_events); returns the number of events done."""
        return _advance(self.species, self.cells, self.vac_pos, self.vac_at, self.rates, self.dE, self.tree,
                        self.P, *self._args, self.clock, float(until_time), int(max_events))

    def observe(self) -> dict:
        st = cluster_stats_torch(torch.from_numpy(self.species)[None], self.cells)
        return {"time": self.time, "events": self.events, "energy": self.energy,
                **{k: v.item() for k, v in st.items()}}

    def run(self, until_time: float, record_every: float | None = None) -> pd.DataFrame:
        """Observables at t = 0, record_every, ..., until_time (the exact state at each t)."""
        dt_rec = float(record_every or until_time / 10)
        n = max(1, int(np.ceil(until_time / dt_rec - 1e-9)))
        rows = [{**self.observe(), "record": 0}]
        for k in range(1, n + 1):
            self.advance(min(until_time, k * dt_rec))
            rows.append({**self.observe(), "record": k})
        return pd.DataFrame(rows)


def run_replicas(species: np.ndarray, cells: int, until_time: float, record_every: float | None = None,
                 temperature: float = 573.0, seed: int = 0) -> tuple[pd.DataFrame, float, int]:
    """Serial runs of every configuration of species (R, N), one after the other (seeds seed + r).
    Returns (rows like TorchKMC.run, wall seconds spent inside the KMC, total events)."""
    frames, wall, events = [], 0.0, 0
    for r, sp in enumerate(np.asarray(species)):
        kmc = SerialKMC(sp, cells, temperature, seed + r)
        t0 = _time.perf_counter()
        df = kmc.run(until_time, record_every)
        wall += _time.perf_counter() - t0
        events += kmc.events
        frames.append(df.assign(replica=r))
    return pd.concat(frames, ignore_index=True), wall, events


COMPARED = ("energy", "events", "n_clusters", "cu_in_clusters")


def agreement(cells: int, replicas: int, until_time: float, records: int = 5, cu_frac: float = 0.0134,
              vacancies: int = 1, temperature: float = 573.0, seed: int = 0, device="cpu",
              torch_replicas: int | None = None, compile: bool = False) -> dict:
    """Run the tensor simulator and the serial reference from the same random initial boxes (independent
    jump streams) and compare ensemble means at `records` equally spaced physical times.

    Returns {"torch": rows, "serial": rows (per replica and record), "ens_torch", "ens_serial" (mean and
    standard error per record), "z": z-scores per record and observable (observables.zscores),
    "serial_wall_s", "serial_events"}. torch_replicas (default replicas) may be larger: the first
    `replicas` initial boxes are shared, the rest are new random ones."""
    Rt = torch_replicas or replicas
    kmc = TorchKMC(cells, Rt, cu_frac, vacancies, temperature, seed=seed, device=device,
                   compile=compile and torch.device(device).type == "cuda")
    init = kmc.species[:replicas].cpu().numpy().copy()  # .numpy() of a CPU tensor shares its memory
    rows_t = kmc.run(until_time=until_time, record_every=until_time / records)
    rows_s, wall, events = run_replicas(init, cells, until_time, until_time / records, temperature, seed + 1)
    ens_t, ens_s = ensemble(rows_t), ensemble(rows_s)
    return {"torch": rows_t, "serial": rows_s, "ens_torch": ens_t, "ens_serial": ens_s,
            "z": zscores(ens_t, ens_s, COMPARED), "serial_wall_s": wall, "serial_events": events}
