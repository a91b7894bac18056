"""Stale results (DESIGN §7): a commit after the provenance commit touched what the results depend on.

    stale(commit, chapter.stale_paths)  ->  "yes" | "no" | "unknown"

"unknown" when the commit is missing (None), not in this repository's history, or git is not
available; the scoreboard shows it as such rather than guessing.

What counts is the net change between the provenance commit and HEAD, and only a change that can
alter what runs: a notebook whose code cells (sources, in order) are the same at both ends, or a
Python file whose syntax tree is the same once docstrings are dropped (comments never reach it), is
not a change. Editing prose cannot change a number, and should not flag results as out of date.
Any other file that differs, a file added or removed, or one git cannot show or parse, counts.
"""

from __future__ import annotations

import ast
import json
import subprocess
from pathlib import Path

from .. import repo_root

STATES = ("yes", "no", "unknown")


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None


def stale(commit: str | None, paths: tuple[str, ...] | list[str], repo: Path | None = None) -> str:
    """Whether HEAD differs from `commit` in code under `paths` (relative to the repository); prose-only
    differences do not count (module docstring)."""
    repo = repo or repo_root()
    if not commit:
        return "unknown"
    # The commit must exist and be an ancestor of HEAD; otherwise a diff against it says nothing here.
    known = _git(repo, "merge-base", "--is-ancestor", commit, "HEAD")
    if known is None or known.returncode != 0:
        return "unknown"
    diff = _git(repo, "diff", "--name-only", "--no-renames", commit, "HEAD", "--", *paths)
    if diff is None or diff.returncode != 0:
        return "unknown"
    changed = [f for f in diff.stdout.splitlines() if f.strip()]
    return "yes" if any(not _same_code(repo, commit, f) for f in changed) else "no"


def _show(repo: Path, rev: str, path: str) -> str | None:
    out = _git(repo, "show", f"{rev}:{path}")
    return out.stdout if out is not None and out.returncode == 0 else None


def _code_cells(text: str | None) -> list[str] | None:
    """Sources of a notebook's code cells, in order, or None if it is absent or unreadable."""
    if text is None:
        return None
    try:
        cells = json.loads(text).get("cells", [])
    except (ValueError, AttributeError):
        return None
    return ["".join(c.get("source", "")) for c in cells if c.get("cell_type") == "code"]  # a str or a list of lines


def _python_tree(text: str | None) -> str | None:
    """ast.dump of a module with every docstring removed, or None if it is absent or does not parse."""
    if text is None:
        return None
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


def _same_code(repo: Path, commit: str, path: str) -> bool:
    """True when `path` differs between `commit` and HEAD only in prose: a notebook's markdown cells,
    a Python file's docstrings and comments."""
    code = {".ipynb": _code_cells, ".py": _python_tree}.get(Path(path).suffix)
    if code is None:
        return False
    before, after = (code(_show(repo, rev, path)) for rev in (commit, "HEAD"))
    return before is not None and before == after


def combine(states: list[str]) -> str:
    """One state for several records (a chapter/profile has one per notebook): any yes wins."""
    if "yes" in states:
        return "yes"
    if not states or "unknown" in states:
        return "unknown"
    return "no"
