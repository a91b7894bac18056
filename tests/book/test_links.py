"""No broken internal link or anchor in the built book (linkchecker over the HTML, AnchorCheck on;
external URLs are not checked here: offline they would all look broken)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.book


def linkchecker() -> str:
    exe = Path(sys.executable).parent / "linkchecker"
    return str(exe) if exe.exists() else shutil.which("linkchecker") or pytest.fail("linkchecker is not installed")


def test_no_broken_internal_links(html, tmp_path):
    config = tmp_path / "linkcheckerrc"
    config.write_text("[AnchorCheck]\n")  # a link to a missing #anchor is a warning, and warnings fail
    starts = sorted(str(p) for p in html.rglob("*.html")
                    if not {"mathjax", "_static"} & set(p.relative_to(html).parts))
    out = subprocess.run([linkchecker(), "-f", str(config), "--no-status", "--threads", "4",
                          "--ignore-url=^https?://", "--ignore-url=^mailto:", *starts],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    report = out.stdout[-6000:] + out.stderr[-2000:]
    assert out.returncode == 0, f"broken internal links:\n{report}"
    assert " 0 warnings found" in out.stdout and " 0 errors found" in out.stdout, report
