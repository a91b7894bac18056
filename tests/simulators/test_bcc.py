"""The periodic BCC lattice: neighbour shells at the right distances, symmetric, wrapped."""

import numpy as np
import pytest
import torch

from msrbook.simulators import bcc
from msrbook.simulators.energy import DEFAULT, jump_dE
from msrbook.simulators.kmc_torch import TorchKMC


def min_image(d, cells, a=bcc.A_FE):
    L = cells * a
    return d - L * np.round(d / L)


@pytest.mark.parametrize("cells", [2, 3, 5])
def test_shell_distances(cells):
    nbr, pos = bcc.neighbour_table(cells), bcc.positions(cells)
    d = np.linalg.norm(min_image(pos[nbr] - pos[:, None, :], cells), axis=-1)  # (N, 14)
    a = bcc.A_FE
    # exact up to float64 round-off of positions of size ~cells * a
    np.testing.assert_allclose(d[:, :8], a * np.sqrt(3) / 2, rtol=1e-12)
    np.testing.assert_allclose(d[:, 8:], a, rtol=1e-12)
    if cells >= 3:  # cells = 2 aliases +x and -x second neighbours (documented in bcc.py)
        assert all(len(set(row)) == 14 for row in nbr)
    assert all(len(set(row[:8])) == 8 for row in nbr)


@pytest.mark.parametrize("cells", [2, 4])
def test_shell_symmetric(cells):
    """j is neighbour k of i exactly when i is the opposite neighbour of j."""
    nbr = bcc.neighbour_table(cells)
    opp = np.array([7 - k for k in range(8)] + [8 + ((k - 8) ^ 1) for k in range(8, 14)])
    i = np.arange(len(nbr))[:, None]
    assert (nbr[nbr, opp] == i).all()
    np.testing.assert_array_equal(bcc.SHELL[opp], -bcc.SHELL)


def test_periodic_wrap():
    cells = 3
    corner0 = bcc.index(0, 0, 0, cells)
    assert corner0 == 0
    # the (-1,-1,-1) neighbour of the origin corner is the body centre of the far cell
    far = bcc.index(2 * cells - 1, 2 * cells - 1, 2 * cells - 1, cells)
    assert bcc.neighbour_table(cells)[0, 0] == far
    assert bcc.coords(far, cells) == (5, 5, 5)
    # index and coords invert each other on every site
    s = np.arange(bcc.n_sites(cells))
    np.testing.assert_array_equal(bcc.index(*bcc.coords(s, cells), cells), s)


def test_influence_offsets_cover_every_rate_change():
    """Changing the species of one site changes only the rates of vacancies at an influence offset."""
    cells, rng = 5, np.random.default_rng(0)
    N = bcc.n_sites(cells)
    sp = torch.from_numpy(rng.choice([1, 2], size=N, p=[0.6, 0.4]).astype(np.int8))
    kmc = TorchKMC(cells, 1, vacancies=1, species0=torch.where(torch.arange(N) == 7, 0, sp)[None])
    sites = torch.arange(N)[None]  # pretend a vacancy sits at every site: rates as functions of the surroundings
    s0 = 123
    before = kmc._rates_of(sites)[1]
    kmc.species[0, s0] = 3 - kmc.species[0, s0]  # swap Fe <-> Cu at s0
    after = kmc._rates_of(sites)[1]
    changed = set(torch.nonzero((before - after).abs().amax(-1)[0] > 1e-12).flatten().tolist())
    changed.discard(s0)  # the changed site itself holds an atom or the moved vacancy, recomputed anyway
    X0 = np.array(bcc.coords(s0, cells))
    allowed = {int(bcc.index(*(X0 + d), cells)) for d in bcc.influence_offsets()}
    assert changed and changed <= allowed, sorted(changed - allowed)
    assert len(changed) > 30  # the set is not trivially small: the check has something to check
