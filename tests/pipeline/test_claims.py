"""Claim statuses come from the rule written in data/paper/<chapter>.yml, never by hand, and every
rule that compares can fail."""

import json

import pytest

from msrbook import repo_root
from msrbook.errors import BookError
from msrbook.pipeline import bookpages, claims, results
from msrbook.pipeline.claims import FAILING, STATUSES, ClaimSpec, check_rule, paper_specs, status
from msrbook.pipeline.registry import chapter, chapters


def spec(rule, paper=None, speed=False, cid="x"):
    return ClaimSpec(cid, "f", "x", paper, None, rule, speed)


def st(rule, value, paper=None, interval=None, on_gpu=True):
    return status(spec(rule, paper), value, on_gpu=on_gpu, interval=interval)[0]


# -- the paper's rules ------------------------------------------------------------------------------
@pytest.mark.parametrize("value, expected", [(2.0, "reproduced"), (1.85, "reproduced"), (1.6, "partly"),
                                             (1.0, "not reproduced"), (2.6, "not reproduced")])
def test_ratio_rule(value, expected):
    assert st({"kind": "ratio", "within": 0.1, "partly_within": 0.3}, value, 2.0) == expected


def test_ratio_or_above_counts_beating_the_paper():
    rule = {"kind": "ratio", "within": 0.1, "or_above": True}
    assert (st(rule, 5.0, 2.0), st(rule, 1.5, 2.0)) == ("reproduced", "not reproduced")


def test_thresholds_and_lists():
    rule = {"kind": "at_least", "threshold": 1.0, "partly_threshold": 0.8}
    assert [st(rule, v) for v in (1.0, 0.9, 0.5)] == ["reproduced", "partly", "not reproduced"]
    assert st(rule, [1.2, 0.1]) == "partly"
    assert st({"kind": "at_most", "threshold": 1.0}, 1.5) == "not reproduced"


# -- the book's targets -----------------------------------------------------------------------------
def test_target_met_and_missed():
    rule = {"kind": "target", "at_least": 0.85}
    assert status(spec(rule), 0.9, on_gpu=True) == ("met", "book's target >= 0.85")
    assert status(spec(rule), 0.5, on_gpu=True) == ("missed", "book's target >= 0.85")
    assert st({"kind": "target", "at_most": 0.1}, 0.2) == "missed"
    assert st({"kind": "target", "at_most": 0.1}, 0.1) == "met"  # the bar itself meets it


def test_a_list_meets_a_target_only_if_every_element_does():
    rule = {"kind": "target", "at_least": 0.0025}  # e.g. four p-values, Bonferroni
    assert st(rule, [0.3, 0.4, 0.2, 0.01]) == "met"
    assert st(rule, [0.3, 0.4, 0.2, 0.001]) == "missed"


def test_speed_claims_need_a_gpu():
    s = spec({"kind": "target", "at_least": 0.85}, speed=True)
    assert status(s, 0.1, on_gpu=False) == ("not measurable at this scale", claims.CPU_SPEED)
    assert status(s, 0.1, on_gpu=True)[0] == "missed"


# -- differences with an interval -------------------------------------------------------------------
@pytest.mark.parametrize("value, interval, margin, expected", [
    (0.3, [0.1, 0.5], None, "reproduced"),          # the interval lies above 0
    (-0.3, [-0.5, -0.1], None, "not reproduced"),   # below 0
    (0.2, [-0.1, 0.5], None, "inconclusive"),       # holds 0
    (0.3, [0.1, 0.5], 0.2, "inconclusive"),         # above 0 but not above the stated margin
    (0.3, [0.25, 0.5], 0.2, "reproduced"),
    (0.1, [0.0, 0.15], 0.2, "not reproduced"),      # a real effect, but below the margin
])
def test_difference_rule(value, interval, margin, expected):
    rule = {"kind": "difference", **({} if margin is None else {"margin": margin})}
    assert st(rule, value, interval=interval) == expected


def test_difference_without_an_interval_is_an_error_naming_the_claim():
    with pytest.raises(BookError, match="'gain'.*needs an interval"):
        status(spec({"kind": "difference"}, cid="gain"), 0.3, on_gpu=True)


@pytest.mark.parametrize("value, interval", [(0.6, [0.1, 0.5]), (0.3, [0.5, 0.1]), (0.3, [0.1]),
                                             (0.3, ["a", 1]), ([0.3, 0.4], [0.1, 0.5])])
def test_an_interval_must_hold_its_one_value(value, interval):
    with pytest.raises(BookError, match="'gain'.*interval"):
        claims.check_interval("gain", value, interval)


# -- measured and illustration ----------------------------------------------------------------------
def test_measured_and_illustration_never_compare():
    assert status(spec({"kind": "measured"}), 0.0, on_gpu=True) == ("measured", "")
    why = "true by construction"
    assert status(spec({"kind": "illustration", "why": why}), 1.0, on_gpu=True) == ("illustration", why)
    assert status(spec({"kind": "illustration", "why": why}), 0.0, on_gpu=True)[0] == "illustration"
    assert "illustration" not in FAILING


# -- the rules as written ---------------------------------------------------------------------------
@pytest.mark.parametrize("rule, paper, match", [
    ({"kind": "typo"}, None, "rule kind 'typo'"),
    ({"kind": "measured", "target_at_least": 0.8}, None, "got \\['target_at_least'\\]"),  # the old way: now a target
    ({"kind": "target"}, None, "exactly one"),
    ({"kind": "target", "at_least": 1, "at_most": 2}, None, "exactly one"),
    ({"kind": "ratio", "within": 0.1}, None, "non-zero paper_value"),
    ({"kind": "at_least", "threshold": 1.0, "partly_threshold": 2.0}, None, "failing side"),
    ({"kind": "at_least"}, None, "needs \\['threshold'\\]"),
    ({"kind": "target", "at_least": "0.8"}, None, "must be numbers"),
    ({"kind": "illustration"}, None, "needs \\['why'\\]"),
])
def test_a_malformed_rule_is_an_error_naming_the_claim(rule, paper, match):
    with pytest.raises(BookError, match=match):
        check_rule("x.yml: claim 'c'", rule, paper)


def declared():
    return [(ch.name, s) for ch in chapters() for s in paper_specs(ch.name).values()]


def test_every_declared_claim_has_a_valid_rule():
    assert declared(), "no claims declared"
    for name, s in declared():
        check_rule(f"{name}/{s.id}", s.rule, s.paper_value)
        assert s.formula.strip(), f"{name}/{s.id} has no formula"
        if s.rule["kind"] in ("ratio", "at_least", "at_most"):  # a comparison with the paper names its source
            assert s.source, f"{name}/{s.id}: a {s.rule['kind']} rule needs the paper's source"


def failing_value(s: ClaimSpec):
    """A value (and interval) that the spec's rule must not pass."""
    r = s.rule
    if r["kind"] == "ratio":
        papers = s.paper_value if isinstance(s.paper_value, list) else [s.paper_value]
        worst = 1 - max(r["within"], r.get("partly_within", 0)) - 0.5  # under every tolerance, or_above irrelevant
        vals = [p * worst for p in papers]
        return (vals if isinstance(s.paper_value, list) else vals[0]), None
    if r["kind"] in ("at_least", "at_most"):
        sign = 1 if r["kind"] == "at_least" else -1
        bars = [r["threshold"], r.get("partly_threshold", r["threshold"])]
        return (min(bars) - 1 if sign > 0 else max(bars) + 1), None
    if r["kind"] == "target":
        return (r["at_least"] - 1 if "at_least" in r else r["at_most"] + 1), None
    margin = r.get("margin", 0)  # difference
    return margin - 2, [margin - 3, margin - 1]


def test_every_rule_that_compares_can_fail():
    """No committed status is unable to fail: each declared rule other than measured and
    illustration gives a failing status to some value."""
    comparing = [(n, s) for n, s in declared() if s.rule["kind"] not in ("measured", "illustration")]
    assert {s.rule["kind"] for _, s in comparing} >= {"ratio", "at_least", "target"}
    for name, s in comparing:
        value, interval = failing_value(s)
        got = status(s, value, on_gpu=True, interval=interval)[0]
        assert got in FAILING, f"{name}/{s.id}: {value!r} gives {got!r}"
    for rule in ({"kind": "at_most", "threshold": 1.0}, {"kind": "difference"}):  # kinds no chapter uses yet
        value, interval = failing_value(spec(rule))
        assert status(spec(rule), value, on_gpu=True, interval=interval)[0] in FAILING


def committed():
    for path in sorted((repo_root() / "data" / "results").glob("*/**/claims.json")):
        prov = json.loads((path.parent / "provenance.json").read_text())
        name = path.relative_to(repo_root() / "data" / "results").parts[0]
        for c in json.loads(path.read_text()):
            yield name, c, bool(((prov.get(c["notebook"]) or {}).get("device") or {}).get("gpu"))


def test_committed_statuses_follow_the_current_rules():
    """A rule edit needs no rerun, but the committed files are kept in step (tools/rejudge_claims.py)."""
    rows = list(committed())
    assert rows
    for name, c, on_gpu in rows:
        s = claims.spec(name, c["id"])
        assert (c["unit"], c["paper_value"]) == (s.unit, s.paper_value), f"{name}/{c['id']}"
        assert c["status"] in STATUSES
        assert claims.rejudged(name, c, on_gpu) == c, f"{name}/{c['id']}: run tools/rejudge_claims.py"


# -- where claims are recorded and shown -------------------------------------------------------------
@pytest.fixture
def difference_claim(monkeypatch, tmp_path):
    """decode-roofline with one extra claim under a 'difference' rule, in a scratch results root."""
    real = dict(paper_specs("decode-roofline"))
    real["gain"] = spec({"kind": "difference"}, cid="gain")
    monkeypatch.setattr(claims, "paper_specs", lambda ch: real if ch == "decode-roofline" else {})
    monkeypatch.setenv("MSRBOOK_RESULTS", str(tmp_path))
    monkeypatch.setenv("MSRBOOK_MODE", "compute")
    monkeypatch.delenv("MSRBOOK_REPLAY_PROFILE", raising=False)
    params = dict(batches=[1], lengths=[8], head_configs=[[4, 1]], head_dim=64)
    return results.start("decode-roofline", "01-roofline", "ci", params), tmp_path / "decode-roofline" / "ci"


def test_run_claim_records_an_interval(difference_claim):
    run, folder = difference_claim
    with pytest.raises(BookError, match="'gain'.*needs an interval"):
        run.claim("gain", 0.2)
    c = run.claim("gain", 0.2, note="bootstrap over problems", interval=(-0.1, 0.4))
    assert (c["status"], c["interval"], c["note"]) == ("inconclusive", [-0.1, 0.4], "bootstrap over problems")
    assert json.loads((folder / "claims.json").read_text()) == [c]


def test_replay_and_pages_judge_under_the_current_rule(difference_claim, monkeypatch):
    run, folder = difference_claim
    run.claim("gain", 0.2, note="n", interval=[0.1, 0.4])
    run.finish()
    stored = json.loads((folder / "claims.json").read_text())
    stored[0]["status"] = "not reproduced"  # as if typed by hand, or judged by an older rule
    (folder / "claims.json").write_text(json.dumps(stored))
    monkeypatch.setenv("MSRBOOK_MODE", "replay")
    assert results.start("decode-roofline", "01-roofline", "ci", {}).claim("gain", None)["status"] == "reproduced"
    pr = bookpages.load_results(chapter("decode-roofline"), folder.parent.parent)[0]
    assert bookpages.status_cell(stored[0], pr) == "reproduced (n; interval [0.1, 0.4] above 0)"
    assert bookpages.status_cell(stored[0]).startswith("not reproduced (n")  # without its results: as committed
