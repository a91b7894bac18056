"""The stale rule (DESIGN §7): results are stale when a later commit touched what they depend on."""

import json
import subprocess
from pathlib import Path

import pytest

from msrbook.pipeline.stale import combine, stale


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=repo,
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def commit(repo: Path, path: str, text: str) -> str:
    (repo / path).parent.mkdir(parents=True, exist_ok=True)
    (repo / path).write_text(text)
    git(repo, "add", path)
    git(repo, "commit", "-q", "-m", f"touch {path}")
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path):
    git(tmp_path, "init", "-q", "-b", "main")
    return tmp_path


PATHS = ("notebooks/ch", "lib/kernel.py")


def test_change_to_a_listed_path_after_the_commit_is_stale(repo):
    measured = commit(repo, "README", "a")
    commit(repo, "notebooks/ch/01.ipynb", "{}")
    assert stale(measured, PATHS, repo) == "yes"


def test_changes_elsewhere_or_before_are_not_stale(repo):
    commit(repo, "lib/kernel.py", "v1")
    measured = commit(repo, "README", "a")
    commit(repo, "lib/other.py", "unrelated")
    commit(repo, "data/results/ch/ci/claims.json", "[]")  # committing the results themselves
    assert stale(measured, PATHS, repo) == "no"
    assert stale(git(repo, "rev-parse", "HEAD"), PATHS, repo) == "no"


def nb(*cells):
    """A notebook's JSON text with the given (cell_type, source) cells."""
    return json.dumps({"cells": [{"cell_type": t, "source": src.splitlines(keepends=True), "metadata": {}}
                                 for t, src in cells], "nbformat": 4, "nbformat_minor": 5, "metadata": {}})


def test_prose_only_notebook_edit_is_not_stale(repo):
    commit(repo, "notebooks/ch/01.ipynb", nb(("markdown", "# Title\nold words"), ("code", "x = 1\nprint(x)")))
    measured = commit(repo, "README", "a")
    commit(repo, "notebooks/ch/01.ipynb", nb(("markdown", "# Title\nnew words"), ("markdown", "more"),
                                             ("code", "x = 1\nprint(x)")))
    assert stale(measured, PATHS, repo) == "no"
    commit(repo, "notebooks/ch/01.ipynb", nb(("markdown", "# Title"), ("code", "x = 2\nprint(x)")))
    assert stale(measured, PATHS, repo) == "yes"  # a code cell changed


def test_code_cell_order_added_notebook_and_reverted_change(repo):
    commit(repo, "notebooks/ch/01.ipynb", nb(("code", "a = 1"), ("code", "b = 2")))
    measured = commit(repo, "README", "a")
    commit(repo, "notebooks/ch/01.ipynb", nb(("code", "b = 2"), ("code", "a = 1")))
    assert stale(measured, PATHS, repo) == "yes"  # same cells, other order: another program
    commit(repo, "notebooks/ch/01.ipynb", nb(("code", "a = 1"), ("code", "b = 2")))
    assert stale(measured, PATHS, repo) == "no"  # the net change is what counts
    commit(repo, "notebooks/ch/02.ipynb", nb(("markdown", "only prose")))
    assert stale(measured, PATHS, repo) == "yes"  # a notebook added


def test_python_docstring_and_comment_edits_are_not_stale(repo):
    commit(repo, "lib/kernel.py", '"""Module."""\n\ndef f(x):\n    """Old words."""\n    return x + 1  # note\n')
    measured = commit(repo, "README", "a")
    commit(repo, "lib/kernel.py", '"""Module, reworded."""\n\n\ndef f(x):\n    """New words."""\n'
                                  '    # a new comment\n    return x + 1\n')
    assert stale(measured, PATHS, repo) == "no"
    commit(repo, "lib/kernel.py", '"""Module."""\n\ndef f(x):\n    return x + 2\n')
    assert stale(measured, PATHS, repo) == "yes"  # the code changed


def test_python_string_that_is_not_a_docstring_counts(repo):
    commit(repo, "lib/kernel.py", 'ASM = "add r1, r2;"\n\ndef f():\n    x = 1\n    "not a docstring"\n    return x\n')
    measured = commit(repo, "README", "a")
    commit(repo, "lib/kernel.py", 'ASM = "sub r1, r2;"\n\ndef f():\n    x = 1\n    "not a docstring"\n    return x\n')
    assert stale(measured, PATHS, repo) == "yes"
    commit(repo, "lib/kernel.py", 'ASM = "add r1, r2;"\n\ndef f():\n    x = 1\n    "another string"\n    return x\n')
    assert stale(measured, PATHS, repo) == "yes"  # only a body's first statement is a docstring


@pytest.mark.parametrize("path,before,after", [("lib/kernel.py", "def f(:\n", "def f(:\n  # comment\n"),
                                               ("notebooks/ch/01.ipynb", "not json", "still not json")])
def test_a_file_that_does_not_parse_counts_as_a_change(repo, path, before, after):
    """Unparsable Python or notebook JSON: whether the edit is prose cannot be told, so it counts."""
    commit(repo, path, before)
    measured = commit(repo, "README", "a")
    commit(repo, path, after)
    assert stale(measured, PATHS, repo) == "yes"


def test_unknown_commit(repo):
    commit(repo, "README", "a")
    assert stale(None, PATHS, repo) == "unknown"
    assert stale("0123456789abcdef0123456789abcdef01234567", PATHS, repo) == "unknown"
    assert stale("not-a-commit", PATHS, repo) == "unknown"


def test_commit_off_this_history_is_unknown(repo):
    commit(repo, "README", "a")
    git(repo, "checkout", "-q", "-b", "side")
    side = commit(repo, "lib/kernel.py", "side")
    git(repo, "checkout", "-q", "main")
    assert stale(side, PATHS, repo) == "unknown"


def test_combine():
    assert combine(["no", "yes", "unknown"]) == "yes"
    assert combine(["no", "unknown"]) == "unknown"
    assert combine(["no", "no"]) == "no"
    assert combine([]) == "unknown"
