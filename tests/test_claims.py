"""Claim statuses come from the rule written in data/paper/<chapter>.yml, never by hand."""

import pytest

from msrbook.pipeline.claims import ClaimSpec, paper_specs, status, STATUSES
from msrbook.pipeline.registry import chapters


def spec(rule, paper=None, speed=False):
    return ClaimSpec("x", "f", "x", paper, None, rule, speed)


@pytest.mark.parametrize("value, expected", [(2.0, "reproduced"), (1.85, "reproduced"), (1.6, "partly"),
                                             (1.0, "not reproduced"), (2.6, "not reproduced")])
def test_ratio_rule(value, expected):
    assert status(spec({"kind": "ratio", "within": 0.1, "partly_within": 0.3}, 2.0), value, on_gpu=True)[0] == expected


def test_ratio_or_above_counts_beating_the_paper():
    s = spec({"kind": "ratio", "within": 0.1, "or_above": True}, 2.0)
    assert status(s, 5.0, on_gpu=True)[0] == "reproduced"
    assert status(s, 1.5, on_gpu=True)[0] == "not reproduced"


def test_thresholds_and_lists():
    s = spec({"kind": "at_least", "threshold": 1.0, "partly_threshold": 0.8})
    assert [status(s, v, on_gpu=True)[0] for v in (1.0, 0.9, 0.5)] == ["reproduced", "partly", "not reproduced"]
    assert status(s, [1.2, 0.1], on_gpu=True)[0] == "partly"
    assert status(spec({"kind": "at_most", "threshold": 1.0}), 1.5, on_gpu=True)[0] == "not reproduced"


def test_measured_with_target_note():
    s = spec({"kind": "measured", "target_at_least": 0.85})
    assert status(s, 0.9, on_gpu=True) == ("measured", "book's target >= 0.85: met")
    assert status(s, 0.5, on_gpu=True) == ("measured", "book's target >= 0.85: missed")


def test_speed_claims_need_a_gpu():
    s = spec({"kind": "measured"}, speed=True)
    assert status(s, 3.0, on_gpu=False)[0] == "not measurable at this scale"


def test_every_declared_claim_is_well_formed():
    for ch in chapters():
        for cid, s in paper_specs(ch.name).items():
            assert s.formula.strip(), f"{ch.name}/{cid} has no formula"
            if s.rule["kind"] == "ratio":
                assert s.paper_value is not None and s.source, f"{ch.name}/{cid}: a ratio rule needs the paper's number and source"
    assert len(STATUSES) == 5
