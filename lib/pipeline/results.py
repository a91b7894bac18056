"""The results API: how a number reaches the book.

Mode and results root come from the environment that `make` sets, never from parameters:

* MSRBOOK_MODE = compute | replay (default compute). Compute runs each expensive step and saves
  its table; replay loads it, so a figure is always drawn from saved data.
* MSRBOOK_RESULTS = the results root (default data/results); tables go to the set's folder
  (`layout`: <root>/<chapter>/ci/, or <root>/<chapter>/<profile>/<device>/ for gpu and paper),
  with claims.json and provenance.json beside them.
* MSRBOOK_DEVICE_KEY = the device `make reproduce` probed; a notebook whose own device differs
  refuses to run, so its results cannot land in another device's folder.
* MSRBOOK_REPLAY_PROFILE, MSRBOOK_REPLAY_DEVICE = which set replay reads (default: the best
  profile present, paper > gpu > ci, then its device measured most recently; `layout.replay_set`).

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
from . import layout
from . import provenance as prov
from .. import repo_root
from .params import check as check_params, notebook_defaults
from .registry import chapter as get_chapter, check_profile
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


def best_profile(chapter: str, root: Path | None = None) -> str | None:
    """The profile of the set the notebooks replay (None: no results)."""
    chosen = layout.replay_set(chapter, root or results_root())
    return chosen.profile if chosen else None


def _replay_choice(chapter: str, fallback: str) -> tuple[str, str | None]:
    """(profile, device key) replay reads: the environment's choice, else `layout.replay_set`."""
    env_profile = os.environ.get("MSRBOOK_REPLAY_PROFILE") or None
    env_key = os.environ.get("MSRBOOK_REPLAY_DEVICE") or None
    profile = check_profile(env_profile) if env_profile else None
    key = env_key if profile is None or profile in layout.PER_DEVICE else None  # ci has no device folders
    chosen = layout.replay_set(chapter, results_root(), profile, key)
    if chosen is None:  # nothing to read: _check_replayable names the folder it looked in
        return check_profile(env_profile or fallback), env_key
    return chosen.profile, chosen.key


def _compute_key(chapter: str, notebook: str, profile: str, device: dict) -> str | None:
    """The device folder a compute run writes (None for ci); refuses a device other than the one
    `make reproduce` probed, whose folder the runner swaps in."""
    if profile not in layout.PER_DEVICE:
        return None
    own, probed = layout.device_key(device), os.environ.get("MSRBOOK_DEVICE_KEY")
    if probed and probed != own:
        raise BookError(f"{chapter}/{notebook} runs on {own!r} but `make reproduce` probed {probed!r}: its results "
                        f"would land in the wrong device folder; run the chapter where the notebook sees one device")
    return own


class Run:
    """One notebook's run against one result set's folder (`layout`)."""

    def __init__(self, chapter: str, notebook: str, profile: str, params: dict, seeds: dict | None):
        ch = get_chapter(chapter)
        if notebook not in ch.notebooks:
            raise BookError(f"unknown notebook {notebook!r} in {chapter}; valid: {', '.join(ch.notebooks)}")
        self.chapter, self.notebook, self.mode = chapter, notebook, mode()
        self.params, self.seeds = dict(params), dict(seeds or {})
        if self.mode == "replay":
            self.profile, self.key = _replay_choice(chapter, profile)
            self.dir = layout.set_dir(results_root(), chapter, self.profile, self.key)
            self._check_replayable()
            self.record = read_json(self.dir / "provenance.json", {})[notebook]
        else:
            self.profile, device = check_profile(profile), prov.device_info()
            self.key = _compute_key(chapter, notebook, self.profile, device)
            self.dir = layout.set_dir(results_root(), chapter, self.profile, self.key)
            nb_path = get_chapter(chapter).notebook_path(notebook)
            if nb_path.exists():  # the same check the runner makes, for papermill used directly
                check_params(notebook_defaults(nb_path), {k: v for k, v in params.items() if k != "profile"},
                             f"{chapter}/{notebook}")
            self.record = {**prov.commit_info(), "profile": self.profile, "params": self.params,
                           "device": device, "versions": prov.versions(),
                           "packages": prov.packages(), "seeds": self.seeds, "start": prov.now(),
                           "end": None, "wall_s": None, "peak_memory": None, "tables": []}
            self._t0 = time.perf_counter()
            self._write_provenance()

    # -- replay ------------------------------------------------------------------------------
    def _check_replayable(self) -> None:
        if not (self.dir / "provenance.json").exists():
            where = f"{self.profile}/{self.key}" if self.key else self.profile
            raise BookError(f"no results for {self.chapter} ({where}) under {results_root()}; "
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
