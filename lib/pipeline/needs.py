"""What a profile needs of the machine: checked before `make reproduce` runs anything, and shown on
the chapter page beside what the committed runs measured.

The needs are declared per profile in notebooks/<chapter>/profiles.yml under `requires` (read and
validated by params.requires): config written by the chapter's author. What a run used is in its
provenance (wall_s, peak_memory). The check compares the declaration with this machine, so that a
reader with a smaller GPU is refused in one line before minutes of work, not out of memory midway.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .. import repo_root
from ..errors import BookError
from . import provenance as prov
from .layout import result_sets
from .params import profile_names, requires
from .registry import PROFILES, chapter as get_chapter
from .results import results_root

GB = 1e9  # declared needs are decimal GB, as GPU makers label memory


def probe() -> dict:
    """This machine: {'gpu': name or None, 'gpu_memory_bytes': int or None, 'host_memory_bytes':
    int or None}, as provenance records it. One small function, so that tests can stand in a
    device of any size."""
    info = prov.device_info()
    return {k: info[k] for k in ("gpu", "gpu_memory_bytes", "host_memory_bytes")}


def _gb(n_bytes: float) -> str:
    return f"{n_bytes / GB:.0f} GB" if n_bytes >= 10 * GB else f"{n_bytes / GB:.1f} GB"


def _shortfalls(need: dict, machine: dict) -> list[tuple[str, str]]:
    """[(what is needed, what this machine has)] for each declared memory this machine lacks.
    A probe that could not read host memory counts as enough: refusing on an unknown is worse."""
    out = []
    gpu = need["gpu_memory_gb"]
    if gpu is not None and (machine["gpu_memory_bytes"] or 0) < gpu * GB:
        have = (f"this {machine['gpu']} has {_gb(machine['gpu_memory_bytes'])}" if machine["gpu"]
                else "this machine has no CUDA GPU")
        out.append((f"{gpu:g} GB of GPU memory", have))
    host = need["host_memory_gb"]
    if host is not None and machine["host_memory_bytes"] is not None and machine["host_memory_bytes"] < host * GB:
        out.append((f"{host:g} GB of host memory", f"this host has {_gb(machine['host_memory_bytes'])}"))
    return out


def _smaller_fitting(chapter: str, profile: str, machine: dict) -> str | None:
    """The largest profile below `profile` whose declared needs this machine meets."""
    smaller = [p for p in profile_names(chapter) if PROFILES.index(p) < PROFILES.index(profile)]
    fitting = [p for p in smaller if not _shortfalls(requires(chapter, p), machine)]
    return fitting[-1] if fitting else None


def refusal(chapter: str, profile: str, need: dict, short: list[tuple[str, str]], machine: dict) -> str:
    """One line: what is missing, and what to run instead."""
    instead = []
    smaller = _smaller_fitting(chapter, profile, machine)
    if smaller:
        instead.append(f"run PROFILE={smaller}")
    if need["size_params"]:
        instead.append(f"shrink it with SET='name=value ...' (the parameters that set its size: "
                       f"{', '.join(need['size_params'])})")
    instead.append("pass FORCE=1 to try anyway")
    return (f"{chapter} ({profile}) needs {' and '.join(w for w, _ in short)}; {', '.join(h for _, h in short)}: "
            f"{', or '.join(instead)}")


def check(chapter: str, profile: str, overrides: dict | None = None, force: bool = False) -> None:
    """Refuse (BookError, one line) where this machine lacks the memory the profile declares.
    Skipped with force, and where SET overrides a size parameter: the declaration is for the
    profile as written, and a reader who shrank it is the one who knows whether it now fits."""
    need = requires(chapter, profile)
    if force or (need["gpu_memory_gb"] is None and need["host_memory_gb"] is None):
        return
    shrunk = sorted(set(overrides or {}) & set(need["size_params"]))
    if shrunk:
        print(f"{chapter} ({profile}): SET changes {', '.join(shrunk)}, so its declared memory needs "
              f"are not checked", file=sys.stderr)
        return
    machine = probe()
    short = _shortfalls(need, machine)
    if short:
        raise BookError(refusal(chapter, profile, need, short, machine))


# -- what the committed runs measured -------------------------------------------------------------

def measured(chapter: str, profile: str, root: Path | None = None) -> list[dict]:
    """One entry per provenance.json under <root>/<chapter>/<profile>/ (one per GPU model where
    results are kept per model): {'path', 'device', 'wall_s' (sum over its notebooks, None unless
    every one recorded it), 'gpu_peak_bytes' and 'host_peak_bytes' (the largest over its notebooks,
    None where none recorded it)}. GPU peak is torch's reserved memory: what the process held."""
    out = []
    for rs in result_sets(chapter, root or results_root()):
        if rs.profile != profile:
            continue
        path, records = rs.path / "provenance.json", list(rs.provenance().values())
        walls = [r.get("wall_s") for r in records]
        peaks = [r.get("peak_memory") or {} for r in records]
        gpu = [p["gpu_reserved_bytes"] for p in peaks if p.get("gpu_reserved_bytes") is not None]
        host = [p["host_rss_bytes"] for p in peaks if p.get("host_rss_bytes") is not None]
        device = (records[0].get("device") if records else None) or {}
        out.append({"path": path, "device": prov.device_label(device), "gpu_total_bytes": device.get("gpu_memory_bytes"),
                    "wall_s": sum(walls) if walls and None not in walls else None,
                    "gpu_peak_bytes": max(gpu) if gpu else None, "host_peak_bytes": max(host) if host else None})
    return out


def gpu_bound_bytes(need: dict, gpu_total_bytes: int | None) -> float | None:
    """The most GPU memory a run may use: gpu_memory_gb, or where the profile sizes itself to the
    GPU, that fraction of the run's GPU if larger."""
    bounds = [need["gpu_memory_gb"] * GB] if need["gpu_memory_gb"] is not None else []
    if need["gpu_memory_fraction"] is not None and gpu_total_bytes:
        bounds.append(need["gpu_memory_fraction"] * gpu_total_bytes)
    return max(bounds) if bounds else None


def exceeded(chapter: str, profile: str, root: Path | None = None) -> list[str]:
    """One line per recorded run that went past the profile's declared bounds (GPU memory, host
    memory, minutes); a value a run did not record is not checked, a bound not declared is zero."""
    need, out = requires(chapter, profile), []
    for run in measured(chapter, profile, root):
        gpu_bound = gpu_bound_bytes(need, run["gpu_total_bytes"])
        checks = [("peak GPU memory", run["gpu_peak_bytes"], gpu_bound, _gb),
                  ("peak host memory", run["host_peak_bytes"], need["host_memory_gb"] and need["host_memory_gb"] * GB, _gb),
                  ("wall time", run["wall_s"], need["minutes"] and need["minutes"] * 60, lambda s: f"{s / 60:.1f} min")]
        for what, value, bound, fmt in checks:
            if value is not None and (bound is None or value > bound):
                declared = fmt(bound) if bound is not None else "nothing declared"
                out.append(f"{run['path']}: {what} {fmt(value)} exceeds the declared {declared} ({profile}.requires)")
    return out


def _declared_cells(need: dict) -> list[str]:
    gpu = f"{need['gpu_memory_gb']:g} GB" if need["gpu_memory_gb"] is not None else "none"
    if need["gpu_memory_fraction"] is not None:
        gpu += f", up to {need['gpu_memory_fraction']:.0%} of a larger GPU"
    host = f"{need['host_memory_gb']:g} GB" if need["host_memory_gb"] is not None else "not stated"
    return [gpu, host, f"{need['minutes']:g} min" if need["minutes"] is not None else "not stated"]


def markdown(chapter: str, root: Path | None = None) -> list[str]:
    """Markdown lines for the chapter page: per profile, the declared needs, and per run found the
    device, peak GPU and host memory and the total wall time where recorded."""
    path = get_chapter(chapter).folder / "profiles.yml"
    lines = [f"What each profile needs, as declared in `{path.relative_to(repo_root())}`, "
             "and what the committed runs used:", "",
             "| profile | GPU memory | host memory | time | measured on | peak GPU memory | peak host memory | time taken |",
             "|---|---|---|---|---|---|---|---|"]
    for profile in profile_names(chapter):
        need = requires(chapter, profile)
        runs = measured(chapter, profile, root)
        for run in runs or [None]:
            if run is None:
                got = ["not yet measured", "", "", ""]
            else:
                got = [run["device"],
                       _gb(run["gpu_peak_bytes"]) if run["gpu_peak_bytes"] is not None else "not recorded",
                       _gb(run["host_peak_bytes"]) if run["host_peak_bytes"] is not None else "not recorded",
                       f"{run['wall_s'] / 60:.1f} min" if run["wall_s"] is not None else "not recorded"]
            lines.append("| " + " | ".join([f"`{profile}`", *_declared_cells(need), *got]) + " |")
    return lines
