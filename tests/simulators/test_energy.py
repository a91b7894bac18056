"""The energy change of a jump equals the change of the total energy recomputed from scratch."""

import numpy as np
import pytest
import torch

from msrbook.simulators import bcc
from msrbook.simulators.energy import DEFAULT, KB_EV, energy_from_scratch, jump_dE, jump_rates


def random_config(cells, n_vac, cu, rng):
    N = bcc.n_sites(cells)
    sp = rng.choice([1, 2], size=N, p=[1 - cu, cu]).astype(np.int64)
    sp[rng.choice(N, n_vac, replace=False)] = 0
    return torch.from_numpy(sp)


@pytest.mark.parametrize("cells,n_vac", [(2, 1), (2, 3), (3, 4), (4, 6)])
def test_jump_dE_matches_total_energy(cells, n_vac):
    rng = np.random.default_rng(cells * 10 + n_vac)
    sp = random_config(cells, n_vac, 0.3, rng)
    nbr = torch.from_numpy(bcc.neighbour_table(cells))
    W = torch.from_numpy(DEFAULT.swap_table())
    e0 = energy_from_scratch(sp, cells)[0]
    for v in torch.nonzero(sp == 0).flatten().tolist():
        s_v = sp[nbr[v]]  # (14,)
        s_t = sp[nbr[nbr[v, :8]]]  # (8, 14)
        dE = jump_dE(s_v, s_t, W)
        for a in range(8):
            t = int(nbr[v, a])
            if sp[t] == 0:
                continue
            new = sp.clone()
            new[v], new[t] = sp[t], 0
            # float64 sums of ~N*14 terms of size ~0.6 eV: round-off well below 1e-9 eV
            assert abs(float(energy_from_scratch(new, cells)[0] - e0) - float(dE[a])) < 1e-9


def test_rate_law_and_vacancy_swaps():
    X = torch.tensor([1, 2, 0])
    dE = torch.tensor([0.1, -0.2, 0.0], dtype=torch.float64)
    g = jump_rates(X, dE, 573.0)
    kT = KB_EV * 573.0
    assert g[2] == 0  # a vacancy never swaps with a vacancy
    np.testing.assert_allclose(g[0], 6e12 * np.exp(-(0.65 + 0.05) / kT), rtol=1e-12)
    np.testing.assert_allclose(g[1], 6e12 * np.exp(-(0.56 - 0.10) / kT), rtol=1e-12)


def test_energy_of_pure_iron():
    """Pure Fe: 4 1NN and 3 2NN bonds per site."""
    cells = 3
    e = energy_from_scratch(torch.ones(bcc.n_sites(cells), dtype=torch.int8), cells)[0]
    np.testing.assert_allclose(float(e), bcc.n_sites(cells) * (4 + 3) * -0.611, rtol=1e-12)
