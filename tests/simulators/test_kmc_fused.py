"""The fused in-place step (kmc_fused.py, two Triton kernels; the interpreter on a CPU) against the
torch version of the same step: from the same seed, the same trajectory."""

import pytest
import torch

from msrbook.simulators.kmc_torch import TorchKMC

RATE_RTOL = 1e-12  # the same rates; the totals and block sums differ only by summation order


def _pair(**kw):
    return TorchKMC(**kw, fused=False), TorchKMC(**kw, fused=True)


def _assert_same(a, b):
    for name in ("species", "vac_pos", "events", "energy", "_overflow"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    # dt = -ln(1 - u) / total, and the total is summed from the block sums: last-bit differences
    torch.testing.assert_close(b.time, a.time, rtol=RATE_RTOL, atol=0)
    assert (a._vmap is None) == (b._vmap is None)
    if a._vmap is not None:
        assert torch.equal(a._vmap, b._vmap)
    assert (a._vtab is None) == (b._vtab is None)
    if a._vtab is not None:  # the same slots too: both clear v's slot and take the first free one
        assert torch.equal(a._vtab, b._vtab)
    assert torch.equal(a._rates, b._rates) and torch.equal(a._dE, b._dE)
    torch.testing.assert_close(b._vtot_pad, a._vtot_pad, rtol=RATE_RTOL, atol=0)
    torch.testing.assert_close(b._bsum, a._bsum, rtol=RATE_RTOL, atol=0)


# R = 130: two programs of 128 lanes, the second mostly masked; V = 20 and 75: blocks of 20 (not a
# power of two) and of 32 with a padded last block; V = 3: every vacancy recomputed (no local update)
@pytest.mark.parametrize("cells,R,V,site_map", [(6, 130, 20, True), (8, 3, 75, True), (8, 5, 75, False),
                                                (4, 7, 3, None), (6, 130, 20, "table"), (8, 3, 75, None)])
def test_fused_step_follows_the_torch_trajectory(cells, R, V, site_map):
    a, b = _pair(cells=cells, replicas=R, cu_frac=0.1, vacancies=V, seed=5, max_local=16, site_map=site_map)
    assert a.site_map == b.site_map and b.fused and not a.fused
    _assert_same(a, b)  # the initial rates went through _store too
    for _ in range(40):
        sa, sb = a.step(), b.step()
        assert torch.equal(sa["v"], sb["v"]) and torch.equal(sa["a"], sb["a"])
    _assert_same(a, b)
    # events past t_stop suppressed (active False): both clocks stop at t_stop, nothing moves
    t_stop = float(a.time.median())
    a.advance(t_stop)
    b.advance(t_stop)
    _assert_same(a, b)
    assert (b.time == t_stop).any()
    b.check()


def test_fused_store_catches_overflow_like_torch():
    a, b = _pair(cells=6, replicas=4, cu_frac=0.0, vacancies=40, seed=2, max_local=1, site_map=True)
    for _ in range(30):
        a.step(), b.step()
    assert torch.equal(a._overflow, b._overflow) and bool(b._overflow.any())  # 40 vacancies in 432 sites: crowded
    with pytest.raises(RuntimeError, match="max_local"):
        b.check()


class _TwoSlotKMC(TorchKMC):
    TABLE_SLOTS = 2  # bins that fill up


def test_fused_commit_catches_a_full_table_bin_like_torch():
    kw = dict(cells=16, replicas=16, cu_frac=0.1, vacancies=24, seed=0, max_local=8, site_map="table")
    a, b = _TwoSlotKMC(**kw, fused=False), _TwoSlotKMC(**kw, fused=True)  # as in test_kmc_fast_paths.py
    for _ in range(200):
        a.step(), b.step()
    _assert_same(a, b)
    assert bool(b._overflow.any())
    with pytest.raises(RuntimeError, match="vacancy table"):
        b.check()
