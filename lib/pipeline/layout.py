"""Where results live, and which set the notebooks replay.

    <root>/<chapter>/ci/                  the ci profile: one flat folder (it always runs on a CPU)
    <root>/<chapter>/<profile>/<device>/  gpu and paper: one folder per device, e.g. gpu/h200/

A speed ratio can differ a lot between GPU models, so every GPU model a chapter ran on keeps its
own results: a run on an H200 replaces only `gpu/h200/`. <device> is `device_key` of the
provenance `device` record; compute, replay, `make list` and the book all call it, so they agree.

One set (a profile, and a device where the profile has them) is what the notebooks replay. The
rule never looks at the numbers: the best profile (paper > gpu > ci), then among its devices the
one measured most recently (latest provenance `end`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from . import provenance
from .registry import PROFILES
from ..errors import BookError

PER_DEVICE = ("gpu", "paper")  # profiles whose results are kept per device
_VENDOR = re.compile(r"^nvidia\s+", re.IGNORECASE)  # every GPU here is NVIDIA's: the word names nothing


def device_key(device: dict | None) -> str:
    """A folder name for a provenance `device` record: 'NVIDIA H100 80GB HBM3' -> 'h100-80gb-hbm3',
    eight of them -> '8x-h100-80gb-hbm3', no GPU -> 'cpu'."""
    if not isinstance(device, dict):
        raise BookError(f"a provenance record has no device (got {device!r}), so its results have no device folder")
    gpu = device.get("gpu")
    if not gpu:
        return "cpu"
    slug = re.sub(r"[^a-z0-9]+", "-", _VENDOR.sub("", gpu.strip()).lower()).strip("-")
    if not slug:
        raise BookError(f"GPU name {gpu!r} gives no device folder name")
    n = device.get("gpu_count") or 1
    return slug if n == 1 else f"{n}x-{slug}"


def probe() -> str:
    """This machine's device key (what a gpu or paper run here writes under)."""
    return device_key(provenance.device_info())


def set_dir(root: Path, chapter: str, profile: str, key: str | None) -> Path:
    """The folder of one result set. A per-device profile without a key gives the profile folder
    (only for messages: no results are written there)."""
    base = Path(root) / chapter / profile
    return base / key if profile in PER_DEVICE and key else base


@dataclass(frozen=True)
class ResultSet:
    profile: str
    key: str | None  # the device folder; None for the flat ci profile
    path: Path

    @property
    def folder(self) -> str:
        """'gpu/h200' or 'ci': the set's path under <root>/<chapter>/."""
        return f"{self.profile}/{self.key}" if self.key else self.profile

    def provenance(self) -> dict:
        return json.loads((self.path / "provenance.json").read_text())

    def last_end(self) -> datetime:
        """The latest `end` among its notebooks' records (unfinished ones count as never)."""
        never = datetime.min.replace(tzinfo=timezone.utc)
        ends = [datetime.fromisoformat(r["end"]) for r in self.provenance().values() if r.get("end")]
        return max(ends, default=never)


def _flat_layout_error(folder: Path) -> BookError:
    records = json.loads((folder / "provenance.json").read_text()).values()
    keys = sorted({device_key(r.get("device")) for r in records}) or ["<device>"]
    return BookError(f"{folder}/provenance.json is in the old flat layout; its files belong in "
                     f"{folder}/{keys[0]}/ (one folder per device: `git mv` them there)")


def result_sets(chapter: str, root: Path) -> list[ResultSet]:
    """Every set of a chapter that has a provenance.json: best profile first, devices by name.
    Hidden folders (staging, a swap in progress) are not sets."""
    out = []
    for profile in reversed(PROFILES):
        base = Path(root) / chapter / profile
        if profile not in PER_DEVICE:
            if (base / "provenance.json").exists():
                out.append(ResultSet(profile, None, base))
            continue
        if (base / "provenance.json").exists():
            raise _flat_layout_error(base)
        if base.is_dir():
            out += [ResultSet(profile, d.name, d) for d in sorted(base.iterdir())
                    if d.is_dir() and not d.name.startswith(".") and (d / "provenance.json").exists()]
    return out


def replay_set(chapter: str, root: Path, profile: str | None = None, key: str | None = None) -> ResultSet | None:
    """The one set the notebooks replay: the best profile (or the one given), then the device
    measured most recently (or the one given); ties go to the device name, so the rule is fixed."""
    sets = [s for s in result_sets(chapter, root)
            if (profile is None or s.profile == profile) and (key is None or s.key == key)]
    if not sets:
        return None
    best = [s for s in sets if s.profile == sets[0].profile]
    return max(best, key=lambda s: (s.last_end(), s.key or ""))
