"""_toc.yml is generated from the registry (chapters.yml) and committed; it must stay in sync."""

import yaml

from msrbook import repo_root
from msrbook.pipeline.bookpages import toc_text
from msrbook.pipeline.registry import chapters


def test_toc_matches_registry():
    committed = (repo_root() / "_toc.yml").read_text()
    assert committed == toc_text(), "_toc.yml is out of sync with chapters.yml: run `python -m msrbook.pipeline.bookbuild --toc-only`"


def test_toc_lists_every_chapter_and_its_pages_exist():
    toc = yaml.safe_load((repo_root() / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]
    for ch in chapters():
        assert f"book/chapters/{ch.name}" in files, ch.name
    for f in files:
        assert (repo_root() / f"{f}.md").exists(), f"{f}.md is in _toc.yml but missing"
