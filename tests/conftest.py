"""Test-wide setup. Kernels run under the Triton interpreter when no GPU is present, which must be
decided before triton is first imported, so it happens here, at collection."""

import os
import shutil


def _has_cuda() -> bool:
    return shutil.which("nvidia-smi") is not None and os.environ.get("CUDA_VISIBLE_DEVICES", "x") != ""


if not _has_cuda():
    os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")  # tiny torch work is ~2x faster so on 2 cores
