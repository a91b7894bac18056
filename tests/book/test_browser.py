"""The built book in a real browser, offline: Debian's Chromium driven by Playwright against a
local http.server. MathJax typesets, every image loads, the console stays clean, and no request
leaves 127.0.0.1."""

import functools
import os
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from msrbook.pipeline.bookbuild import pending_chapters
from msrbook.pipeline.registry import chapters

pytestmark = pytest.mark.book
CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic"]
RAW_TEX = ("$$", "\\(", "\\)", "\\[", "\\frac", "\\approx")


def pages() -> list[tuple[str, bool]]:
    """(path, has math): the front page, the scoreboard, one chapter page and its first notebook."""
    out = [("book/intro.html", True), ("book/scoreboard.html", False), ("book/chapters/decode-roofline.html", True)]
    pending = pending_chapters()
    first = next((c for c in chapters() if c.notebooks and c.name not in pending), None)
    if first is not None:
        out.append((f"notebooks/{first.name}/{first.notebooks[0]}.html", False))  # math if its text has some
    return out


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest's output for failures
        pass


@pytest.fixture(scope="module")
def server(html):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(html)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: apt-get install chromium"
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(CHROMIUM), headless=True,
            args=FLAGS, service_workers="block")
        yield context
        context.close()


@pytest.mark.parametrize("path,has_math", pages())
def test_page_renders_offline(server, browser, path, has_math):
    requests, errors, bad_status = [], [], []
    page = browser.new_page()
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("response", lambda r: bad_status.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    # Anything not local is recorded above and then refused, so an outside fetch fails fast.
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(server)
               or route.request.url.startswith(("data:", "blob:")) else route.abort())
    try:
        page.goto(server + path, wait_until="networkidle")
        math = page.evaluate("() => document.querySelectorAll('.math').length")  # Sphinx's TeX spans
        typeset = 0
        if math:  # Sphinx loads MathJax only on pages with math
            page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise",
                                   timeout=30_000)
            typeset = page.evaluate("() => MathJax.startup.promise.then("
                                    "() => document.querySelectorAll('mjx-container').length)")
            page.wait_for_load_state("networkidle")  # MathJax fetches its fonts after typesetting
        text = page.inner_text("article")
        broken = page.evaluate("() => Array.from(document.images)"
                               ".filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
    finally:
        page.close()
    outside = [u for u in requests if not u.startswith(server) and not u.startswith(("data:", "blob:"))]
    assert not outside, f"requests that left 127.0.0.1: {outside}"
    assert not bad_status, f"failed responses: {bad_status}"
    assert not errors, f"console errors: {errors}"
    assert not broken, f"images that did not load: {broken}"
    assert math or not has_math, "this page is known to hold math, but none was found"
    assert typeset >= math, f"MathJax typeset {typeset} of {math} formulas"
    raw = [t for t in RAW_TEX if t in text]
    assert not raw, f"raw TeX left in the page text: {raw}"
