"""Bookkeeping of both simulators: tracked energy and locally updated rates equal values recomputed
from scratch after many jumps; the policy-reweighted step samples what it says and logs the right weight."""

import numpy as np
import pytest
import torch

from msrbook.simulators import bcc
from msrbook.simulators.energy import energy_from_scratch
from msrbook.simulators.kmc_serial import SerialKMC, _refresh
from msrbook.simulators.kmc_torch import TorchKMC
from msrbook.simulators.observables import chi2_sf

# Energies are sums of ~N*14 float64 terms of size ~0.6 eV, tracked over ~10^3 increments: round-off
# stays far below 1e-8 eV. Rates are recomputed by the same formula: relative round-off ~1e-15.
E_TOL, RATE_RTOL = 1e-8, 1e-12


@pytest.mark.parametrize("cells,V,max_local", [(4, 1, 16), (8, 8, 4), (3, 5, 16)])
def test_torch_bookkeeping(cells, V, max_local):
    kmc = TorchKMC(cells, 3, cu_frac=0.1, vacancies=V, temperature=573.0, seed=cells, max_local=max_local)
    comp0 = torch.stack([(kmc.species == s).sum(1) for s in range(3)])
    for _ in range(400):
        kmc.step()
    kmc.check()
    assert torch.equal(torch.stack([(kmc.species == s).sum(1) for s in range(3)]), comp0)
    assert torch.equal(kmc.vac_pos.sort(1).values, (kmc.species == 0).nonzero()[:, 1].reshape(3, V))
    assert (kmc.energy - energy_from_scratch(kmc.species, cells)).abs().max() < E_TOL
    g, dE = kmc._rates_of(kmc.vac_pos)
    torch.testing.assert_close(kmc.rates(), g, rtol=RATE_RTOL, atol=0)
    assert (kmc.events == 400).all()


def test_torch_local_update_overflow_is_reported():
    """Fewer recomputed neighbours than needed must raise, not silently keep stale rates."""
    kmc = TorchKMC(4, 2, cu_frac=0.0, vacancies=40, seed=0, max_local=1)
    for _ in range(50):
        kmc.step()
    with pytest.raises(RuntimeError, match="max_local"):
        kmc.check()


@pytest.mark.parametrize("cells,V", [(4, 1), (6, 8), (2, 2)])
def test_serial_bookkeeping(cells, V):
    src = TorchKMC(cells, 1, cu_frac=0.1, vacancies=V, seed=1)
    kmc = SerialKMC(src.species[0].numpy(), cells, 573.0, seed=2)
    # the serial rates of the initial state are the torch simulator's
    order = np.argsort(kmc.vac_pos)
    np.testing.assert_allclose(kmc.rates[order], src.rates()[0][src.vac_pos[0].argsort()].numpy(), rtol=RATE_RTOL)
    assert kmc.advance(1.0, 600) == 600
    assert abs(kmc.energy - float(energy_from_scratch(kmc.species, cells)[0])) < E_TOL
    assert set(kmc.vac_pos.tolist()) == set(np.flatnonzero(kmc.species == 0).tolist())
    assert (kmc.vac_at[kmc.vac_pos] == np.arange(V)).all()
    stale = kmc.rates.copy()
    shell, _, W, ea0, nu, b = kmc._args
    for w in range(V):
        _refresh(w, kmc.species, cells, kmc.vac_pos, kmc.rates, kmc.dE, kmc.tree, kmc.P, shell, W, ea0, nu, b)
    np.testing.assert_allclose(stale, kmc.rates, rtol=RATE_RTOL)


def test_advance_stops_exactly():
    kmc = TorchKMC(4, 5, vacancies=2, seed=0)
    kmc.advance(3e-8)
    assert torch.equal(kmc.time, torch.full_like(kmc.time, 3e-8))
    assert (kmc.events > 0).all()
    s = SerialKMC(kmc.species[0].numpy(), 4, seed=0)
    n = s.advance(3e-8)
    assert s.time == 3e-8 and n == s.events > 0


def replicated(R, seed=0):
    one = TorchKMC(4, 1, cu_frac=0.15, vacancies=2, seed=seed)
    return TorchKMC(4, R, vacancies=2, seed=seed + 1, species0=one.species.expand(R, -1))


def test_uniform_policy_is_plain_kmc():
    kmc = replicated(64)
    out = kmc.step(torch.zeros(64, 2, 8, dtype=torch.float64))
    assert out["log_w"].abs().max() < 1e-12  # log(1) up to round-off


def test_policy_step_samples_policy_times_rate():
    R, alpha = 20000, 1e-3
    kmc = replicated(R)
    g = kmc.rates()[0].reshape(-1).clone()  # (16,) identical in every replica (the step updates rates in place)
    logits = torch.linspace(-2, 2, 16, dtype=torch.float64)
    p = torch.softmax(logits, 0) * g
    p = p / p.sum()
    out = kmc.step(logits.reshape(1, 2, 8).expand(R, -1, -1))
    idx = out["v"] * 8 + out["a"]
    counts = torch.bincount(idx, minlength=16).double()
    ok = p > 0
    assert counts[~ok].sum() == 0  # a zero-rate jump is never chosen
    chi2 = float(((counts[ok] - R * p[ok]) ** 2 / (R * p[ok])).sum())
    assert chi2_sf(chi2, int(ok.sum()) - 1) > alpha, chi2
    # log w = log((Gamma_a / sum Gamma) / P(a)) exactly, and E_P[w 1{a}] = Gamma_a / sum Gamma
    expect = torch.log(g[idx] / g.sum()) - torch.log(p[idx])
    torch.testing.assert_close(out["log_w"], expect, rtol=1e-10, atol=1e-12)
    w = out["log_w"].exp()
    est = torch.zeros(16, dtype=torch.float64).index_add_(0, idx, w) / R
    se = torch.sqrt(torch.zeros(16, dtype=torch.float64).index_add_(0, idx, w * w) / R - est ** 2) / R ** 0.5
    z = (est - g / g.sum()).abs() / se.clamp(min=1e-12)
    assert z[ok].max() < 4.0  # 16 two-sided tests at 4 sigma: family-wise false alarm < 1e-3


def test_neighbour_species_follow_the_bcc_tables():
    cells = 4
    kmc = TorchKMC(cells, 3, cu_frac=0.2, vacancies=3, seed=4)
    nbr = torch.from_numpy(bcc.neighbour_table(cells))
    sp = kmc.species.long()
    rows = torch.arange(3)[:, None, None]
    expect = sp[rows, nbr[kmc.vac_pos]]  # (R, V, 14)
    assert torch.equal(kmc.neighbour_species(), expect)
    targets = nbr[kmc.vac_pos][..., :8]  # (R, V, 8)
    assert torch.equal(kmc.target_neighbour_species(), sp[rows[..., None], nbr[targets]])
    # entry 7 - a of jump a's target shell is the vacancy itself
    a = torch.arange(8)
    assert (kmc.target_neighbour_species()[:, :, a, 7 - a] == 0).all()


def test_run_records_and_wall_budget():
    kmc = TorchKMC(4, 4, vacancies=1, seed=0)
    df = kmc.run(steps=20, record_every=5)
    assert sorted(df["record"].unique()) == [0, 1, 2, 3, 4] and len(df) == 5 * 4
    assert (df.groupby("record")["events"].first().diff().dropna() == 5).all()
    kmc2 = TorchKMC(4, 2, vacancies=1, seed=0, graph_steps=1)
    assert kmc2.advance(1.0, max_wall_s=0.0) is False  # one chunk, then the budget stops it
    assert (kmc2.time < 1.0).all()
