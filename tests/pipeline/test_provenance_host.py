"""Provenance names the host: CPU model, frequency and flags as the OS reports them, memory, peak
memory at finish, and every installed package; each probe degrades to None, never to an error."""

import builtins
import importlib.util
import json
import sys

import pytest

from msrbook.pipeline import provenance, results

HOST_KEYS = {"cpu": str, "cpu_count": int, "cpu_threads": int, "host_memory_bytes": int, "gpu_count": int}
MAYBE = {"cpu_id": str, "cpu_mhz": float, "cpu_freq_mhz": dict, "cpufreq_sysfs_khz": dict, "cpu_flags": str,
         "cpu_cores": int, "gpu": str, "gpu_memory_bytes": int, "driver": str, "cuda": str}


def _types_ok(info: dict) -> None:
    for key, kind in HOST_KEYS.items():
        assert isinstance(info[key], kind), (key, info[key])
    for key, kind in MAYBE.items():
        assert key in info and (info[key] is None or isinstance(info[key], kind)), (key, info[key])


def test_device_info_fields_and_types_here():
    info = provenance.device_info()
    _types_ok(info)
    if open("/proc/cpuinfo").read().count("flags"):  # Linux: the whole flags line, as the OS wrote it
        assert info["cpu_flags"] and " " in info["cpu_flags"] and info["cpu_id"].startswith("family ")
        assert info["cpu_mhz"] is None or info["cpu_mhz"] > 0


def test_without_proc_psutil_or_torch_every_field_is_none(monkeypatch):
    real_import = builtins.__import__

    def no_psutil_or_torch(name, *args, **kwargs):
        if name.split(".")[0] in ("psutil", "torch"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_psutil_or_torch)
    monkeypatch.setattr(provenance, "_read", lambda path: None)  # no /proc, no /sys
    info = provenance.device_info()
    for key in ("cpu_id", "cpu_mhz", "cpu_freq_mhz", "cpufreq_sysfs_khz", "cpu_flags", "cpu_cores",
                "host_memory_bytes", "gpu", "gpu_memory_bytes"):
        assert info[key] is None, key
    assert isinstance(info["cpu"], str) and info["cpu_threads"] == info["cpu_count"]
    monkeypatch.setitem(sys.modules, "torch", None)  # as where torch is not installed
    assert provenance.peak_memory()["gpu_reserved_bytes"] is None


def test_package_list_is_every_distribution_sorted():
    pk = provenance.packages()
    assert list(pk) == sorted(pk, key=str.lower)
    assert all(isinstance(v, str) and v for v in pk.values())
    for dist in ("torch", "numba", "psutil", "msrbook"):
        if importlib.util.find_spec(dist) is not None:
            assert dist in pk, dist
    assert set(provenance.versions()) == {"python", "torch", "triton", "tilelang", "transformers", "numpy", "msrbook"}


def test_run_records_host_packages_and_peaks(tmp_path, monkeypatch):
    monkeypatch.setenv("MSRBOOK_RESULTS", str(tmp_path))
    monkeypatch.setenv("MSRBOOK_MODE", "compute")
    run = results.start("decode-roofline", "01-roofline", "ci", dict(batches=[1], lengths=[8]))
    path = tmp_path / "decode-roofline" / "ci" / "provenance.json"
    before = json.loads(path.read_text())["01-roofline"]
    assert before["peak_memory"] is None and "torch" in before["packages"]
    run.finish()
    rec = json.loads(path.read_text())["01-roofline"]
    _types_ok(rec["device"])
    peak = rec["peak_memory"]
    assert set(peak) == {"gpu_allocated_bytes", "gpu_reserved_bytes", "host_rss_bytes"}
    assert isinstance(peak["host_rss_bytes"], int) and peak["host_rss_bytes"] > 10 * 2**20  # a Python with pandas
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        assert peak["gpu_allocated_bytes"] is None and peak["gpu_reserved_bytes"] is None
    else:
        assert peak["gpu_reserved_bytes"] >= peak["gpu_allocated_bytes"] >= 0


@pytest.mark.gpu
def test_peak_gpu_memory_is_recorded_once_cuda_is_used():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    x = torch.empty(64 * 2**20, dtype=torch.uint8, device="cuda")  # 64 MiB
    peak = provenance.peak_memory()
    assert peak["gpu_allocated_bytes"] >= x.numel() and peak["gpu_reserved_bytes"] >= peak["gpu_allocated_bytes"]


def test_dirty_flag_counts_code_not_results(tmp_path, monkeypatch):
    """A second chapter reproduced before the first one's new results are committed is not dirty for
    that; an uncommitted code edit is."""
    import subprocess

    from msrbook.pipeline import provenance as prov

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "data" / "results").mkdir(parents=True)
    (tmp_path / "data" / "results" / "claims.json").write_text("[]\n")
    (tmp_path / "a.py").write_text("x = 1\n")
    git("init", "-q")
    git("-c", "user.email=t@t", "-c", "user.name=t", "add", ".")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init")
    monkeypatch.setattr(prov, "repo_root", lambda: tmp_path)
    monkeypatch.delenv("MSRBOOK_COMMIT", raising=False)
    assert prov.commit_info()["dirty"] is False
    (tmp_path / "data" / "results" / "claims.json").write_text("[1]\n")
    assert prov.commit_info()["dirty"] is False
    (tmp_path / "a.py").write_text("x = 2\n")
    assert prov.commit_info()["dirty"] is True
