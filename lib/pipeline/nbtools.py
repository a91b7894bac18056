"""Notebook-source conventions, enforced by tests: outputs stripped, kernel `python3`, the first
code cell is the guarded Colab set-up cell generated here from _config.yml's repository URL (the
one place it is written), the second is the papermill `parameters` cell.

`python -m msrbook.pipeline.nbtools` rewrites every notebook's set-up cell and strips outputs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from .. import repo_root


def repository_url() -> str:
    return yaml.safe_load((repo_root() / "_config.yml").read_text())["repository"]["url"]


def setup_cell_source(chapter: str) -> str:
    url = repository_url()
    return (
        "# Set-up for Google Colab: clone the book and install its library. Does nothing elsewhere.\n"
        "import os, sys\n"
        "if \"google.colab\" in sys.modules and not os.path.isdir(\"/content/msrbook\"):\n"
        "    import site, subprocess\n"
        f"    subprocess.run([\"git\", \"clone\", \"--depth\", \"1\", \"{url}\", \"/content/msrbook\"], check=True)\n"
        "    subprocess.run([sys.executable, \"-m\", \"pip\", \"install\", \"-q\", \"-e\", \"/content/msrbook\"], check=True)\n"
        "    site.addsitedir(site.getsitepackages()[0])  # pick up the editable install in this kernel\n"
        f"    os.chdir(\"/content/msrbook/notebooks/{chapter}\")"
    )


def notebooks() -> list[Path]:
    return sorted((repo_root() / "notebooks").glob("*/*.ipynb"))


def problems(path: Path) -> list[str]:
    """What is wrong with a notebook source, as short sentences (empty when it is fine)."""
    nb = json.loads(path.read_text())
    out = []
    if nb.get("metadata", {}).get("kernelspec", {}).get("name") != "python3":
        out.append("kernel name is not python3")
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    if any(c.get("outputs") or c.get("execution_count") for c in code):
        out.append("outputs are not stripped")
    if not code or "".join(code[0]["source"]) != setup_cell_source(path.parent.name):
        out.append("first code cell is not the generated Colab set-up cell")
    if len(code) < 2 or "parameters" not in code[1].get("metadata", {}).get("tags", []):
        out.append("second code cell is not tagged 'parameters'")
    return out


def normalize(path: Path) -> None:
    nb = json.loads(path.read_text())
    nb.setdefault("metadata", {})["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    for c in code:
        c["outputs"], c["execution_count"] = [], None
    if code:
        code[0]["source"] = setup_cell_source(path.parent.name)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    for p in (Path(a) for a in sys.argv[1:]) if len(sys.argv) > 1 else notebooks():
        normalize(p)
        print("normalized", p)
