"""Mutual verification on hand-made output vectors, the Wilson interval, the simulated labeller."""

import random

import pytest

from msrbook.chapters.rstar_coder import verify


def test_accepts_a_clear_majority():
    vecs = [("1", "2")] * 6 + [("1", "3")] * 4
    d = verify.mutual_verification(vecs, 0.6)
    assert d.accepted and d.label == ("1", "2") and d.members == tuple(range(6)) and d.share == 0.6


def test_rejects_below_threshold():
    vecs = [("a",)] * 5 + [("b",)] * 3 + [("c",)] * 2
    d = verify.mutual_verification(vecs, 0.6)
    assert not d.accepted and d.reason == "below threshold" and d.label is None


def test_forty_percent_rule_accepts_what_sixty_rejects():
    vecs = [("a",)] * 4 + [("b",)] * 3 + [("c",)] * 3
    assert not verify.mutual_verification(vecs, verify.PAPER_THRESHOLD).accepted
    assert verify.mutual_verification(vecs, verify.threshold_for(hard=True)).accepted
    assert verify.threshold_for(hard=False) == 0.6


def test_tie_for_largest_is_rejected():
    vecs = [("a",)] * 4 + [("b",)] * 4
    d = verify.mutual_verification(vecs, 0.3)
    assert not d.accepted and d.reason == "tie for largest"


def test_failure_verdict_is_its_own_value():
    assert verify.output_value("time_limit", "partial") == "<time_limit>"
    assert verify.output_value("ok", " 3 \n\n") == "3"
    vecs = [("3", "<time_limit>")] * 2 + [("3", "5")] * 3
    assert verify.mutual_verification(vecs, 0.6).label == ("3", "5")


def test_wilson_known_values():
    # Reference values from the closed form (e.g. statsmodels proportion_confint(method="wilson")).
    p, lo, hi = verify.wilson(8, 10)
    assert p == 0.8 and lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    p, lo, hi = verify.wilson(0, 20)
    assert lo == 0.0 and hi == pytest.approx(0.1611, abs=1e-4)
    p, lo, hi = verify.wilson(3048, 3150)  # the paper's 96.8% of 3,150
    assert lo == pytest.approx(0.9612, abs=1e-3) and hi == pytest.approx(0.9738, abs=1e-3)


def test_corrupt_always_changes_the_output():
    rng = random.Random(0)
    for out in ["0", "-1", "YES", "NO", "1 2 3\n4", "a3b1", ""]:
        for _ in range(20):
            assert verify.corrupt(out, rng) != out


def test_direct_error_grows_with_scale():
    probs = [verify.error_probability(s, 0.3, 0.12) for s in (1, 10, 10**3, 10**5)]
    assert probs == sorted(probs) and probs[0] == 0.3 and probs[-1] == pytest.approx(0.9)
    rng = random.Random(1)
    oracle = ["5"] * 2000
    lab = verify.direct_labels(oracle, [1] * 1000 + [10**5] * 1000, rng, 0.3, 0.12)
    small_err = sum(a != b for a, b in zip(lab[:1000], oracle)) / 1000
    big_err = sum(a != b for a, b in zip(lab[1000:], oracle)) / 1000
    assert abs(small_err - 0.3) < 0.05 and abs(big_err - 0.9) < 0.05  # 1000 draws: 3 s.d. < 0.045
