"""`make book`: stage the book, replay every notebook against committed results, build the HTML.

    python -m msrbook.pipeline.bookbuild              # _build/stage -> _build/html (offline, warnings fail)
    python -m msrbook.pipeline.bookbuild --toc-only   # regenerate _toc.yml from chapters.yml

Steps: (a) copy _config.yml, _toc.yml, book/ and notebooks/ into _build/stage; (b) for each
chapter with committed results, execute its notebooks with papermill in replay mode against one
result set (`layout.replay_set`: the best profile, paper > gpu > ci, then its device measured most
recently) into the stage (the scoreboard and status blocks list every device's set); a chapter
without results gets its sources with a "not yet measured" notice; (c) append the generated scoreboard table; (d) append each chapter's
status block; (e) vendor MathJax 3 under html_extra_path; (f) write the MyST substitutions (the
repository URL among them) into the staged _config.yml; then run `jupyter-book build -W -n`.

A chapter whose notebooks folder does not exist yet builds as "notebooks not written yet"; once
the folder exists, every notebook the registry lists must be there.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from multiprocessing import get_context
from pathlib import Path

import yaml

from . import bookpages
from .. import repo_root
from ..errors import BookError, exit_code
from .registry import Chapter, chapters
from .layout import replay_set
from .runner import replay

MATHJAX = Path("node_modules/mathjax/es5")  # `npm install` (make setup) puts it here
REPLAY_TIMEOUT_S = 600  # per cell; replay only loads saved tables, so this is generous


def toc_path() -> Path:
    return repo_root() / "_toc.yml"


def check_toc() -> None:
    if not toc_path().exists() or toc_path().read_text() != bookpages.toc_text():
        raise BookError("_toc.yml is out of sync with chapters.yml; run `python -m msrbook.pipeline.bookbuild --toc-only`")


def pending_chapters() -> frozenset[str]:
    """Chapters whose notebooks folder does not exist yet; raises on a missing listed notebook."""
    pending = set()
    for ch in chapters():
        if not ch.notebooks:
            continue
        if not ch.folder.is_dir():
            pending.add(ch.name)
            continue
        missing = [f"notebooks/{ch.name}/{s}.ipynb" for s in ch.notebooks if not ch.notebook_path(s).exists()]
        if missing:
            raise BookError(f"chapters.yml lists {', '.join(missing)} but the file is missing")
    return frozenset(pending)


# -- (b) notebooks ---------------------------------------------------------------------------------
def _replay_chapter(chapter: str, profile: str, device: str | None, results: str,
                    out_dir: str) -> tuple[str, str | None]:
    """Replay one chapter into the stage (a worker process). Returns (chapter, error line or None):
    an error travels back as text, since an exception that fails to unpickle can hang the pool."""
    os.environ["MSRBOOK_RESULTS"] = results
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # tiny torch work runs ~2x faster so on 2 cores
    where = f"{profile}/{device}" if device else profile
    try:
        replay(chapter, profile, Path(out_dir), timeout_s=REPLAY_TIMEOUT_S, device=device)
    except BookError as err:
        return chapter, f"replay of {chapter} ({where}): {err}"
    except Exception as err:  # anything else is still one line naming the chapter
        return chapter, f"replay of {chapter} ({where}): {type(err).__name__}: {err}"
    return chapter, None


def _annotated_source(ch: Chapter, stem: str, dst: Path) -> None:
    """The unexecuted source with a visible notice after its title cell."""
    import nbformat

    nb = nbformat.read(ch.notebook_path(stem), as_version=4)
    text = bookpages.not_measured_admonition(
        ch, "No results for this chapter are committed, so this notebook is shown without outputs.")
    first = nb.cells[0] if nb.cells else None
    at = 1 if first is not None and first.cell_type == "markdown" and first.source.lstrip().startswith("# ") else 0
    nb.cells.insert(at, nbformat.v4.new_markdown_cell(text))
    nbformat.write(nb, dst)


def stage_notebooks(stage: Path, pending: frozenset[str], jobs: int, results: Path) -> None:
    work = []
    for ch in chapters():
        if not ch.notebooks or ch.name in pending:
            continue
        chosen = replay_set(ch.name, results)
        if chosen is None:
            for stem in ch.notebooks:
                _annotated_source(ch, stem, stage / "notebooks" / ch.name / f"{stem}.ipynb")
        else:
            work.append((ch.name, chosen.profile, chosen.key, str(results), str(stage / "notebooks" / ch.name)))
    if not work:
        return
    print(f"replaying {len(work)} chapter(s) against committed results, {jobs} at a time", flush=True)
    with ProcessPoolExecutor(max_workers=min(jobs, len(work)), mp_context=get_context("spawn")) as pool:
        outcomes = list(pool.map(_replay_chapter, *zip(*work)))
    errors = [err for _, err in outcomes if err]
    if errors:
        raise BookError("\n".join(errors))


# -- (a), (c)-(f) stage -----------------------------------------------------------------------------
def stage_book(stage: Path, jobs: int, results: Path) -> None:
    root = repo_root()
    check_toc()
    pending = pending_chapters()
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    ignore = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__")
    shutil.copytree(root / "book", stage / "book", ignore=ignore)
    shutil.copytree(root / "notebooks", stage / "notebooks", ignore=ignore)
    (stage / "_toc.yml").write_text(bookpages.toc_text(pending))  # pending chapters: landing page only
    stage_notebooks(stage, pending, jobs, results)

    board = stage / "book" / "scoreboard.md"
    board.write_text(board.read_text().rstrip("\n") + "\n" + bookpages.scoreboard(results))
    for ch in chapters():
        page = stage / "book" / "chapters" / f"{ch.name}.md"
        if not page.exists():
            raise BookError(f"book/chapters/{ch.name}.md is missing (every registry chapter needs a landing page)")
        page.write_text(page.read_text().rstrip("\n") + "\n" + bookpages.chapter_status(ch, results, ch.name in pending))

    if not (root / MATHJAX).is_dir():
        raise BookError(f"{MATHJAX} is missing; run `make setup` (npm install vendors MathJax 3)")
    shutil.copytree(root / MATHJAX, stage / "_extra" / "mathjax")

    config = yaml.safe_load((root / "_config.yml").read_text())
    first = next((f"notebooks/{c.name}/{c.notebooks[0]}.ipynb" for c in chapters()
                  if c.notebooks and c.name not in pending), None)
    config.setdefault("parse", {})["myst_substitutions"] = bookpages.substitutions(config, first)
    (stage / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))


def run_sphinx(stage: Path, out_root: Path, verbose: bool) -> None:
    jb = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(jb), "build", str(stage), "--path-output", str(out_root), "-W", "-n", "--keep-going",
           "--builder", "html"] + ([] if verbose else ["-q"])
    proc = subprocess.run(cmd, cwd=repo_root())
    if proc.returncode != 0:
        raise BookError(f"jupyter-book build failed (exit {proc.returncode}); the warnings above say where "
                        "(a path under _build/stage mirrors the same path in the repository)")


@contextmanager
def build_lock(build: Path):
    """Two builds in one checkout would share _build/stage: the second waits for the first."""
    build.mkdir(parents=True, exist_ok=True)
    with open(build / ".bookbuild.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def build(jobs: int = 2, verbose: bool = False, results: Path | None = None) -> Path:
    """Stage and build; `results` is the committed results root (data/results) unless previewing."""
    root = repo_root()
    results = Path(results or root / "data" / "results").resolve()
    out = root / "_build"
    with build_lock(out):
        t0 = time.perf_counter()
        stage_book(out / "stage", jobs, results)
        # A full rebuild every time: the stage is new, and stale doctrees would hide removed pages.
        for sub in ("html", ".doctrees", "jupyter_execute"):
            shutil.rmtree(out / sub, ignore_errors=True)
        run_sphinx(out / "stage", root, verbose)
        index = out / "html" / "index.html"
        if not index.exists():
            raise BookError(f"the build finished but {index} is missing")
        print(f"book built in {time.perf_counter() - t0:.0f} s: {index.relative_to(root)}", flush=True)
        return index


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m msrbook.pipeline.bookbuild", description=__doc__.split("\n")[0])
    ap.add_argument("--toc-only", action="store_true", help="regenerate _toc.yml from chapters.yml and stop")
    ap.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1), help="chapters replayed at once")
    ap.add_argument("--results", type=Path, default=None,
                    help="results root to replay (default data/results; another one only to preview)")
    ap.add_argument("-v", "--verbose", action="store_true", help="show Sphinx's full output")
    args = ap.parse_args(argv)
    if args.toc_only:
        return exit_code(write_toc)
    return exit_code(build, max(1, args.jobs), args.verbose, args.results)


def write_toc() -> None:
    toc_path().write_text(bookpages.toc_text())
    print(f"wrote {toc_path().relative_to(repo_root())}")


if __name__ == "__main__":
    sys.exit(main())
