"""The layers of DESIGN.md, held by import-linter (contracts in pyproject.toml).

grimp, import-linter's graph builder, finds a package's modules by walking its folder, and ours is
assembled from two (lib/ is `msrbook`, kernels/ is `msrbook.kernels`, by the package-dir mapping),
so the check runs on a mirror: the folders copied as the mapping places them, imported from there.
Each planted violation below must break the contract named beside it: a contract that cannot fail
checks nothing.
"""

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())


def mirror(dst: Path) -> Path:
    """Copy the package folders where the package-dir mapping puts them: dst/msrbook/..."""
    for package, src in sorted(CONFIG["tool"]["setuptools"]["package-dir"].items()):  # parents first
        shutil.copytree(ROOT / src, dst / package.replace(".", "/"), dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.md"))
    return dst


def lint(tree: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "lint-imports"
    return subprocess.run([str(exe), str(ROOT / "pyproject.toml"), "--no-cache"], cwd=tree, capture_output=True,
                          text=True, timeout=300, env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"})


def broken(out: subprocess.CompletedProcess) -> set[str]:
    return {line.removesuffix(" BROKEN").strip() for line in out.stdout.splitlines() if line.endswith(" BROKEN")}


def test_the_tree_keeps_every_contract(tmp_path):
    out = lint(mirror(tmp_path))
    assert out.returncode == 0 and "0 broken" in out.stdout, out.stdout[-3000:] + out.stderr[-2000:]
    assert f"{len(CONFIG['tool']['importlinter']['contracts'])} kept" in out.stdout


PLANTS = [  # (file in the mirror, line appended, the contract it must break)
    ("msrbook/kernels/decode_attention.py", "from msrbook import bench", "kernels are a leaf: nothing from the library"),
    ("msrbook/models/config.py", "from msrbook.pipeline import results", "shared machinery never imports the pipeline or a chapter"),
    ("msrbook/pipeline/claims.py", "from msrbook.chapters.rstar_coder import verify",
     "the pipeline never imports chapter code or the science below it"),
    ("msrbook/chapters/bitdecoding/bench.py", "from msrbook.chapters.swarmthinkers import speed",
     "one chapter's folder never imports another's"),
    ("msrbook/search/__init__.py", "from msrbook.models import model", "search and the generic simulators never import the model lab"),
    ("msrbook/models/rope.py", "def _late():\n    from msrbook.models import model  # model imports rope: a cycle, hidden in a function",
     "no import cycles, at any level"),
    ("msrbook/errors.py", "from msrbook.pipeline import registry", "errors is the leaf every part may import"),
]


@pytest.mark.parametrize("path,line,contract", PLANTS, ids=[p[2][:40] for p in PLANTS])
def test_a_planted_violation_breaks_its_contract(tmp_path, path, line, contract):
    tree = mirror(tmp_path)
    with open(tree / path, "a") as f:
        f.write(f"\n{line}\n")
    out = lint(tree)
    assert out.returncode != 0, out.stdout[-2000:]
    assert contract in broken(out), out.stdout[-3000:]


def root_importers(tree: Path) -> list[str]:
    """Modules of msrbook.kernels that import the package root itself (`from msrbook import repo_root`),
    which the forbidden contracts cannot name (the root is every module's ancestor)."""
    code = ("import grimp\ng = grimp.build_graph('msrbook')\n"
            "import json\nprint(json.dumps(sorted(m for m in g.find_modules_that_directly_import('msrbook') if m.startswith('msrbook.kernels'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True, text=True, timeout=300,
                         env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def test_kernels_do_not_import_the_package_root(tmp_path):
    tree = mirror(tmp_path)
    assert root_importers(tree) == []
    with open(tree / "msrbook/kernels/stream_read.py", "a") as f:  # the check can fail
        f.write("\nfrom msrbook import repo_root\n")
    assert root_importers(tree) == ["msrbook.kernels.stream_read"]


def top_level() -> set[str]:
    """msrbook's direct children, from the folders (so a new package or module cannot slip past)."""
    names = {p.stem for p in (ROOT / "lib").glob("*.py") if p.stem != "__init__"}
    names |= {p.name for p in (ROOT / "lib").iterdir() if (p / "__init__.py").exists()}
    return {f"msrbook.{n}" for n in names} | {"msrbook.kernels"}


@pytest.mark.parametrize("contract,allowed", [
    ("kernels are a leaf: nothing from the library", {"msrbook.kernels"}),
    ("errors is the leaf every part may import", {"msrbook.errors"}),
    ("the pipeline never imports chapter code or the science below it", {"msrbook.pipeline", "msrbook.errors"}),
])
def test_leaf_contracts_name_every_other_part(contract, allowed):
    """A forbidden list is a list: it must name every part of the library but the allowed ones."""
    c = next(c for c in CONFIG["tool"]["importlinter"]["contracts"] if c["name"] == contract)
    assert set(c["forbidden_modules"]) == top_level() - allowed


def test_every_package_is_installed():
    """Each folder of lib/ and kernels/ with an __init__.py is listed in pyproject's packages."""
    found = {"msrbook." + ".".join(p.parent.relative_to(ROOT / "lib").parts) for p in (ROOT / "lib").rglob("__init__.py")}
    found |= {"msrbook.kernels." + ".".join(p.parent.relative_to(ROOT / "kernels").parts) for p in (ROOT / "kernels").rglob("__init__.py")}
    found = {f.rstrip(".") for f in found}
    assert found == set(CONFIG["tool"]["setuptools"]["packages"])
