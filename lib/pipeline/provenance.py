"""Where a result came from: commit, machine, versions, parameters, times, peak memory.

The commit and dirty flag come from git, or from MSRBOOK_COMMIT / MSRBOOK_DIRTY where the tree
was copied without .git (as on the remote GPU machine). The machine is described as the OS reports
it (CPU model, frequency, flags, cores, memory): two GPU hosts can name the same CPU model string
("Intel(R) Xeon(R) Processor") and still differ 1.68x in a serial CPU baseline, so the flags line
and the frequencies are kept whole. Every probe degrades to None where the OS, psutil or torch
does not answer, so a record can always be written.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata

from .. import repo_root


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=repo_root(), capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def commit_info() -> dict:
    """{'commit': sha or None, 'dirty': bool or None}; environment first, then git."""
    env_commit = os.environ.get("MSRBOOK_COMMIT")
    if env_commit:
        dirty = os.environ.get("MSRBOOK_DIRTY", "")
        return {"commit": env_commit, "dirty": dirty.lower() in ("1", "true", "yes") if dirty else None}
    sha = _git("rev-parse", "HEAD")
    if sha is None:
        return {"commit": None, "dirty": None}
    # Results are data, not code: a chapter reproduced after another, whose new results are not yet
    # committed, is not "dirty" for that (only tracked code and config count).
    status = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)data/results")
    return {"commit": sha, "dirty": bool(status)}


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _proc_cpuinfo() -> dict[str, str]:
    """The first processor's block of /proc/cpuinfo, key -> value ({} where there is none)."""
    out: dict[str, str] = {}
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        if not line.strip():
            if out:
                break  # every processor repeats the block; the first one is enough
            continue
        key, _, value = line.partition(":")
        out.setdefault(key.strip(), value.strip())
    return out


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _psutil():
    try:
        import psutil
    except ImportError:
        return None
    return psutil


def _cpufreq_sysfs() -> dict | None:
    """cpu0's cpufreq files in kHz (absent on most VMs, whose hypervisor hides frequency scaling)."""
    base = "/sys/devices/system/cpu/cpu0/cpufreq/"
    names = ("scaling_cur_freq", "scaling_min_freq", "scaling_max_freq", "cpuinfo_max_freq", "scaling_governor")
    found = {n: _read(base + n) for n in names}
    if all(v is None for v in found.values()):
        return None
    return {n: (v.strip() if n == "scaling_governor" else _number(v)) if v is not None else None
            for n, v in found.items()}


def _cpu_details(cpuinfo: dict) -> dict:
    """Frequency (three sources, as each reports it), the flags line, cores and threads."""
    ps = _psutil()
    freq = None
    if ps is not None:
        try:
            f = ps.cpu_freq()
            freq = {"current": f.current, "min": f.min, "max": f.max} if f else None
        except (OSError, NotImplementedError, AttributeError):
            freq = None
    ident = [cpuinfo.get(k) for k in ("cpu family", "model", "stepping")]
    return {"cpu_id": "family {} model {} stepping {}".format(*ident) if all(ident) else None,
            "cpu_mhz": _number(cpuinfo.get("cpu MHz")), "cpu_freq_mhz": freq,
            "cpufreq_sysfs_khz": _cpufreq_sysfs(), "cpu_flags": cpuinfo.get("flags"),
            "cpu_cores": ps.cpu_count(logical=False) if ps is not None else None,
            "cpu_threads": os.cpu_count()}


def host_memory_total() -> int | None:
    """Host memory in bytes: psutil, else /proc/meminfo, else None."""
    ps = _psutil()
    if ps is not None:
        return int(ps.virtual_memory().total)
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024  # the file says kB and means KiB
    return None


def peak_memory() -> dict:
    """This process's peaks so far: GPU bytes allocated and reserved by torch's caching allocator
    (None unless this process initialised CUDA) and host resident set size (None without
    `resource`, e.g. on Windows). Checked without importing torch: a notebook that never used it
    should not pay for the import at the end."""
    out = {"gpu_allocated_bytes": None, "gpu_reserved_bytes": None, "host_rss_bytes": None}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        out["gpu_allocated_bytes"] = int(torch.cuda.max_memory_allocated())
        out["gpu_reserved_bytes"] = int(torch.cuda.max_memory_reserved())
    try:
        import resource
    except ImportError:
        return out
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out["host_rss_bytes"] = int(rss) * (1 if sys.platform == "darwin" else 1024)  # bytes on macOS, KiB on Linux
    return out


def _cpu_model(cpuinfo: dict) -> str:
    return cpuinfo.get("model name") or platform.processor() or platform.machine()


def device_info() -> dict:
    """The machine: GPU model/count/memory/driver/CUDA when torch sees one, the CPU and host."""
    cpuinfo = _proc_cpuinfo()
    info = {"cpu": _cpu_model(cpuinfo), "cpu_count": os.cpu_count(), **_cpu_details(cpuinfo),
            "host_memory_bytes": host_memory_total(), "gpu": None, "gpu_count": 0,
            "gpu_memory_bytes": None, "driver": None, "cuda": None}
    try:
        import torch
    except ImportError:
        return info
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
        info["gpu_memory_bytes"] = torch.cuda.get_device_properties(0).total_memory
        info["cuda"] = torch.version.cuda
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20)
            info["driver"] = out.stdout.strip().splitlines()[0] if out.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired, IndexError):
            pass
    return info


def versions() -> dict:
    """The short list the book shows; `packages()` has every installed distribution."""
    v = {"python": sys.version.split()[0]}
    for dist in ("torch", "triton", "tilelang", "transformers", "numpy", "msrbook"):
        v[dist] = _version(dist)
    return v


def packages() -> dict[str, str]:
    """Every installed distribution, name -> version, sorted by name. Where one name is installed
    twice on sys.path, the first wins, as it is the one `import` finds."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"] if dist.metadata else None
        if name:
            found.setdefault(name, dist.version)
    return dict(sorted(found.items(), key=lambda kv: kv[0].lower()))


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def device_label(device: dict | None) -> str:
    """'NVIDIA H200' or 'CPU (model, N cores)': the words a caption uses."""
    if not device:
        return "unknown device"
    if device.get("gpu"):
        n = device.get("gpu_count") or 1
        return device["gpu"] if n == 1 else f"{n}x {device['gpu']}"
    return f"CPU ({device.get('cpu')}, {device.get('cpu_count')} cores)"
