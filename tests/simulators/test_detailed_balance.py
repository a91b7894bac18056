"""Detailed balance: in a box small enough to enumerate (2x2x2 cells = 16 sites, 1 vacancy, 2 Cu), the
configurations of many independent replicas after a long run follow the Boltzmann distribution
exp(-E/kT), for the torch simulator and the serial reference.

States are grouped by energy level; each level's probability is g(E) exp(-E/kT) / Z with g(E) its
number of configurations (1680 in all). A chi-square test at significance ALPHA (seeded, so the
outcome is fixed) must not reject; the same counts tested against the uniform distribution g(E)/sum g
(no Boltzmann factor) must reject, which shows the test can tell them apart.
"""

import itertools

import numpy as np
import pytest
import torch

from msrbook.simulators import bcc
from msrbook.simulators.energy import KB_EV, energy_from_scratch
from msrbook.simulators.kmc_serial import SerialKMC
from msrbook.simulators.kmc_torch import TorchKMC
from msrbook.simulators.observables import chi2_sf

CELLS, T, ALPHA = 2, 1200.0, 1e-3  # a high T mixes fast
T_RUN = 1.5e-9  # s: ~150 events per replica


def levels():
    """Energy levels (rounded to 1e-6 eV) and their degeneracies over all 16 * C(15, 2) states."""
    N = bcc.n_sites(CELLS)
    states = []
    for v in range(N):
        for c in itertools.combinations([s for s in range(N) if s != v], 2):
            s = np.ones(N, dtype=np.int8)
            s[v], s[list(c)] = 0, 2
            states.append(s)
    E = energy_from_scratch(torch.from_numpy(np.stack(states)), CELLS).numpy()
    lev, g = np.unique(np.round(E, 6), return_counts=True)
    return lev, g


def chi2_p(counts, expected_p):
    """Chi-square p-value; levels with expected count < 5 are pooled into one bin."""
    n = counts.sum()
    e = n * expected_p
    small = e < 5
    obs = np.append(counts[~small], counts[small].sum())
    exp = np.append(e[~small], e[small].sum())
    keep = exp > 0
    chi2 = float(((obs[keep] - exp[keep]) ** 2 / exp[keep]).sum())
    return chi2_sf(chi2, int(keep.sum()) - 1)


def check(final_E):
    lev, g = levels()
    idx = np.searchsorted(lev, np.round(final_E, 6))
    assert (lev[idx] == np.round(final_E, 6)).all()  # every final energy is a real level
    counts = np.bincount(idx, minlength=len(lev)).astype(float)
    boltz = g * np.exp(-(lev - lev.min()) / (KB_EV * T))
    assert chi2_p(counts, boltz / boltz.sum()) > ALPHA
    assert chi2_p(counts, g / g.sum()) < 1e-6  # power: the Boltzmann factor matters here


def test_torch_detailed_balance():
    kmc = TorchKMC(CELLS, 2000, cu_frac=2 / 16, vacancies=1, temperature=T, seed=11)
    kmc.advance(T_RUN)
    assert kmc.events.min() > 50  # mixed: far more events than the ~10 needed to cross the box
    check(kmc.energy.numpy())


def test_serial_detailed_balance():
    init = TorchKMC(CELLS, 1500, cu_frac=2 / 16, vacancies=1, temperature=T, seed=12).species.numpy()
    final, events = [], []
    for r, sp in enumerate(init):
        kmc = SerialKMC(sp, CELLS, T, seed=1000 + r)
        kmc.advance(T_RUN)
        final.append(kmc.energy)
        events.append(kmc.events)
    assert min(events) > 50
    check(np.array(final))
