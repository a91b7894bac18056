"""msrbook: the shared library of the executable companion to ten 2025 MSR papers.

One idea per module: `registry` (the chapters), `results` (compute/replay, tables, claims,
provenance), `params` (profile validation), `bench` (GPU timing and rooflines), `testing`
(closeness with a report). Kernels live in `msrbook.kernels`; models in `msrbook.models`.
Nothing here does work at import.
"""

from pathlib import Path

__version__ = "0.1.0"


def repo_root() -> Path:
    """The checkout this package was installed from (editable install) or the working directory."""
    here = Path(__file__).resolve().parent.parent
    if (here / "chapters.yml").exists():
        return here
    cwd = Path.cwd()
    for p in [cwd, *cwd.parents]:
        if (p / "chapters.yml").exists():
            return p
    raise FileNotFoundError("cannot find the book's chapters.yml above " + str(cwd))
