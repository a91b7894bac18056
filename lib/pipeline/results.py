"""The results API: how a number reaches the book.

Mode and results root come from the environment that `make` sets, never from parameters:

* MSRBOOK_MODE = compute | replay (default compute). Compute runs each expensive step and saves
  its table; replay loads it, so a figure is always drawn from saved data.
* MSRBOOK_RESULTS = the results root (default data/results); tables go to
  <root>/<chapter>/<profile>/<name>.csv, with claims.json and provenance.json beside them.
* MSRBOOK_REPLAY_PROFILE = which profile replay reads (default: the best one present,
  paper > gpu > ci).

    run = results.start("decode-roofline", "03-benchmark", profile, params, seeds={"torch": 0})
    df = run.table("bandwidth", lambda: measure(...))      # DataFrame, saved or loaded
    run.claim("dense_decode_fraction_of_best_backend", ratio)
    run.finish()

Every write is atomic (temporary file, then rename), so a crash never leaves half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

import pandas as pd

from . import claims as claims_mod
from . import provenance as prov
from .. import repo_root
from .params import check as check_params, notebook_defaults
from .registry import PROFILES, chapter as get_chapter, check_profile
from ..errors import BookError

MODES = ("compute", "replay")


def mode() -> str:
    m = os.environ.get("MSRBOOK_MODE", "compute")
    if m not in MODES:
        raise BookError(f"MSRBOOK_MODE={m!r}; valid modes: {', '.join(MODES)}")
    return m


def results_root() -> Path:
    root = os.environ.get("MSRBOOK_RESULTS")
    return Path(root) if root else repo_root() / "data" / "results"


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path, default):
    return json.loads(path.read_text()) if path.exists() else default


def available_profiles(chapter: str, root: Path | None = None) -> list[str]:
    """Profiles with results for a chapter, cheapest first."""
    base = (root or results_root()) / chapter
    return [p for p in PROFILES if (base / p / "provenance.json").exists()]


def best_profile(chapter: str, root: Path | None = None) -> str | None:
    found = available_profiles(chapter, root)
    return found[-1] if found else None


class Run:
    """One notebook's run against one chapter/profile folder."""

    def __init__(self, chapter: str, notebook: str, profile: str, params: dict, seeds: dict | None):
        ch = get_chapter(chapter)
        if notebook not in ch.notebooks:
            raise BookError(f"unknown notebook {notebook!r} in {chapter}; valid: {', '.join(ch.notebooks)}")
        self.chapter, self.notebook, self.mode = chapter, notebook, mode()
        if self.mode == "replay":
            profile = os.environ.get("MSRBOOK_REPLAY_PROFILE") or best_profile(chapter) or profile
        self.profile = check_profile(profile)
        self.dir = results_root() / chapter / self.profile
        self.params, self.seeds = dict(params), dict(seeds or {})
        if self.mode == "replay":
            self._check_replayable()
            self.record = read_json(self.dir / "provenance.json", {})[notebook]
        else:
            nb_path = get_chapter(chapter).notebook_path(notebook)
            if nb_path.exists():  # the same check the runner makes, for papermill used directly
                check_params(notebook_defaults(nb_path), {k: v for k, v in params.items() if k != "profile"},
                             f"{chapter}/{notebook}")
            self.record = {**prov.commit_info(), "profile": self.profile, "params": self.params,
                           "device": prov.device_info(), "versions": prov.versions(),
                           "packages": prov.packages(), "seeds": self.seeds, "start": prov.now(),
                           "end": None, "wall_s": None, "peak_memory": None, "tables": []}
            self._t0 = time.perf_counter()
            self._write_provenance()

    # -- replay ------------------------------------------------------------------------------
    def _check_replayable(self) -> None:
        if not (self.dir / "provenance.json").exists():
            raise BookError(f"no results for {self.chapter} ({self.profile}) under {results_root()}; "
                            f"run `make reproduce CHAPTER={self.chapter}` first")
        if self.notebook not in read_json(self.dir / "provenance.json", {}):
            raise BookError(f"{self.dir}/provenance.json has no record of notebook {self.notebook!r}; "
                            f"run `make reproduce CHAPTER={self.chapter} PROFILE={self.profile}`")

    # -- tables ------------------------------------------------------------------------------
    def table(self, name: str, compute_fn: Callable[[], "pd.DataFrame | dict"]) -> pd.DataFrame:
        """Compute (and save) or load the table `name`; always returns what is on disk."""
        path = self.dir / f"{name}.csv"
        if self.mode == "compute":
            df = compute_fn()
            df = df if isinstance(df, pd.DataFrame) else pd.DataFrame(df)
            write_atomic(path, df.to_csv(index=False))
            if name not in self.record["tables"]:
                self.record["tables"].append(name)
            self._write_provenance()
        elif not path.exists():
            raise BookError(f"table {name!r} missing from {self.dir}; rerun `make reproduce CHAPTER={self.chapter} PROFILE={self.profile}`")
        return pd.read_csv(path)

    # -- claims ------------------------------------------------------------------------------
    def claim(self, claim_id: str, value, note: str = "", interval=None) -> dict:
        """Record a claim (compute) or return the recorded one (replay), its status always under the
        current rule in data/paper. value None needs a note; `interval` [low, high] (e.g. a bootstrap
        CI) is stored beside a scalar value and is required by a 'difference' rule."""
        path = self.dir / "claims.json"
        if self.mode == "replay":
            for c in read_json(path, []):
                if c["id"] == claim_id:
                    return claims_mod.rejudged(self.chapter, c, self.on_gpu)
            raise BookError(f"claim {claim_id!r} not recorded in {path}")
        entry = claims_mod.new_entry(self.chapter, claim_id, self.notebook, value, note, interval, self.on_gpu)
        others = [c for c in read_json(path, []) if c["id"] != claim_id]
        write_atomic(path, json.dumps(others + [entry], indent=2) + "\n")
        return entry

    # -- provenance --------------------------------------------------------------------------
    def _write_provenance(self) -> None:
        path = self.dir / "provenance.json"
        allp = read_json(path, {})
        allp[self.notebook] = self.record
        write_atomic(path, json.dumps(allp, indent=2, sort_keys=True) + "\n")

    def finish(self) -> None:
        if self.mode == "compute":
            self.record["end"] = prov.now()
            self.record["wall_s"] = round(time.perf_counter() - self._t0, 3)
            self.record["peak_memory"] = prov.peak_memory()  # a lower bound where the notebook reset torch's peak stats
            self._write_provenance()

    @property
    def device(self) -> str:
        return prov.device_label(self.record.get("device"))

    @property
    def on_gpu(self) -> bool:
        return bool((self.record.get("device") or {}).get("gpu"))

    def caption(self, text: str) -> str:
        """A figure caption that names the profile and device of its data."""
        return f"{text} Data: profile `{self.profile}`, {self.device}."

    def __repr__(self) -> str:
        return f"Run({self.chapter}/{self.notebook}, profile={self.profile}, mode={self.mode}, device={self.device})"


def start(chapter: str, notebook: str, profile: str, params: dict, seeds: dict | None = None) -> Run:
    """Open one notebook's run. `params` are the notebook's parameters (validated by the runner)."""
    return Run(chapter, notebook, profile, params, seeds)
