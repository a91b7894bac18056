"""Every chapter's notebooks run in the ci profile through the same path as `make reproduce`
(results root in a temporary folder, never data/results), and a failure in the middle of a run
leaves the previous results whole."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from msrbook.pipeline.registry import chapters

pytestmark = pytest.mark.notebooks
CHAPTERS = [c.name for c in chapters() if c.notebooks]


def reproduce(root: Path, chapter: str, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MSRBOOK_RESULTS": str(root)}
    env.pop("TRITON_INTERPRET", None)  # notebooks choose it themselves (msrbook.runtime)
    return subprocess.run([sys.executable, "-m", "msrbook.pipeline.cli", "reproduce", chapter, "--profile", "ci", *extra],
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


def test_only_reruns_one_notebook_and_keeps_the_others(ci_root):
    """ONLY: the named notebook runs again (new provenance, its claims recorded anew), the others'
    provenance, tables and claims are exactly as they were."""
    chapter = "decode-roofline"
    folder = ci_root / chapter / "ci"
    if not folder.exists():
        assert reproduce(ci_root, chapter).returncode == 0
    prov0 = json.loads((folder / "provenance.json").read_text())
    claims0 = json.loads((folder / "claims.json").read_text())
    files0 = snapshot(folder)
    stem = "01-roofline"
    out = reproduce(ci_root, chapter, "--only", stem)
    assert out.returncode == 0, out.stderr[-3000:]
    prov1 = json.loads((folder / "provenance.json").read_text())
    assert set(prov1) == set(prov0)
    assert prov1[stem]["start"] != prov0[stem]["start"]
    assert all(prov1[k] == prov0[k] for k in prov0 if k != stem)
    others = {t for k, r in prov0.items() if k != stem for t in r["tables"]}
    files1 = snapshot(folder)
    assert all(files1[f"{t}.csv"] == files0[f"{t}.csv"] for t in others)
    claims1 = json.loads((folder / "claims.json").read_text())
    assert [c for c in claims1 if c["notebook"] != stem] == [c for c in claims0 if c["notebook"] != stem]
    assert sorted(c["id"] for c in claims1) == sorted(c["id"] for c in claims0)
    assert not list((ci_root / chapter).glob(".stage-*"))


def test_only_refuses_without_previous_results_or_with_an_unknown_notebook(tmp_path):
    out = reproduce(tmp_path, "decode-roofline", "--only", "01-roofline")
    assert out.returncode == 2 and "run the whole chapter once" in out.stderr, out.stderr[-2000:]
    out = reproduce(tmp_path, "decode-roofline", "--only", "09-nope")
    assert out.returncode == 2 and "has no notebook 09-nope" in out.stderr, out.stderr[-2000:]
    assert not (tmp_path / "decode-roofline" / "ci").exists()


def test_only_refuses_a_table_another_notebook_also_records(tmp_path):
    """Two notebooks writing one table: rerunning one would change what the other shows."""
    folder = tmp_path / "decode-roofline" / "ci"
    folder.mkdir(parents=True)
    (folder / "provenance.json").write_text(json.dumps({"01-roofline": {"tables": ["bandwidth", "a"]},
                                                        "03-benchmark": {"tables": ["bandwidth"]}}))
    before = snapshot(folder)
    out = reproduce(tmp_path, "decode-roofline", "--only", "01-roofline")
    assert out.returncode == 2 and "bandwidth" in out.stderr and "a," not in out.stderr, out.stderr[-2000:]
    assert snapshot(folder) == before
