"""Results per device (DESIGN, "Results per device"): gpu and paper results live in
<chapter>/<profile>/<device>/, a reproduce swaps in only the folder of the device that ran, the
notebooks replay one set chosen by a fixed rule, and the book lists every device's claims."""

import hashlib
import json
import os
from pathlib import Path

import pytest

from msrbook import repo_root
from msrbook.errors import BookError
from msrbook.pipeline import bookpages, layout, provenance, results, runner
from msrbook.pipeline.registry import chapter, chapters

CH, NB = "decode-roofline", "01-roofline"
PARAMS = dict(batches=[1], lengths=[8], head_configs=[[4, 1]], head_dim=64)
H100 = {"cpu": "Test CPU", "cpu_count": 16, "gpu": "NVIDIA H100 80GB HBM3", "gpu_count": 1}
H200 = {**H100, "gpu": "NVIDIA H200"}
A100 = {**H100, "gpu": "NVIDIA A100-SXM4-80GB"}
CPU = {"cpu": "Test CPU", "cpu_count": 2, "gpu": None, "gpu_count": 0}


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("MSRBOOK_RESULTS", str(tmp_path))
    monkeypatch.setenv("MSRBOOK_MODE", "compute")
    for var in ("MSRBOOK_REPLAY_PROFILE", "MSRBOOK_REPLAY_DEVICE", "MSRBOOK_DEVICE_KEY"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def on(monkeypatch, device: dict) -> None:
    """Make this process see `device` (the probe and every Run read provenance.device_info)."""
    monkeypatch.setattr(provenance, "device_info", lambda: dict(device))


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# -- the slug ------------------------------------------------------------------------------------
@pytest.mark.parametrize("device, key", [
    (H100, "h100-80gb-hbm3"),
    (H200, "h200"),
    ({**H100, "gpu_count": 8}, "8x-h100-80gb-hbm3"),
    (A100, "a100-sxm4-80gb"),
    ({**H100, "gpu": "NVIDIA GeForce RTX 4090"}, "geforce-rtx-4090"),
    ({**H100, "gpu": "Tesla T4"}, "tesla-t4"),
    (CPU, "cpu"),
])
def test_device_key(device, key):
    assert layout.device_key(device) == key


def test_device_key_needs_a_device_record():
    with pytest.raises(BookError, match="no device"):
        layout.device_key(None)


def test_committed_device_folders_match_their_records():
    """Every committed gpu/paper folder is named by the slug of every record in it."""
    data = repo_root() / "data" / "results"
    for ch in chapters():
        for rs in layout.result_sets(ch.name, data):
            if rs.key is not None:
                assert {layout.device_key(r["device"]) for r in rs.provenance().values()} == {rs.key}, rs.path


# -- compute -------------------------------------------------------------------------------------
def test_compute_writes_under_the_device_folder(root, monkeypatch):
    on(monkeypatch, H200)
    run = results.start(CH, NB, "gpu", PARAMS)
    run.table("t", lambda: {"a": [1]})
    run.finish()
    assert (root / CH / "gpu" / "h200" / "t.csv").exists()
    assert not (root / CH / "gpu" / "t.csv").exists()
    ci = results.start(CH, NB, "ci", PARAMS)  # ci stays flat, whatever the device
    ci.table("t", lambda: {"a": [1]})
    assert (root / CH / "ci" / "t.csv").exists()


def test_compute_refuses_a_device_other_than_the_probed_one(root, monkeypatch):
    on(monkeypatch, H200)
    monkeypatch.setenv("MSRBOOK_DEVICE_KEY", "h100-80gb-hbm3")
    with pytest.raises(BookError, match="runs on 'h200' but `make reproduce` probed 'h100-80gb-hbm3'"):
        results.start(CH, NB, "gpu", PARAMS)
    assert not (root / CH).exists()


def fake_execute(chapter_name, plan, out_dir, timeout_s, label):
    """In-process stand-in for papermill: each notebook opens its Run and records one table."""
    for stem, params in plan:
        run = results.start(chapter_name, stem, params["profile"], {k: v for k, v in params.items() if k != "profile"})
        run.table(f"t_{stem}", lambda: {"device": [run.key], "at": [run.record["start"]]})
        run.finish()


def test_reproduce_on_device_b_leaves_device_a_byte_identical(root, monkeypatch):
    monkeypatch.setattr(runner, "execute", fake_execute)
    on(monkeypatch, H100)
    # force: the faked device has no memory to check (needs.check is tested in test_needs.py)
    target_a = runner.reproduce(CH, "gpu", force=True)
    assert target_a == root / CH / "gpu" / "h100-80gb-hbm3"
    before = snapshot(target_a)
    on(monkeypatch, H200)
    target_b = runner.reproduce(CH, "gpu", force=True)
    assert target_b == root / CH / "gpu" / "h200" and (target_b / "provenance.json").exists()
    runner.reproduce(CH, "gpu", only=[NB], force=True)  # ONLY seeds from the same device's folder
    prov_b = json.loads((target_b / "provenance.json").read_text())
    assert set(prov_b) == set(chapter(CH).notebooks)
    assert all(layout.device_key(r["device"]) == "h200" for r in prov_b.values())
    assert snapshot(target_a) == before
    assert sorted(p.name for p in (root / CH).iterdir()) == ["gpu"]  # no stage or old folder left
    assert sorted(p.name for p in (root / CH / "gpu").iterdir()) == ["h100-80gb-hbm3", "h200"]


def test_only_on_a_device_without_results_refuses(root, monkeypatch):
    monkeypatch.setattr(runner, "execute", fake_execute)
    on(monkeypatch, H100)
    runner.reproduce(CH, "gpu", force=True)
    on(monkeypatch, A100)
    with pytest.raises(BookError, match="gpu/a100-sxm4-80gb to update: run the whole chapter once"):
        runner.reproduce(CH, "gpu", only=[NB], force=True)


def test_a_notebook_on_another_device_fails_and_swaps_nothing(root, monkeypatch):
    on(monkeypatch, H100)
    monkeypatch.setattr(runner, "execute", fake_execute)
    runner.reproduce(CH, "gpu", force=True)
    before = snapshot(root / CH)

    def notebook_sees_h200(*args):
        on(monkeypatch, H200)
        fake_execute(*args)

    monkeypatch.setattr(runner, "execute", notebook_sees_h200)
    with pytest.raises(BookError, match="probed 'h100-80gb-hbm3'"):
        runner.reproduce(CH, "gpu", force=True)
    assert snapshot(root / CH) == before

    def unguarded(*args):  # where the probed key does not reach the notebook, the runner's check
        os.environ.pop("MSRBOOK_DEVICE_KEY")
        notebook_sees_h200(*args)

    on(monkeypatch, H100)
    monkeypatch.setattr(runner, "execute", unguarded)
    with pytest.raises(BookError, match="01-roofline, 02-split-kv-kernel, 03-benchmark recorded no results under gpu/h100-80gb-hbm3"):
        runner.reproduce(CH, "gpu", force=True)
    assert snapshot(root / CH) == before


# -- replay and the book -------------------------------------------------------------------------
CLAIM = "dense_decode_fraction_of_roofline"


def write_set(folder: Path, device: dict, end: str, value: float) -> None:
    """A result set of decode-roofline's 03-benchmark with one claim."""
    folder.mkdir(parents=True)
    rec = {"commit": "f" * 40, "dirty": False, "device": device, "end": end, "tables": []}
    (folder / "provenance.json").write_text(json.dumps({"03-benchmark": rec}))
    (folder / "claims.json").write_text(json.dumps([
        {"id": CLAIM, "notebook": "03-benchmark", "value": value, "unit": "fraction", "paper_value": None,
         "status": "measured", "note": ""}]))


@pytest.fixture
def two_devices(root):
    """ci, and gpu on an H100 (measured later, lower value) and an H200 (earlier, higher value)."""
    write_set(root / CH / "ci", CPU, "2026-01-01T00:00:00+00:00", 0.5)
    write_set(root / CH / "gpu" / "h100-80gb-hbm3", H100, "2026-01-03T00:00:00+00:00", 0.61)
    write_set(root / CH / "gpu" / "h200", H200, "2026-01-02T00:00:00+00:00", 0.93)
    (root / CH / "gpu" / ".old-h200-123").mkdir()  # a swap in progress is not a set
    return root


def test_replay_picks_the_best_profile_then_the_latest_device(two_devices):
    root = two_devices
    assert [s.folder for s in layout.result_sets(CH, root)] == ["gpu/h100-80gb-hbm3", "gpu/h200", "ci"]
    assert layout.replay_set(CH, root).folder == "gpu/h100-80gb-hbm3"  # latest end, not the higher value
    assert layout.replay_set(CH, root, "gpu", "h200").folder == "gpu/h200"
    assert layout.replay_set(CH, root, "ci").folder == "ci"
    assert layout.replay_set(CH, root, "gpu", "a100-sxm4-80gb") is None
    write_set(root / CH / "paper" / "h200", H200, "2025-01-01T00:00:00+00:00", 0.1)
    assert layout.replay_set(CH, root).folder == "paper/h200"  # the profile comes before recency


def test_replay_ties_go_to_the_device_name(root):
    for key, dev in (("h200", H200), ("h100-80gb-hbm3", H100)):
        write_set(root / CH / "gpu" / key, dev, "2026-01-01T00:00:00+00:00", 0.5)
    assert layout.replay_set(CH, root).key == "h200"


def test_run_and_runner_replay_the_same_set(two_devices, monkeypatch):
    monkeypatch.setenv("MSRBOOK_MODE", "replay")
    run = results.start(CH, "03-benchmark", "ci", {})
    assert (run.profile, run.key) == ("gpu", "h100-80gb-hbm3") and run.claim(CLAIM, None)["value"] == 0.61
    monkeypatch.setenv("MSRBOOK_REPLAY_DEVICE", "h200")  # a device asked for without a profile
    assert results.start(CH, "03-benchmark", "ci", {}).claim(CLAIM, None)["value"] == 0.93
    monkeypatch.delenv("MSRBOOK_REPLAY_DEVICE")
    seen = {}

    def capture(chapter_name, plan, out_dir, timeout_s, label):
        seen.update({k: os.environ.get(k) for k in ("MSRBOOK_REPLAY_PROFILE", "MSRBOOK_REPLAY_DEVICE")})
        r = results.start(chapter_name, "03-benchmark", plan[0][1]["profile"], {})
        seen["value"] = r.claim(CLAIM, None)["value"]

    monkeypatch.setattr(runner, "execute", capture)
    runner.replay(CH, out_dir=two_devices / "out")
    assert seen == {"MSRBOOK_REPLAY_PROFILE": "gpu", "MSRBOOK_REPLAY_DEVICE": "h100-80gb-hbm3", "value": 0.61}
    runner.replay(CH, "gpu", out_dir=two_devices / "out", device="h200")
    assert seen["value"] == 0.93
    with pytest.raises(BookError, match=r"no results for decode-roofline \(gpu/a100\)"):
        runner.replay(CH, "gpu", out_dir=two_devices / "out", device="a100")


def test_the_old_flat_layout_is_refused_with_the_move_to_make(root):
    write_set(root / CH / "gpu", H200, "2026-01-01T00:00:00+00:00", 0.5)
    with pytest.raises(BookError, match=r"old flat layout; its files belong in .*/gpu/h200/"):
        layout.result_sets(CH, root)


def test_scoreboard_has_one_row_per_device(two_devices):
    rows = [line for line in bookpages.scoreboard(two_devices).splitlines() if f"`{CLAIM}`" in line]
    cells = [[c.strip() for c in row.strip("|").split(" | ")] for row in rows]
    assert [(c[3], c[4], c[5]) for c in cells] == [
        ("0.61 fraction", "gpu", "NVIDIA H100 80GB HBM3"), ("0.93 fraction", "gpu", "NVIDIA H200"),
        ("0.5 fraction", "ci", "CPU (Test CPU, 2 cores)")]


def test_chapter_page_lists_every_device_and_names_the_replayed_set(two_devices):
    page = bookpages.chapter_status(chapter(CH), two_devices, pending=False)
    assert "The notebooks replay the `gpu/h100-80gb-hbm3` results (NVIDIA H100 80GB HBM3)" in page
    assert "every device's claims" in page
    for folder, label, value in (("gpu/h100-80gb-hbm3", "NVIDIA H100 80GB HBM3", "0.61"),
                                 ("gpu/h200", "NVIDIA H200", "0.93")):
        assert f"| gpu | {label} | `{folder}` |" in page
        section = page.split(f"### Claims, profile `gpu`, {label}\n")[1].split("###")[0]
        assert f"| `{CLAIM}` | {value} fraction |" in section
