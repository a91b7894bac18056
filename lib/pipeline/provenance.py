"""Where a result came from: commit, machine, versions, parameters, times.

The commit and dirty flag come from git, or from MSRBOOK_COMMIT / MSRBOOK_DIRTY where the tree
was copied without .git (as on the remote GPU machine).
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
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"commit": sha, "dirty": bool(status)}


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info() -> dict:
    """The machine: GPU model/count/driver/CUDA when torch sees one, and the CPU."""
    info = {"cpu": _cpu_model(), "cpu_count": os.cpu_count(), "gpu": None, "gpu_count": 0,
            "driver": None, "cuda": None}
    try:
        import torch
    except ImportError:
        return info
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
        info["cuda"] = torch.version.cuda
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20)
            info["driver"] = out.stdout.strip().splitlines()[0] if out.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired, IndexError):
            pass
    return info


def versions() -> dict:
    v = {"python": sys.version.split()[0]}
    for dist in ("torch", "triton", "tilelang", "transformers", "numpy", "msrbook"):
        v[dist] = _version(dist)
    return v


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
