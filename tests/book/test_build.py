"""The book builds offline with warnings as errors, has every page the registry implies, marks
chapters without results, and references no script, stylesheet or font outside itself."""

import re
from pathlib import Path

import pytest
from bs4 import BeautifulSoup

from msrbook import repo_root
from msrbook.pipeline.bookbuild import pending_chapters
from msrbook.pipeline.registry import chapters
from msrbook.pipeline.results import best_profile

pytestmark = pytest.mark.book
RESULTS = repo_root() / "data" / "results"
REMOTE = re.compile(r"^(https?:)?//", re.I)
ASSET_RELS = {"stylesheet", "preload", "prefetch", "modulepreload", "icon", "shortcut", "manifest", "font"}


def page(html: Path, rel: str) -> BeautifulSoup:
    path = html / rel
    assert path.exists(), f"{rel} was not built"
    return BeautifulSoup(path.read_text(), "html.parser")


def test_front_page_and_scoreboard(html):
    assert (html / "index.html").exists()
    intro = page(html, "book/intro.html").get_text()
    assert "arXiv:2503.18773" in intro  # the papers table comes from chapters.yml
    board = page(html, "book/scoreboard.html").get_text()
    assert "Claims" in board


def test_every_chapter_and_notebook_page(html):
    pending = pending_chapters()
    for ch in chapters():
        page(html, f"book/chapters/{ch.name}.html")
        if ch.name not in pending:
            for stem in ch.notebooks:
                page(html, f"notebooks/{ch.name}/{stem}.html")


def test_chapters_without_results_say_so(html):
    unmeasured = [ch for ch in chapters() if best_profile(ch.name, RESULTS) is None]
    if not unmeasured:
        pytest.skip("every chapter has committed results")
    pending = pending_chapters()
    for ch in unmeasured:
        assert "Not yet measured" in page(html, f"book/chapters/{ch.name}.html").get_text(), ch.name
        for stem in ch.notebooks if ch.name not in pending else ():
            text = page(html, f"notebooks/{ch.name}/{stem}.html").get_text()
            assert "Not yet measured" in text and f"make reproduce CHAPTER={ch.name}" in text, f"{ch.name}/{stem}"


def remote_assets(soup: BeautifulSoup) -> list[str]:
    found = [t.get("src") for t in soup.find_all(["script", "img", "iframe", "source", "embed", "audio", "video"])]
    found += [t.get("href") for t in soup.find_all("link")
              if ASSET_RELS & set(t.get("rel") or []) or t.get("as")]
    found += re.findall(r"url\(\s*['\"]?((?:https?:)?//[^'\")]+)", str(soup.find_all("style")))
    return [u for u in found if u and REMOTE.match(u)]


def test_no_remote_scripts_styles_or_fonts(html):
    bad = {}
    for path in html.rglob("*.html"):
        if "mathjax" in path.relative_to(html).parts:
            continue
        hits = remote_assets(BeautifulSoup(path.read_text(errors="replace"), "html.parser"))
        if hits:
            bad[str(path.relative_to(html))] = hits
    for path in (html / "_static").rglob("*.css"):
        hits = re.findall(r"(?:@import\s+|url\(\s*['\"]?)((?:https?:)?//[^'\")\s;]+)", path.read_text(errors="replace"))
        if hits:
            bad[str(path.relative_to(html))] = hits
    assert not bad, f"pages that would fetch from the network: {bad}"
