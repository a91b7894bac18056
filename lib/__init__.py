"""msrbook: the shared library of the executable companion to ten 2025 MSR papers.

One folder per concern, arrows pointing down (DESIGN.md draws the layers; import-linter holds them):
`pipeline` (how a number reaches the book), `chapters.<chapter>` (one chapter's own code), `models`,
`simulators`, `sandbox`, `search`, `bench` (GPU timing, rooflines, dense decode baselines), `testing`
(closeness with a report), `errors` (BookError). Kernels live in `msrbook.kernels`, a leaf.
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
