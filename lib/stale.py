"""Stale results (DESIGN §7): a commit after the provenance commit touched what the results depend on.

    stale(commit, chapter.stale_paths)  ->  "yes" | "no" | "unknown"

"unknown" when the commit is missing (None), not in this repository's history, or git is not
available; the scoreboard shows it as such rather than guessing.
"""

from __future__ import annotations

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
    log = _git(repo, "log", "--format=%H", f"{commit}..HEAD", "--", *paths)
    if log is None or log.returncode != 0:
        return "unknown"
    return "yes" if log.stdout.strip() else "no"


def combine(states: list[str]) -> str:
    """One state for several records (a chapter/profile has one per notebook): any yes wins."""
    if "yes" in states:
        return "yes"
    if not states or "unknown" in states:
        return "unknown"
    return "no"
