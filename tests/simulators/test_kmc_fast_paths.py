"""TorchKMC's V-independent step: the two-level (block, vacancy, jump) inverse CDF picks what a flat
inverse CDF picks, and the site -> vacancy map and the hashed vacancy table find the same vacancies
as a scan of all V, keep themselves, the rates and the block sums equal to a rebuild, and change no
trajectory."""

import pytest
import torch

from msrbook.simulators.energy import energy_from_scratch
from msrbook.simulators.kmc_torch import TorchKMC

RATE_RTOL = 1e-12  # rates are recomputed by the same formula; sums differ only by summation order


def _random_rates(R, V, gen):
    """(R, V, 8) rates over six decades with zero jumps, zero-rate vacancies, zero-rate blocks, and
    replicas whose only positive vacancy is the first or the last (guards at both ends)."""
    g = 10.0 ** (6 * torch.rand(R, V, 8, generator=gen, dtype=torch.float64) - 3)
    g[torch.rand(R, V, 8, generator=gen) < 0.3] = 0.0
    g[torch.rand(R, V, generator=gen) < 0.2] = 0.0
    g[: R // 4, : min(V - 1, 40)] = 0.0  # leading zero block(s)
    g[R // 4: R // 2, V // 2:] = 0.0  # trailing zeros
    g[-2, 1:] = 0.0
    g[-1, :-1] = 0.0
    g[-2:, :, 3] = 1.0  # keep those two replicas' single vacancies alive
    dead = g.sum((1, 2)) == 0
    g[dead, -1, 5] = 0.5
    return g


@pytest.mark.parametrize("cells,V", [(4, 20), (4, 75), (5, 200)])
def test_two_level_choice_matches_flat_inverse_cdf(cells, V):
    R = 256
    kmc = TorchKMC(cells, R, vacancies=V, seed=1, max_local=16)
    assert kmc._Bk == min(TorchKMC.BLOCK, V) and kmc._nb * kmc._Bk >= V
    gen = torch.Generator().manual_seed(V)
    g = _random_rates(R, V, gen)
    kmc._store(kmc._vidx, g, torch.zeros_like(g), torch.zeros_like(kmc._overflow))
    total = g.sum((1, 2))
    torch.testing.assert_close(kmc.total_rate(), total, rtol=RATE_RTOL, atol=0)
    assert (kmc._vtot_pad[:, V:] == 0).all()
    flat = g.reshape(R, -1)
    cdf = flat.cumsum(1)
    compared = 0
    for k in range(40):
        u = torch.rand(R, generator=gen, dtype=torch.float64)
        if k == 0:
            u[:] = 0.0  # r = 0: both must take the first positive entry
        if k == 1:
            u[:] = 1.0 - 2.0 ** -53  # r at the top: round-off guards
        v, a, tot = kmc._choose_classical(u)
        torch.testing.assert_close(tot, total, rtol=RATE_RTOL, atol=0)
        assert (v < V).all() and (g[torch.arange(R), v, a] > 0).all()  # never a zero rate or a pad
        r = (u * cdf[:, -1])[:, None]
        idx = torch.searchsorted(cdf, r, right=True).squeeze(1)
        away = ((cdf - r).abs() > 1e-9 * cdf[:, -1:]).all(1)  # no CDF boundary within round-off
        if k == 0:
            away[:] = True
        if k == 1:
            continue
        assert torch.equal((v * 8 + a)[away], idx[away])
        compared += int(away.sum())
    assert compared > 0.95 * 39 * R


def _table_bins(kmc, tab):
    """(R, NT, slots) bins of a vacancy table with each bin's entries sorted (slot order is history)."""
    return tab.view(tab.shape[0], kmc._nt, kmc.TABLE_SLOTS).sort(-1).values


@pytest.mark.parametrize("mode", ["map", "table"])
@pytest.mark.parametrize("cells,V,max_local", [(8, 40, 24), (10, 100, 24)])
def test_site_map_bookkeeping_matches_rebuild(cells, V, max_local, mode):
    kmc = TorchKMC(cells, 4, cu_frac=0.1, vacancies=V, seed=3, max_local=max_local, site_map=mode)
    assert kmc.site_map == mode and kmc._local  # the local-update path with the map or table
    for _ in range(300):
        kmc.step()
    kmc.advance(float(kmc.time.max()) * 1.5)  # graph-chunk path; events past t_stop are suppressed
    kmc.check()
    g, dE = kmc._rates_of(kmc.vac_pos)
    torch.testing.assert_close(kmc.rates(), g, rtol=RATE_RTOL, atol=0)
    torch.testing.assert_close(kmc.jump_dE(), dE, rtol=RATE_RTOL, atol=1e-12)
    torch.testing.assert_close(kmc._vtot, g.sum(-1), rtol=RATE_RTOL, atol=0)
    pad = torch.zeros(kmc.R, kmc._nb * kmc._Bk, dtype=g.dtype)
    pad[:, :V] = g.sum(-1)
    torch.testing.assert_close(kmc._bsum, pad.view(kmc.R, kmc._nb, kmc._Bk).sum(-1), rtol=RATE_RTOL, atol=0)
    torch.testing.assert_close(kmc.total_rate(), g.sum((1, 2)), rtol=RATE_RTOL, atol=0)
    if mode == "map":
        rebuilt = torch.full_like(kmc._vmap, -1).scatter_(1, kmc.vac_pos, kmc._vidx.to(kmc._vmap.dtype))
        assert torch.equal(kmc._vmap, rebuilt)
        assert torch.equal(kmc._vmap >= 0, kmc.species == 0)
    else:  # every vacancy once, in the bin of its site
        assert kmc._nt >= 8 * V and kmc._nt & (kmc._nt - 1) == 0
        assert torch.equal(_table_bins(kmc, kmc._vtab), _table_bins(kmc, kmc._table_of(kmc.vac_pos, kmc._vtab.dtype)))
        assert int((kmc._vtab >= 0).sum()) == kmc.R * V
    assert (kmc.energy - energy_from_scratch(kmc.species, cells)).abs().max() < 1e-8


@pytest.mark.parametrize("mode", ["map", "table"])
@pytest.mark.parametrize("cells,V,max_local", [(4, 20, 18), (5, 30, 12), (8, 40, 8), (16, 40, 8)])
def test_site_map_finds_the_vacancies_a_scan_finds(cells, V, max_local, mode):
    """Event by event, the vacancies the map finds near the two changed sites are those the scan of all
    V finds (as sets; their order differs), and the overflow flags agree. cells 4 is the smallest box
    on the local path: the 78 sites around an event must be distinct there. cells 16: 8,192 sites in
    the table's 512 bins, 16 sites per bin, so bins are shared."""
    on, off = (TorchKMC(cells, 16, cu_frac=0.1, vacancies=V, seed=7, max_local=max_local, site_map=m)
               for m in (mode, False))
    assert on.site_map == mode
    gen = torch.Generator().manual_seed(1)
    checked = 0
    for _ in range(60):
        u = torch.rand(on.R, 2, generator=gen, dtype=torch.float64)
        v, a, total = on._choose_classical(u[:, 0])
        ev = on._decide(v, a, total, u[:, 1], None)
        dt, vs, ts, X, dE, active, new_time = ev
        for k in (on, off):
            k._commit(v, vs, ts, X, dE, active, new_time)
        (va, oa), (vb, ob) = on._affected(v, a, vs, ts), off._affected(v, a, vs, ts)
        assert torch.equal(oa, ob)
        for r in range(on.R):
            if not oa[r]:
                assert set(va[r].tolist()) == set(vb[r].tolist())
                checked += 1
        for k in (on, off):
            k._store(*k._update(v, a, vs, ts))
    assert checked > 0.5 * 60 * on.R, checked  # most events did not overflow


@pytest.mark.parametrize("mode", ["map", "table"])
@pytest.mark.parametrize("cells,V,max_local", [(8, 40, 24), (10, 100, 24)])
def test_site_map_on_and_off_give_identical_trajectories(cells, V, max_local, mode):
    on, off = (TorchKMC(cells, 3, cu_frac=0.1, vacancies=V, seed=5, max_local=max_local, site_map=m)
               for m in (mode, False))
    assert on.site_map == mode and not off.site_map and on._local
    logits = torch.randn(3, V, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for k in range(200):
        lg = logits if k % 10 == 9 else None  # some policy steps too
        a, b = on.step(lg), off.step(lg)
        for key in a:
            assert torch.equal(a[key], b[key]), (k, key)
    t = float(on.time.max()) * 1.3
    on.advance(t)
    off.advance(t)
    for name in ("species", "vac_pos", "time", "energy", "events", "_rates", "_dE", "_vtot_pad", "_bsum",
                 "_overflow"):
        assert torch.equal(getattr(on, name), getattr(off, name)), name


def test_site_map_default_and_small_paths():
    assert TorchKMC(8, 1, vacancies=65, max_local=8).site_map == "table"  # None: the table when V > 64
    assert TorchKMC(8, 1, vacancies=65, max_local=8, site_map=True).site_map == "map"
    assert not TorchKMC(8, 1, vacancies=64, max_local=8).site_map
    with pytest.raises(ValueError, match="site_map"):
        TorchKMC(8, 1, vacancies=65, max_local=8, site_map="hash")
    assert not TorchKMC(8, 1, vacancies=9, max_local=8, site_map=True).site_map  # full recompute path
    assert not TorchKMC(3, 1, vacancies=40, max_local=8, site_map=True).site_map  # tiny box
    kmc = TorchKMC(4, 2, cu_frac=0.0, vacancies=40, seed=0, max_local=1, site_map=True)
    for _ in range(50):
        kmc.step()
    with pytest.raises(RuntimeError, match="max_local") as err:
        kmc.check()
    assert "TABLE_SLOTS" not in str(err.value)  # no table here: only the remedy that applies


class _TwoSlotKMC(TorchKMC):
    TABLE_SLOTS = 2  # bins that fill up: the overflow paths


def test_vacancy_table_overflow_is_caught():
    """A bin with no free slot: at the build, a ValueError; on a jump into it, the overflow flag, so
    that check() raises (the trajectory is not silently wrong)."""
    with pytest.raises(ValueError, match="vacancy table"):
        _TwoSlotKMC(16, 16, cu_frac=0.1, vacancies=24, seed=1, max_local=8, site_map="table")
    # 24 vacancies in 8,192 sites, 256 bins of 32 sites: seed 0 builds, and about half the replicas
    # meet a full bin within 200 jumps
    kmc = _TwoSlotKMC(16, 16, cu_frac=0.1, vacancies=24, seed=0, max_local=8, site_map="table")
    assert not bool(kmc._overflow.any())
    for _ in range(200):
        kmc.step()
    assert bool(kmc._overflow.any())
    with pytest.raises(RuntimeError, match=r"full bin: raise TorchKMC.TABLE_SLOTS \(now 2\)"):  # names the remedy
        kmc.check()
    ok = ~kmc._overflow  # the replicas that never met a full bin kept a consistent table
    assert bool(ok.any())
    bins = _table_bins(kmc, kmc._vtab)[ok]
    assert torch.equal(bins, _table_bins(kmc, kmc._table_of(kmc.vac_pos[ok], kmc._vtab.dtype)))
