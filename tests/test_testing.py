"""The shared closeness helper: passes what is close, raises a short report otherwise."""

import pytest
import torch

from msrbook.testing import assert_close, rel_l2


def test_close_tensors_pass():
    a = torch.randn(4, 5)
    assert_close(a + 1e-7, a, rtol=0, atol=1e-6)
    assert_close(a * (1 + 1e-4), a, rtol=2e-4, atol=0)


def test_mismatch_raises_with_location_and_short_report():
    a = torch.randn(64, 64, 8)
    b = a.clone()
    b[3, 7, 2] += 1.0
    with pytest.raises(AssertionError) as info:
        assert_close(b, a, rtol=1e-3, atol=1e-3, name="probe")
    msg = str(info.value)
    assert msg.startswith("probe: 1/32768 elements")
    assert "(3, 7, 2)" in msg and "max abs err 1.000e+00" in msg and "rel L2" in msg
    assert len(msg) < 400  # a report, never the tensor


@pytest.mark.parametrize("where", ["actual", "expected", "both"])
def test_nan_always_fails(where):
    a = torch.randn(10)
    b = a.clone()
    if where in ("actual", "both"):
        a[4] = float("nan")
    if where in ("expected", "both"):
        b[4] = float("nan")
    with pytest.raises(AssertionError, match="NaN actual="):
        assert_close(a, b, rtol=1.0, atol=1.0)


def test_shape_mismatch_raises():
    with pytest.raises(AssertionError, match="shape"):
        assert_close(torch.zeros(3), torch.zeros(3, 1), rtol=0, atol=0)


def test_rel_l2():
    a = torch.tensor([3.0, 4.0])
    assert rel_l2(a, a) == 0.0
    assert rel_l2(2 * a, a) == pytest.approx(1.0)
    assert rel_l2(a + torch.tensor([0.0, 0.5]), a) == pytest.approx(0.1)
    assert rel_l2(torch.zeros(2), torch.zeros(2)) == 0.0
    assert rel_l2(a, torch.zeros(2)) == float("inf")
