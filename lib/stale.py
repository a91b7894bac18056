"""Stale results (DESIGN §7): a commit after the provenance commit touched what the results depend on.

    stale(commit, chapter.stale_paths)  ->  "yes" | "no" | "unknown"

"unknown" when the commit is missing (None), not in this repository's history, or git is not
available; the scoreboard shows it as such rather than guessing.

What counts is the net change between the provenance commit and HEAD. A notebook whose code cells
(sources, in order) are the same at both ends is not a change: editing a chapter's prose cannot
change a number it measured, and should not flag its results as out of date. Any other file that
differs, a notebook added or removed, or one git cannot show, counts.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from . import repo_root

STATES = ("yes", "no", "unknown")


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None


def stale(commit: str | None, paths: tuple[str, ...] | list[str], repo: Path | None = None) -> str:
    """Whether any commit in `commit..HEAD` touched one of `paths` (relative to the repository)."""
    repo = repo or repo_root()
    if not commit:
        return "unknown"
    # The commit must exist and be an ancestor of HEAD; otherwise commit..HEAD means nothing.
    known = _git(repo, "merge-base", "--is-ancestor", commit, "HEAD")
    if known is None or known.returncode != 0:
        return "unknown"
    diff = _git(repo, "diff", "--name-only", "--no-renames", commit, "HEAD", "--", *paths)
    if diff is None or diff.returncode != 0:
        return "unknown"
    changed = [f for f in diff.stdout.splitlines() if f.strip()]
    return "yes" if any(not _same_code(repo, commit, f) for f in changed) else "no"


def _code_cells(repo: Path, rev: str, path: str) -> list[str] | None:
    """Sources of the code cells of notebook `path` at `rev`, or None if it is absent or unreadable."""
    out = _git(repo, "show", f"{rev}:{path}")
    if out is None or out.returncode != 0:
        return None
    try:
        cells = json.loads(out.stdout).get("cells", [])
    except (ValueError, AttributeError):
        return None
    return ["".join(c.get("source", "")) if isinstance(c.get("source"), list) else c.get("source", "")
            for c in cells if c.get("cell_type") == "code"]


def _same_code(repo: Path, commit: str, path: str) -> bool:
    """True when `path` is a notebook whose code cells are identical at `commit` and HEAD."""
    if not path.endswith(".ipynb"):
        return False
    before, after = _code_cells(repo, commit, path), _code_cells(repo, "HEAD", path)
    return before is not None and after is not None and before == after


def combine(states: list[str]) -> str:
    """One state for several records (a chapter/profile has one per notebook): any yes wins."""
    if "yes" in states:
        return "yes"
    if not states or "unknown" in states:
        return "unknown"
    return "no"
