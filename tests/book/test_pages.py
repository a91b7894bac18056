"""The generated parts of the book, without building it: scoreboard rows, chapter status blocks,
the missing-notebook error and the papers table."""

import json
from dataclasses import replace

import pytest

from msrbook.pipeline import bookbuild, bookpages
from msrbook.errors import BookError
from msrbook.pipeline.registry import chapter, chapters

pytestmark = pytest.mark.book


@pytest.fixture
def results(tmp_path):
    """A results root where decode-roofline has `ci` results measured at an unknown commit."""
    d = tmp_path / "decode-roofline" / "ci"
    d.mkdir(parents=True)
    device = {"cpu": "Test CPU", "cpu_count": 2, "gpu": None, "gpu_count": 0}
    (d / "provenance.json").write_text(json.dumps({"03-benchmark": {"commit": "f" * 40, "dirty": False,
                                                                     "device": device}}))
    (d / "claims.json").write_text(json.dumps([
        {"id": "dense_decode_fraction_of_roofline", "notebook": "03-benchmark", "value": 0.91234,
         "unit": "fraction", "paper_value": None, "status": "measured", "note": "a | b"},
        {"id": "dense_decode_fraction_of_best_backend", "notebook": "03-benchmark", "value": None,
         "unit": "x", "paper_value": None, "status": "not measurable at this scale", "note": "needs a GPU"}]))
    return tmp_path


def test_scoreboard_rows(results):
    text = bookpages.scoreboard(results)
    row = next(line for line in text.splitlines() if "dense_decode_fraction_of_roofline" in line)
    cells = [c.strip() for c in row.strip("|").split(" | ")]
    assert cells[3] == "0.9123 fraction" and cells[4] == "ci" and cells[5] == "CPU (Test CPU, 2 cores)"
    assert "a \\| b" in row  # a pipe in a note does not break the table
    assert "(../notebooks/decode-roofline/03-benchmark.ipynb)" in row
    assert cells[-1] == "unknown"  # the commit is not in this repository's history
    assert "| – |" in next(line for line in text.splitlines() if "best_backend`" in line)
    assert "## Not yet measured" in text and "[seerattention-r](chapters/seerattention-r.md)" in text


def test_chapter_status_blocks(results, tmp_path):
    ch = chapter("decode-roofline")
    measured = bookpages.chapter_status(ch, results, pending=False)
    assert "replay the `ci` results" in measured and "not measurable at this scale (needs a GPU)" in measured
    empty = bookpages.chapter_status(ch, tmp_path / "none", pending=False)
    assert "Not yet measured" in empty and "make reproduce CHAPTER=decode-roofline" in empty
    unwritten = next(c for c in chapters() if not c.notebooks)  # a chapter whose notebooks are still to come
    assert "not written yet" in bookpages.chapter_status(unwritten, results, pending=False)


def test_missing_notebook_is_an_error_naming_it(monkeypatch):
    real = chapter("decode-roofline")
    broken = replace(real, notebooks=(*real.notebooks, "99-missing"))
    not_started = replace(real, name="not-started-yet", notebooks=("01-x",))
    monkeypatch.setattr(bookbuild, "chapters", lambda: (not_started,))
    assert bookbuild.pending_chapters() == {"not-started-yet"}
    monkeypatch.setattr(bookbuild, "chapters", lambda: (broken,))
    if not real.folder.is_dir():
        pytest.skip("decode-roofline has no notebooks folder yet")
    with pytest.raises(BookError, match="notebooks/decode-roofline/99-missing.ipynb"):
        bookbuild.pending_chapters()


def test_papers_table_and_substitutions():
    table = bookpages.papers_table()
    assert table.count("https://arxiv.org/abs/") == 10
    subs = bookpages.substitutions({"repository": {"url": "https://github.com/o/r", "branch": "main"},
                                    "launch_buttons": {"colab_url": "https://colab.research.google.com",
                                                       "binderhub_url": "https://mybinder.org"}},
                                   "notebooks/a/01.ipynb")
    assert subs["repo_url"] == "https://github.com/o/r"
    assert "colab.research.google.com/github/o/r/blob/main/notebooks/a/01.ipynb" in subs["launch_buttons"]
    assert "mybinder.org/v2/gh/o/r/main?urlpath=lab/tree/notebooks/a/01.ipynb" in subs["launch_buttons"]
