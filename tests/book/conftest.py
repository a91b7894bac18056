"""The book is built once per test session (`python -m msrbook.pipeline.bookbuild`, exactly what `make
book` runs) and shared by every test in this folder."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from msrbook import repo_root

BUILD_TIMEOUT_S = 1200  # replay of every chapter plus Sphinx; about a minute today on 2 cores


@pytest.fixture(scope="session")
def html() -> Path:
    """The built HTML folder (_build/html); the build's own output is shown when it fails."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MSRBOOK_") and k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-m", "msrbook.pipeline.bookbuild"], cwd=repo_root(), env=env,
                         capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    if out.returncode != 0:
        pytest.fail(f"make book failed (exit {out.returncode}):\n{(out.stdout + out.stderr)[-6000:]}", pytrace=False)
    return repo_root() / "_build" / "html"
