"""Where code runs: choose the Triton interpreter on a machine without a GPU.

The interpreter must be chosen before triton is first imported, so notebooks call
`prepare_triton()` in their configuration cell, before importing any kernel.
"""

from __future__ import annotations

import os
import sys


def prepare_triton() -> str:
    """Set TRITON_INTERPRET=1 when no CUDA GPU is visible; returns 'cuda' or 'cpu'."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("triton was imported before prepare_triton(); restart the kernel and call it first")
    os.environ["TRITON_INTERPRET"] = "1"
    return "cpu"
