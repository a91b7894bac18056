"""The results API: compute saves, replay loads, claims get computed statuses, writes are atomic."""

import json
import os

import pandas as pd
import pytest

from msrbook.pipeline import results
from msrbook.errors import BookError

CH, NB = "decode-roofline", "01-roofline"
PARAMS = dict(batches=[1], lengths=[8], head_configs=[[4, 1]], head_dim=64)


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("MSRBOOK_RESULTS", str(tmp_path))
    monkeypatch.setenv("MSRBOOK_MODE", "compute")
    monkeypatch.delenv("MSRBOOK_REPLAY_PROFILE", raising=False)
    return tmp_path


def test_compute_then_replay_round_trip(root, monkeypatch):
    run = results.start(CH, NB, "ci", PARAMS, seeds={"torch": 0})
    df = run.table("t", lambda: {"a": [1, 2], "b": [0.5, 0.25]})
    run.finish()
    assert list(df["a"]) == [1, 2]
    folder = root / CH / "ci"
    assert (folder / "t.csv").exists()
    prov = json.loads((folder / "provenance.json").read_text())[NB]
    for key in ("commit", "dirty", "profile", "params", "device", "versions", "seeds", "start", "end", "wall_s"):
        assert key in prov, key
    assert prov["params"] == PARAMS and prov["tables"] == ["t"] and prov["wall_s"] >= 0

    monkeypatch.setenv("MSRBOOK_MODE", "replay")

    def must_not_run():
        raise AssertionError("replay recomputed a table")

    again = results.start(CH, NB, "gpu", PARAMS)  # replay picks the best profile present: ci
    assert again.profile == "ci"
    pd.testing.assert_frame_equal(again.table("t", must_not_run), df)


def test_replay_without_results_is_one_clear_error(root, monkeypatch):
    monkeypatch.setenv("MSRBOOK_MODE", "replay")
    with pytest.raises(BookError, match="no results for decode-roofline.*make reproduce CHAPTER=decode-roofline"):
        results.start(CH, NB, "ci", PARAMS)


def test_replay_missing_table_names_it(root, monkeypatch):
    results.start(CH, NB, "ci", PARAMS).finish()
    monkeypatch.setenv("MSRBOOK_MODE", "replay")
    with pytest.raises(BookError, match="table 'absent' missing"):
        results.start(CH, NB, "ci", PARAMS).table("absent", dict)


def test_claims_status_is_computed_and_merged_by_id(root):
    run = results.start(CH, NB, "ci", PARAMS)
    # a speed claim measured without a GPU can never be a speed claim
    c = run.claim("dense_decode_fraction_of_best_backend", 1.2)
    assert c["status"] == ("measured" if run.on_gpu else "not measurable at this scale")
    run.claim("dense_decode_fraction_of_best_backend", None, note="needs a GPU")
    saved = json.loads((root / CH / "ci" / "claims.json").read_text())
    assert [x["id"] for x in saved] == ["dense_decode_fraction_of_best_backend"]
    assert saved[0]["value"] is None and saved[0]["status"] == "not measurable at this scale"
    assert set(saved[0]) == {"id", "notebook", "value", "unit", "paper_value", "status", "note"}


def test_claim_errors(root):
    run = results.start(CH, NB, "ci", PARAMS)
    with pytest.raises(BookError, match="not declared"):
        run.claim("no_such_claim", 1.0)
    with pytest.raises(BookError, match="needs a one-line reason"):
        run.claim("dense_decode_fraction_of_roofline", None)


def test_params_are_checked_against_the_notebook(root):
    with pytest.raises(BookError, match="parameter 'head_dim' must be int"):
        results.start(CH, NB, "ci", {**PARAMS, "head_dim": "128"})
    with pytest.raises(BookError, match="unknown parameter 'batch'"):
        results.start(CH, NB, "ci", {**PARAMS, "batch": 3})
    with pytest.raises(BookError, match="unknown notebook"):
        results.start(CH, "99-nope", "ci", PARAMS)
    with pytest.raises(BookError, match="unknown profile 'fast'"):
        results.start(CH, NB, "fast", PARAMS)


def test_write_atomic_keeps_old_file_when_replace_fails(tmp_path, monkeypatch):
    path = tmp_path / "x.json"
    results.write_atomic(path, "old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        results.write_atomic(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # no temporary file left behind


def test_commit_from_environment(monkeypatch):
    from msrbook.pipeline import provenance
    monkeypatch.setenv("MSRBOOK_COMMIT", "abc123")
    monkeypatch.setenv("MSRBOOK_DIRTY", "0")
    assert provenance.commit_info() == {"commit": "abc123", "dirty": False}


def test_bad_mode_is_rejected(monkeypatch):
    monkeypatch.setenv("MSRBOOK_MODE", "replayy")
    with pytest.raises(BookError, match="valid modes: compute, replay"):
        results.mode()


def test_list_parameters_may_mix_the_element_types_of_their_default():
    from msrbook.pipeline.params import check

    defaults = {"configs": [[2, 4, 2], {"impl": "tm"}], "sizes": [1, 2]}
    ok = check(defaults, {"configs": [[8, 2], {"impl": "x", "n": 3}, [1]]}, "nb")
    assert ok["configs"][1] == {"impl": "x", "n": 3}
    with pytest.raises(BookError, match="parameter 'configs' must be list"):
        check(defaults, {"configs": [[8, 2], "tm"]}, "nb")  # a string is neither a list nor a dict
    with pytest.raises(BookError, match="parameter 'sizes' must be list"):
        check(defaults, {"sizes": [1, {"a": 1}]}, "nb")  # a dict where the default holds only ints
