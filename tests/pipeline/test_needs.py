"""A profile's declared needs: validated, checked before `reproduce` runs anything (refusal in one
line on a too-small machine, FORCE to go on), and the committed runs stay within them."""

import json
import sys

import pytest
import yaml

from msrbook.errors import BookError
from msrbook.pipeline import cli, needs, params, runner
from msrbook.pipeline.registry import chapters

GB = 10**9
T4 = {"gpu": "Tesla T4", "gpu_memory_bytes": 16 * GB, "host_memory_bytes": 64 * GB}
H100 = {"gpu": "NVIDIA H100 80GB HBM3", "gpu_memory_bytes": 85 * GB, "host_memory_bytes": 128 * GB}


class ReachedExecute(Exception):
    """Raised by the stand-in for runner.execute: the needs check let the run through."""


@pytest.fixture
def machine(monkeypatch, tmp_path):
    """Point results at a scratch root, make `reproduce` default to the gpu profile as on a CUDA
    machine, and return a setter for the probed device."""
    monkeypatch.setenv("MSRBOOK_RESULTS", str(tmp_path))
    monkeypatch.setattr(runner, "default_profile", lambda: "gpu")

    def use(device: dict, execute=None):
        monkeypatch.setattr(needs, "probe", lambda: dict(device))
        monkeypatch.setattr(runner, "execute", execute or _never_execute)
    return use


def _never_execute(*args, **kwargs):
    raise AssertionError("papermill reached despite the needs check")


def _sentinel_execute(*args, **kwargs):
    raise ReachedExecute


def test_reproduce_on_a_16gb_gpu_refuses_in_one_line(machine, capsys):
    machine(T4)
    had_papermill = "papermill" in sys.modules
    assert cli.main(["reproduce", "bitdecoding"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    line = err[0]
    need = params.requires("bitdecoding", "gpu")["gpu_memory_gb"]
    assert f"bitdecoding (gpu) needs {need:g} GB of GPU memory; this Tesla T4 has 16 GB" in line
    assert "run PROFILE=ci" in line and "SET=" in line and "FORCE=1" in line
    assert "lengths" in line  # names the parameters that set its size
    assert had_papermill or "papermill" not in sys.modules


def test_enough_gpu_memory_gets_past_the_check(machine):
    machine(H100, execute=_sentinel_execute)
    with pytest.raises(ReachedExecute):
        cli.main(["reproduce", "bitdecoding"])


def test_short_host_memory_is_refused(machine, capsys):
    machine({**H100, "host_memory_bytes": 4 * GB})
    assert cli.main(["reproduce", "bitdecoding", "--profile", "gpu"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "GB of host memory; this host has 4.0 GB" in line and "GPU memory" not in line


def test_no_gpu_at_all_is_refused_for_a_gpu_profile(machine, capsys):
    machine({"gpu": None, "gpu_memory_bytes": None, "host_memory_bytes": 64 * GB})
    assert cli.main(["reproduce", "decode-roofline", "--profile", "gpu"]) == 2
    assert "this machine has no CUDA GPU: run PROFILE=ci" in capsys.readouterr().err


def test_force_skips_the_check(machine):
    machine(T4, execute=_sentinel_execute)
    with pytest.raises(ReachedExecute):
        cli.main(["reproduce", "bitdecoding", "--force"])


def test_shrinking_a_size_parameter_skips_the_memory_check(machine, capsys):
    machine(T4, execute=_sentinel_execute)
    with pytest.raises(ReachedExecute):
        cli.main(["reproduce", "bitdecoding", "--set", "lengths=[8192]"])
    assert "not checked" in capsys.readouterr().err


def test_an_unrelated_override_does_not_skip_it(machine):
    machine(T4)
    assert cli.main(["reproduce", "bitdecoding", "--set", "rep_ms=10"]) == 2


def test_make_passes_force(monkeypatch):
    import subprocess
    out = subprocess.run(["make", "-n", "reproduce", "CHAPTER=bitdecoding", "FORCE=1"], capture_output=True, text=True)
    assert "--force" in out.stdout
    out = subprocess.run(["make", "-n", "reproduce", "CHAPTER=bitdecoding"], capture_output=True, text=True)
    assert "--force" not in out.stdout


# -- `requires` in profiles.yml ---------------------------------------------------------------------

@pytest.fixture
def fake_profiles(monkeypatch, tmp_path):
    """Write a profiles.yml for decode-roofline in a temporary folder and point the chapter at it."""
    from msrbook.pipeline import registry
    real = registry.chapter("decode-roofline")

    class Fake:
        name, notebooks, folder = real.name, real.notebooks, tmp_path
        notebook_path = staticmethod(real.notebook_path)

    def write(ci: dict):
        (tmp_path / "profiles.yml").write_text(yaml.safe_dump({"ci": ci}))
        return tmp_path / "profiles.yml"
    monkeypatch.setattr(params, "get_chapter", lambda name: Fake)
    return write


@pytest.mark.parametrize("requires, message", [
    ({"gpu_memory_gb": "lots"}, "ci.requires.gpu_memory_gb must be a positive number, got 'lots'"),
    ({"minutes": -3}, "ci.requires.minutes must be a positive number, got -3"),
    ({"host_memory_gb": True}, "ci.requires.host_memory_gb must be a positive number, got True"),
    ({"gpu_memory_fraction": 1.5}, "ci.requires.gpu_memory_fraction must be a number in (0, 1], got 1.5"),
    ({"size_params": "lengths"}, "ci.requires.size_params must be a list of parameter names"),
    ({"gpu_mem": 8}, "ci.requires: unknown key 'gpu_mem'; valid: gpu_memory_gb,"),
    ([8, 16], "ci.requires must be a mapping of gpu_memory_gb,"),
])
def test_malformed_requires_is_one_line_naming_file_and_key(fake_profiles, requires, message):
    path = fake_profiles({"requires": requires})
    with pytest.raises(BookError) as err:
        params.resolve_all("decode-roofline", "ci")
    text = str(err.value)
    assert "\n" not in text and str(path) in text and message in text, text


def test_requires_is_not_a_notebook(fake_profiles):
    fake_profiles({"requires": {"minutes": 2, "host_memory_gb": 1}, "01-roofline": {}})
    plan = params.resolve_all("decode-roofline", "ci")
    assert [stem for stem, _ in plan] == ["01-roofline", "02-split-kv-kernel", "03-benchmark"]
    assert params.requires("decode-roofline", "ci")["minutes"] == 2.0


def _with_notebooks():
    return [ch for ch in chapters() if ch.notebooks]


@pytest.mark.parametrize("ch", _with_notebooks(), ids=lambda c: c.name)
def test_every_profile_declares_its_needs(ch):
    """Host memory and minutes for every profile; GPU memory wherever the profile's committed run
    used a GPU; size parameters that exist in the chapter's notebooks."""
    names = {k for stem in ch.notebooks for k in params.notebook_defaults(ch.notebook_path(stem))}
    for profile in params.profile_names(ch.name):
        need = params.requires(ch.name, profile)
        assert need["host_memory_gb"] and need["minutes"], (ch.name, profile)
        assert set(need["size_params"]) <= names, (ch.name, profile, set(need["size_params"]) - names)
        if profile == "ci":
            assert need["gpu_memory_gb"] is None, "ci runs on a CPU"
        for run in needs.measured(ch.name, profile):
            if "CPU" not in run["device"]:
                assert need["gpu_memory_gb"], (ch.name, profile, run["device"])


# -- the committed runs within their declared bounds -------------------------------------------------

@pytest.mark.parametrize("ch", _with_notebooks(), ids=lambda c: c.name)
def test_committed_runs_within_declared_bounds(ch):
    from msrbook import repo_root
    for profile in params.profile_names(ch.name):
        assert needs.exceeded(ch.name, profile, repo_root() / "data" / "results") == []


def _fake_record(wall_s, gpu_bytes=None, gpu_total=85 * GB, host_bytes=2 * GB):
    return {"wall_s": wall_s, "device": {"gpu": "NVIDIA H100 80GB HBM3", "gpu_count": 1, "gpu_memory_bytes": gpu_total},
            "peak_memory": {"gpu_allocated_bytes": gpu_bytes, "gpu_reserved_bytes": gpu_bytes, "host_rss_bytes": host_bytes}}


def _write_run(root, chapter, profile, records, sub=()):
    folder = root.joinpath(chapter, profile, *sub)
    folder.mkdir(parents=True)
    (folder / "provenance.json").write_text(json.dumps(records))


def test_a_run_past_its_bound_is_caught(tmp_path):
    need = params.requires("bitdecoding", "gpu")
    within = _fake_record(60.0, gpu_bytes=int(need["gpu_memory_gb"] * GB) - 1)
    _write_run(tmp_path, "bitdecoding", "gpu", {"01-quantize-and-pack": within}, sub=("NVIDIA_H100",))
    assert needs.exceeded("bitdecoding", "gpu", tmp_path) == []
    over_memory = _fake_record(60.0, gpu_bytes=int(need["gpu_memory_gb"] * GB) + 1)
    over_time = _fake_record(need["minutes"] * 60 + 1)
    over_host = _fake_record(60.0, host_bytes=int(need["host_memory_gb"] * GB) + 1)
    _write_run(tmp_path, "bitdecoding", "gpu", {"04-end-to-end": over_memory, "03-accuracy": over_time,
                                                "02-lowbit-kernel": over_host}, sub=("NVIDIA_H200",))
    found = needs.exceeded("bitdecoding", "gpu", tmp_path)
    assert len(found) == 3 and all("NVIDIA_H200" in line for line in found), found
    assert [line.split(": ", 1)[1].split(" ", 2)[:2] for line in found] == [
        ["peak", "GPU"], ["peak", "host"], ["wall", "time"]]


def test_a_profile_sized_to_its_gpu_is_bounded_by_its_fraction(tmp_path):
    need = params.requires("swarmthinkers", "gpu")
    total = 150 * GB
    fine = _fake_record(60.0, gpu_bytes=int(need["gpu_memory_fraction"] * total) - 1, gpu_total=total)
    _write_run(tmp_path, "swarmthinkers", "gpu", {"02-gpu-speed": fine}, sub=("h100-80gb-hbm3",))
    assert needs.exceeded("swarmthinkers", "gpu", tmp_path) == []
    (tmp_path / "swarmthinkers" / "gpu" / "h100-80gb-hbm3" / "provenance.json").write_text(json.dumps(
        {"02-gpu-speed": _fake_record(60.0, gpu_bytes=int(need["gpu_memory_fraction"] * total) + 1, gpu_total=total)}))
    assert len(needs.exceeded("swarmthinkers", "gpu", tmp_path)) == 1


def test_chapter_page_lines_show_declared_and_measured(tmp_path):
    _write_run(tmp_path, "bitdecoding", "gpu", {"04-end-to-end": _fake_record(120.0, gpu_bytes=41 * GB)},
               sub=("h100-80gb-hbm3",))
    lines = needs.markdown("bitdecoding", tmp_path)
    gpu_row = next(line for line in lines if line.startswith("| `gpu`"))
    need = params.requires("bitdecoding", "gpu")
    assert f"| {need['gpu_memory_gb']:g} GB |" in gpu_row and "| NVIDIA H100 80GB HBM3 | 41 GB | 2.0 GB | 2.0 min |" in gpu_row
    assert any(line.startswith("| `ci`") and "not yet measured" in line for line in lines)
