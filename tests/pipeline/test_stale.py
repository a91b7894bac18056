"""The stale rule (DESIGN §7): results are stale when the code they depend on, found from the notebook's
imports at each revision, differs between their provenance commit and HEAD. Each case both ways."""

import json
import subprocess
from pathlib import Path

import pytest

from msrbook import repo_root
from msrbook.pipeline.stale import combine, dependencies, stale

NB = "notebooks/ch/01-run.ipynb"


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=repo,
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def commit(repo: Path, files: dict[str, str | None], moves: dict[str, str] | None = None) -> str:
    """Moves files (git mv), writes (or, for None, deletes) others, commits; returns the commit id."""
    for src, dst in (moves or {}).items():
        (repo / dst).parent.mkdir(parents=True, exist_ok=True)
        git(repo, "mv", src, dst)
    for path, text in files.items():
        if text is None:
            git(repo, "rm", "-q", path)
            continue
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
        git(repo, "add", path)
    git(repo, "commit", "-q", "--allow-empty", "-m", "change")
    return git(repo, "rev-parse", "HEAD")


def nb(*cells) -> str:
    """A notebook's JSON text; a bare string is a code cell, a ("markdown", text) pair a markdown cell."""
    cells = [c if isinstance(c, tuple) else ("code", c) for c in cells]
    return json.dumps({"cells": [{"cell_type": t, "source": src.splitlines(keepends=True), "metadata": {}}
                                 for t, src in cells], "nbformat": 4, "nbformat_minor": 5, "metadata": {}})


NOTEBOOK = nb(("markdown", "# A chapter"), "%matplotlib inline\n!pip list\nfrom msrbook.pipeline import results",
              "from msrbook.core import measure\nrun = results.Run('ch', '01-run')\nprint(measure(3))")
HELPERS = '"""Helpers."""\nfrom .deep import K\n\n\ndef scale(x):\n    """Scaled."""\n    return x * K  # by K\n'
CORE = ('from .helpers import scale\n\n\ndef measure(x):\n    return scale(x) + 1\n\n\n'
        'def lazy():\n    from msrbook.late import go\n    return go()\n')
FILES = {
    "lib/__init__.py": '"""The package."""\n',
    "lib/pipeline/__init__.py": "",
    "lib/pipeline/results.py": "from . import claims\n\n\nclass Run:\n    def __init__(self, *a):\n        self.a = a\n",
    "lib/pipeline/claims.py": "RULES = ('within',)\n",
    "lib/core.py": CORE,
    "lib/helpers.py": HELPERS,
    "lib/deep.py": "K = 2\n",
    "lib/late.py": "def go():\n    return 1\n",
    "lib/unused.py": "X = 1\n",
    "requirements/lock.txt": "numpy==2.0.0\n",
    "data/paper/ch.yml": "claims:\n  - id: speed\n    rule: within 10%\n",
    "notebooks/ch/profiles.yml": "ci:\n  01-run: {n: 2}\ngpu:\n  01-run: {n: 64}\n",
    NB: NOTEBOOK,
}


@pytest.fixture
def repo(tmp_path):
    git(tmp_path, "init", "-q", "-b", "main")
    return tmp_path


@pytest.fixture
def measured(repo):
    """The commit the results were measured at: the whole fake project."""
    return commit(repo, FILES)


def is_stale(repo, measured, profile="ci"):
    return stale(measured, "ch", "01-run", repo, profile)


def test_the_dependencies_are_found_through_the_imports(repo, measured):
    assert dependencies("ch", "01-run", "HEAD", repo) == {
        NB, "requirements/lock.txt", "lib/__init__.py", "lib/pipeline/__init__.py", "lib/pipeline/results.py",
        "lib/pipeline/claims.py", "lib/core.py", "lib/helpers.py", "lib/deep.py", "lib/late.py"}
    assert is_stale(repo, measured) == "no"
    commit(repo, {"lib/unused.py": "X = 2\n", "README": "words"})  # not imported by the notebook
    assert is_stale(repo, measured) == "no"


def test_a_transitive_code_change_stales_and_prose_does_not(repo, measured):
    commit(repo, {"lib/deep.py": '"""The constant."""\n\n# two, for now\nK = 2  # see above\n',
                  "lib/helpers.py": HELPERS.replace('"""Scaled."""', '"""Scaled by K."""')})
    assert is_stale(repo, measured) == "no"
    commit(repo, {"lib/deep.py": "K = 3\n"})  # reached notebook -> core -> helpers -> deep
    assert is_stale(repo, measured) == "yes"


def test_a_pipeline_module_reached_through_results_stales(repo, measured):
    commit(repo, {"lib/pipeline/claims.py": "RULES = ('within', 'above')\n"})
    assert is_stale(repo, measured) == "yes"


MOVED_CORE = CORE.replace("from .helpers import", "from .util.helpers import")
MOVED_HELPERS = HELPERS.replace("from .deep import", "from ..deep import")


def test_a_file_moved_without_change_does_not_stale(repo, measured):
    """Two files moved into a package; the imports that point at them, one inside a function, rewritten."""
    core = MOVED_CORE.replace("from msrbook.late import", "from msrbook.util.late import")
    commit(repo, {"lib/core.py": core, "lib/util/helpers.py": MOVED_HELPERS, "lib/util/__init__.py": ""},
           moves={"lib/helpers.py": "lib/util/helpers.py", "lib/late.py": "lib/util/late.py"})
    assert {"lib/util/helpers.py", "lib/util/late.py"} <= dependencies("ch", "01-run", "HEAD", repo)
    assert is_stale(repo, measured) == "no"


def test_a_file_moved_with_a_change_stales(repo, measured):
    commit(repo, {"lib/core.py": MOVED_CORE, "lib/util/__init__.py": "",
                  "lib/util/helpers.py": MOVED_HELPERS.replace("x * K", "x * K * K")},
           moves={"lib/helpers.py": "lib/util/helpers.py"})
    assert is_stale(repo, measured) == "yes"


def moved_scale(body: str) -> dict:
    """`scale` moved from helpers into core, which imported it; helpers keeps nothing else."""
    core = CORE.replace("from .helpers import scale\n", f"from .deep import K\n\n\ndef scale(x):\n    {body}\n")
    return {"lib/core.py": core, "lib/helpers.py": None}


def test_a_function_moved_between_modules_unchanged_does_not_stale(repo, measured):
    commit(repo, moved_scale("return x * K"))
    assert "lib/helpers.py" not in dependencies("ch", "01-run", "HEAD", repo)
    assert is_stale(repo, measured) == "no"


def test_a_function_moved_between_modules_with_a_change_stales(repo, measured):
    commit(repo, moved_scale("return x * K + 0"))
    assert is_stale(repo, measured) == "yes"


def test_a_name_rebound_to_another_definition_stales(repo):
    """Only an import changes, and every module stays in the closure, but `scale` now names another
    function: what a binding binds counts."""
    core = CORE.replace("from .helpers import scale", "from . import other\nfrom .helpers import scale")
    measured = commit(repo, {**FILES, "lib/other.py": "def scale(x):\n    return x - 1\n", "lib/core.py": core})
    commit(repo, {"lib/core.py": CORE.replace("from .helpers import scale", "from . import helpers\nfrom .other import scale")})
    assert "lib/helpers.py" in dependencies("ch", "01-run", "HEAD", repo)
    assert is_stale(repo, measured) == "yes"
    commit(repo, {"lib/core.py": CORE.replace("from .helpers import scale", "from . import other\nfrom msrbook.helpers import scale")})
    assert is_stale(repo, measured) == "no"  # the same binding, spelled absolutely


def test_a_re_exported_function_moved_behind_its_package_does_not_stale(repo):
    """core imports `scale` from a package that re-exports it; it moves between the package's modules."""
    scale = "from ..deep import K\n\n\ndef scale(x):\n    return x * K\n"
    files = {k: v for k, v in FILES.items() if k != "lib/helpers.py"}
    measured = commit(repo, {**files, "lib/pkg/__init__.py": "from .a import scale\n",
                             "lib/pkg/a.py": scale, "lib/pkg/b.py": "",
                             "lib/core.py": CORE.replace("from .helpers import", "from .pkg import")})
    commit(repo, {"lib/pkg/__init__.py": "from .b import scale\n", "lib/pkg/a.py": "", "lib/pkg/b.py": scale})
    assert is_stale(repo, measured) == "no"
    commit(repo, {"lib/pkg/b.py": scale.replace("x * K", "x * K - 1")})
    assert is_stale(repo, measured) == "yes"


def test_paper_yml_and_markdown_cells_never_stale_code_cells_do(repo, measured):
    commit(repo, {"data/paper/ch.yml": "claims:\n  - id: speed\n    rule: within 20%\n",
                  NB: NOTEBOOK.replace("# A chapter", "# A chapter, retitled")})
    assert is_stale(repo, measured) == "no"
    commit(repo, {NB: NOTEBOOK.replace("measure(3)", "measure(4)")})
    assert is_stale(repo, measured) == "yes"


def test_code_cell_order_counts(repo):
    measured = commit(repo, {**FILES, NB: nb("a = 1", "b = 2")})
    commit(repo, {NB: nb("b = 2", "a = 1")})
    assert is_stale(repo, measured) == "yes"  # same cells, other order: another program
    commit(repo, {NB: nb("a = 1", ("markdown", "between"), "b = 2")})
    assert is_stale(repo, measured) == "no"  # the net change is what counts


def test_a_function_level_import_is_followed(repo, measured):
    commit(repo, {"lib/late.py": '"""Imported inside core.lazy only."""\n\n\ndef go():\n    return 1\n'})
    assert is_stale(repo, measured) == "no"
    commit(repo, {"lib/late.py": "def go():\n    return 2\n"})
    assert is_stale(repo, measured) == "yes"


def test_the_lock_file_counts(repo, measured):
    commit(repo, {"requirements/lock.txt": "numpy==2.0.1\n"})
    assert is_stale(repo, measured) == "yes"


def test_the_notebooks_own_profile_entry_counts(repo, measured):
    commit(repo, {"notebooks/ch/profiles.yml": "# sizes\nci:\n  01-run: {n: 2}  # tiny\ngpu:\n  01-run: {n: 128}\n"})
    assert is_stale(repo, measured, "ci") == "no"  # a comment, and another profile's values
    assert is_stale(repo, measured, "gpu") == "yes"


def test_a_string_that_is_not_a_docstring_counts(repo, measured):
    commit(repo, {"lib/late.py": 'def go():\n    x = 1\n    "not a docstring"\n    return 1\n'})
    assert is_stale(repo, measured) == "yes"  # only a body's first statement is a docstring


@pytest.mark.parametrize("path,before,after", [("lib/deep.py", "K = (\n", "K = (  # comment\n"),
                                               (NB, "not json", "still not json")])
def test_a_file_that_does_not_parse_counts_as_a_change(repo, path, before, after):
    measured = commit(repo, {**FILES, path: before})
    commit(repo, {path: after})
    assert is_stale(repo, measured) == "yes"


def test_unknown_commit(repo, measured):
    assert is_stale(repo, None) == "unknown"
    assert is_stale(repo, "0123456789abcdef0123456789abcdef01234567") == "unknown"
    assert is_stale(repo, "not-a-commit") == "unknown"
    assert stale(measured, "ch", "02-not-there", repo) == "unknown"  # no such notebook at the commit
    git(repo, "checkout", "-q", "-b", "side")
    side = commit(repo, {"lib/deep.py": "K = 5\n"})
    git(repo, "checkout", "-q", "main")
    assert is_stale(repo, side) == "unknown"  # not an ancestor of HEAD


def test_a_notebook_removed_since_is_stale(repo, measured):
    commit(repo, {NB: None})
    assert is_stale(repo, measured) == "yes"


def test_combine():
    assert combine(["no", "yes", "unknown"]) == "yes"
    assert combine(["no", "unknown"]) == "unknown"
    assert combine(["no", "no"]) == "no"
    assert combine([]) == "unknown"


def committed_records() -> list[tuple[str, str]]:
    root = repo_root()
    return sorted({(p.parent.parent.name, stem) for p in (root / "data" / "results").glob("*/*/provenance.json")
                   for stem in json.loads(p.read_text())})


def test_the_real_repository_resolves_every_committed_result():
    if subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo_root(), capture_output=True).returncode:
        pytest.skip("not a git checkout: the stale check reports unknown there")
    records = committed_records()
    assert {ch for ch, _ in records} >= {"bitdecoding", "decode-roofline"}
    for ch, stem in records:
        deps = dependencies(ch, stem)
        assert {f"notebooks/{ch}/{stem}.ipynb", "lib/pipeline/results.py", "lib/pipeline/claims.py",
                "requirements/lock.txt"} <= deps, (ch, stem)
    bitdecoding = set().union(*(dependencies(ch, stem) for ch, stem in records if ch == "bitdecoding"))
    assert {"lib/testing.py", "lib/bench.py", "kernels/bitdecode/__init__.py"} <= bitdecoding
