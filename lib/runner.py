"""`make reproduce`: run a chapter's notebooks with papermill in compute mode, staged.

Results go to a staging folder beside the chapter's results and are swapped in only when every
notebook succeeded; a failure names the notebook and the cell and leaves the previous results
whole. Executed notebooks are kept under _build/executed/<chapter>/<profile>/ for inspection.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm

from . import repo_root
from .params import resolve
from .registry import BookError, chapter as get_chapter, check_profile
from .results import results_root


def default_profile() -> str:
    try:
        import torch
        return "gpu" if torch.cuda.is_available() else "ci"
    except ImportError:
        return "ci"


def _one_line(err: Exception, nb: Path, cell_index: int | None) -> str:
    """One line naming the notebook and the failing cell, from a papermill error."""
    ename = getattr(err, "ename", type(err).__name__)
    evalue = str(getattr(err, "evalue", err)).strip().splitlines()
    where = f"cell {cell_index}" if cell_index is not None else "a cell"
    if getattr(err, "exec_count", None) is not None:
        where += f" (execution count {err.exec_count})"
    rel = nb.relative_to(repo_root()) if nb.is_relative_to(repo_root()) else nb
    return f"{rel} failed in {where}: {ename}: {evalue[-1] if evalue else ''}"


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


def _swap_in(stage: Path, target: Path) -> None:
    """Replace target with stage; the old folder is removed only after the new one is in place."""
    old = target.with_name(f".old-{target.name}-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(stage, target)
    shutil.rmtree(old, ignore_errors=True)


def reproduce(chapter: str, profile: str | None = None, overrides: dict | None = None,
              timeout_s: int = 3600) -> Path:
    import papermill as pm

    ch = get_chapter(chapter)
    profile = check_profile(profile or default_profile())
    if not ch.notebooks:
        raise BookError(f"chapter {chapter!r} has no notebooks yet")
    # Check every notebook's parameters before running any of them.
    plan = [(stem, resolve(chapter, stem, profile, overrides)) for stem in ch.notebooks]
    root = results_root()
    target = root / chapter / profile
    stage_root = root / chapter / f".stage-{profile}-{os.getpid()}"
    executed = repo_root() / "_build" / "executed" / chapter / profile
    executed.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(stage_root, ignore_errors=True)
    env = {"MSRBOOK_MODE": "compute", "MSRBOOK_RESULTS": str(stage_root / "root")}
    saved = {k: os.environ.get(k) for k in [*env, "OMP_NUM_THREADS"]}
    os.environ.update(env)
    if profile == "ci" and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = "1"  # tiny torch work runs ~2x faster so on 2 cores
    try:
        bar = tqdm(plan, desc=f"{chapter} [{profile}]", unit="notebook", file=sys.stderr)
        for stem, params in bar:
            bar.set_postfix_str(stem)
            src, out = ch.notebook_path(stem), executed / f"{stem}.ipynb"
            t0 = time.perf_counter()
            try:
                pm.execute_notebook(str(src), str(out), parameters=params, kernel_name="python3",
                                    progress_bar=False, cwd=str(ch.folder), execution_timeout=timeout_s)
            except Exception as err:  # papermill wraps the cell's exception
                msg = _one_line(err, src, _failing_cell_index(out))
                raise BookError(msg + f" [executed copy: {out.relative_to(repo_root())}]") from None
            tqdm.write(f"  {stem}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        produced = stage_root / "root" / chapter / profile
        if not produced.exists():
            raise BookError(f"{chapter}: the notebooks ran but recorded no results")
        target.parent.mkdir(parents=True, exist_ok=True)
        _swap_in(produced, target)
        return target
    finally:
        shutil.rmtree(stage_root, ignore_errors=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
