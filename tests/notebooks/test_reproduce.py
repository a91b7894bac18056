"""Every chapter's notebooks run in the ci profile through the same path as `make reproduce`
(results root in a temporary folder, never data/results), and a failure in the middle of a run
leaves the previous results whole."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from msrbook.registry import chapters

pytestmark = pytest.mark.notebooks
CHAPTERS = [c.name for c in chapters() if c.notebooks]


def reproduce(root: Path, chapter: str, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MSRBOOK_RESULTS": str(root)}
    env.pop("TRITON_INTERPRET", None)  # notebooks choose it themselves (msrbook.runtime)
    return subprocess.run([sys.executable, "-m", "msrbook.cli", "reproduce", chapter, "--profile", "ci", *extra],
                          capture_output=True, text=True, env=env, timeout=900)


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def ci_root(tmp_path_factory):
    return tmp_path_factory.mktemp("results")


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_runs_in_ci_profile(ci_root, chapter):
    out = reproduce(ci_root, chapter)
    assert out.returncode == 0, out.stderr[-3000:]
    folder = ci_root / chapter / "ci"
    assert (folder / "provenance.json").exists()
    import json
    prov = json.loads((folder / "provenance.json").read_text())
    assert set(prov) == set(next(c for c in chapters() if c.name == chapter).notebooks)
    assert all(r["end"] is not None for r in prov.values())
    assert not list(ci_root.glob(f"{chapter}/.stage-*")), "staging folder left behind"


def test_failure_mid_run_keeps_previous_results(ci_root):
    chapter = "decode-roofline"
    folder = ci_root / chapter / "ci"
    if not folder.exists():
        assert reproduce(ci_root, chapter).returncode == 0
    before = snapshot(folder)
    # Notebook 2 of 3 fails in the middle: 4 query heads cannot share 3 KV heads.
    out = reproduce(ci_root, chapter, "--set", "shapes=[[1,4,3,10,64]]")
    assert out.returncode == 2
    line = out.stderr.strip().splitlines()[-1]
    assert "notebooks/decode-roofline/02-split-kv-kernel.ipynb failed in cell" in line, out.stderr[-2000:]
    assert snapshot(folder) == before
    assert not list((ci_root / chapter).glob(".stage-*"))
