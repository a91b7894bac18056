"""Run a chapter's notebooks with papermill: `reproduce` (compute, staged) and `replay`.

reproduce: results go to a staging folder beside the chapter's results and are swapped in only
when every notebook succeeded; a failure names the notebook and the cell and leaves the previous
results whole. gpu and paper results are kept per device (`layout`): the device is probed once
here and passed to the notebooks (MSRBOOK_DEVICE_KEY), and only its folder is swapped, so a run
on an H200 never touches the H100's results. With `only`, just those notebooks run and the others'
results (of the same device) are kept. replay: loads one committed result set (the book build
uses it). Executed notebooks are kept under
_build/executed/<chapter>/<profile>/ (or the folder given) for inspection.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm

from .. import repo_root
from ..errors import BookError
from . import layout, needs
from .params import resolve_all
from .registry import chapter as get_chapter, check_profile
from .results import read_json, results_root, write_atomic


def default_profile() -> str:
    try:
        import torch
        return "gpu" if torch.cuda.is_available() else "ci"
    except ImportError:
        return "ci"


def _rel(p: Path) -> Path:
    return p.relative_to(repo_root()) if p.is_relative_to(repo_root()) else p


def _failing_cell_index(executed: Path) -> int | None:
    """The index (0-based, among all cells) of the first cell whose output is an error."""
    import nbformat
    try:
        nb = nbformat.read(executed, as_version=4)
    except (OSError, ValueError):
        return None
    for i, cell in enumerate(nb.cells):
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            return i
    return None


def _one_line(err: Exception, nb: Path, executed: Path) -> str:
    """One line naming the notebook and the failing cell, from a papermill error."""
    ename = getattr(err, "ename", type(err).__name__)
    evalue = str(getattr(err, "evalue", err)).strip().splitlines()
    idx = _failing_cell_index(executed)
    where = f"cell {idx}" if idx is not None else "a cell"
    if getattr(err, "exec_count", None) is not None:
        where += f" (execution count {err.exec_count})"
    return f"{_rel(nb)} failed in {where}: {ename}: {evalue[-1] if evalue else ''} [executed copy: {_rel(executed)}]"


@contextlib.contextmanager
def _environ(**values: str):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def execute(chapter: str, plan: list[tuple[str, dict]], out_dir: Path, timeout_s: int, label: str) -> None:
    """Run each (stem, params) of `plan` in order; raise BookError naming the first failing cell."""
    import papermill as pm

    ch = get_chapter(chapter)
    out_dir.mkdir(parents=True, exist_ok=True)
    bar = tqdm(plan, desc=f"{chapter} [{label}]", unit="notebook", file=sys.stderr)
    for stem, params in bar:
        bar.set_postfix_str(stem)
        src, out = ch.notebook_path(stem), out_dir / f"{stem}.ipynb"
        t0 = time.perf_counter()
        try:
            pm.execute_notebook(str(src), str(out), parameters=params, kernel_name="python3",
                                progress_bar=False, cwd=str(ch.folder), execution_timeout=timeout_s)
        except Exception as err:  # papermill wraps the cell's exception
            raise BookError(_one_line(err, src, out)) from None
        tqdm.write(f"  {stem}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)


def _swap_in(stage: Path, target: Path) -> None:
    """Replace target with stage; the old folder is removed only after the new one is in place."""
    old = target.with_name(f".old-{target.name}-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(stage, target)
    shutil.rmtree(old, ignore_errors=True)


def _seed_stage(target: Path, produced: Path, only: list[str]) -> None:
    """Copy the profile's results into the stage, less everything the notebooks in `only` recorded
    last time (their tables, claims and provenance), so that what they record now replaces it and
    the other notebooks' results stay as they were. Refuses a table that another notebook records
    too: rerunning one would silently change what the other shows."""
    prov = read_json(target / "provenance.json", {})
    if not prov:
        raise BookError(f"no results under {_rel(target)} to update: run the whole chapter once (without ONLY) first")
    mine = {t for stem in only for t in prov.get(stem, {}).get("tables", [])}
    shared = sorted(t for stem, rec in prov.items() if stem not in only for t in rec.get("tables", []) if t in mine)
    if shared:
        raise BookError(f"table(s) {', '.join(shared)} are recorded by a notebook in ONLY and by one outside it: "
                        f"rerun the whole chapter")
    shutil.copytree(target, produced)
    for t in mine:
        (produced / f"{t}.csv").unlink(missing_ok=True)
    keep = [c for c in read_json(produced / "claims.json", []) if c.get("notebook") not in only]
    write_atomic(produced / "claims.json", json.dumps(keep, indent=2) + "\n")
    write_atomic(produced / "provenance.json",
                 json.dumps({k: v for k, v in prov.items() if k not in only}, indent=2, sort_keys=True) + "\n")


def _check_recorded(produced: Path, plan: list[tuple[str, dict]], label: str) -> None:
    """Every notebook that ran left its record in the folder about to be swapped in. A notebook
    that saw another device than the probed one writes under that device's folder instead (Run
    refuses first where MSRBOOK_DEVICE_KEY reaches it); nothing is swapped in then."""
    prov = read_json(produced / "provenance.json", {})
    missing = [stem for stem, _ in plan if stem not in prov]
    if missing:
        raise BookError(f"{', '.join(missing)} recorded no results under {label} (a notebook on another device "
                        f"writes under that device's folder); nothing was swapped in")


def reproduce(chapter: str, profile: str | None = None, overrides: dict | None = None,
              timeout_s: int = 3600, only: list[str] | None = None, force: bool = False) -> Path:
    """Run the chapter's notebooks in compute mode and swap their results in, all or nothing.
    only: rerun just these notebooks (stems) and keep the others' committed results, each
    notebook's provenance naming its own commit (saves GPU time when one notebook changed).
    force: run even where this machine lacks the memory the profile declares."""
    ch = get_chapter(chapter)
    profile = check_profile(profile or default_profile())
    needs.check(chapter, profile, overrides, force)  # refuse a too-small machine before anything runs
    if not ch.notebooks:
        raise BookError(f"chapter {chapter!r} has no notebooks yet")
    plan = resolve_all(chapter, profile, overrides)  # every notebook's parameters, checked first
    if only:
        unknown = [s for s in only if s not in ch.notebooks]
        if unknown:
            raise BookError(f"{chapter} has no notebook {', '.join(unknown)}; its notebooks: {', '.join(ch.notebooks)}")
        plan = [(stem, params) for stem, params in plan if stem in only]
    key = layout.probe() if profile in layout.PER_DEVICE else None  # once: every notebook must agree
    target = layout.set_dir(results_root(), chapter, profile, key)
    stage = results_root() / chapter / f".stage-{profile}-{os.getpid()}"
    produced = layout.set_dir(stage, chapter, profile, key)
    shutil.rmtree(stage, ignore_errors=True)
    env = {"MSRBOOK_MODE": "compute", "MSRBOOK_RESULTS": str(stage), "MSRBOOK_DEVICE_KEY": key or ""}
    if profile == "ci":
        env["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS", "1")  # ~2x faster on 2 cores
    label = f"{profile}/{key}" if key else profile
    try:
        if only:
            _seed_stage(target, produced, list(only))
        with _environ(**env):
            execute(chapter, plan, repo_root() / "_build" / "executed" / chapter / profile, timeout_s, label)
        _check_recorded(produced, plan, label)
        target.parent.mkdir(parents=True, exist_ok=True)
        _swap_in(produced, target)
        return target
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def replay(chapter: str, profile: str | None = None, out_dir: Path | None = None,
           timeout_s: int = 1800, device: str | None = None) -> Path:
    """Execute a chapter's notebooks against one saved result set: `layout.replay_set`'s choice,
    narrowed to the profile and device given."""
    ch = get_chapter(chapter)
    if not ch.notebooks:
        raise BookError(f"chapter {chapter!r} has no notebooks yet")
    profile = check_profile(profile) if profile else None
    chosen = layout.replay_set(chapter, results_root(), profile, device)
    if chosen is None:
        asked = "/".join(x for x in (profile, device) if x)
        raise BookError(f"no results for {chapter}{f' ({asked})' if asked else ''} under {_rel(results_root())}; "
                        f"run `make reproduce CHAPTER={chapter}` first")
    out_dir = out_dir or repo_root() / "_build" / "replayed" / chapter
    with _environ(MSRBOOK_MODE="replay", MSRBOOK_RESULTS=str(results_root()),
                  MSRBOOK_REPLAY_PROFILE=chosen.profile, MSRBOOK_REPLAY_DEVICE=chosen.key or ""):
        execute(chapter, resolve_all(chapter, chosen.profile), out_dir, timeout_s, f"replay {chosen.folder}")
    return out_dir
