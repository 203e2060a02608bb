"""TF32 matrix products on NVIDIA GPUs from Ampere on (``torch.backends.cuda.matmul.allow_tf32``'s switch).

TF32 keeps float32's range but rounds the inputs of a float32 matrix product to 10 mantissa bits, and
runs it on the tensor cores. Results differ from float32 in about the fourth significant digit, which
training tolerates. It is off by default, as in PyTorch.

CuPy decides per dtype: ``CUPY_TF32=1`` in the environment before its first float32 matmul, or its compute
type set through ``cupy._core._routines_linalg.set_compute_type``; ``allow_tf32`` does both. On the CPU
(NumPy) there is no TF32: the switch is recorded and changes nothing.
"""

from __future__ import annotations

import importlib
import os
import sys

import numpy as np


def allow_tf32(enabled: bool = True) -> bool:
    """Let float32 matmuls on CUDA devices use TF32 (``enabled=False``: full float32 again).

    Returns True when CuPy is loaded and its float32 compute type was set, False when the switch only went
    into the environment (CuPy not imported yet: it reads ``CUPY_TF32`` at its first float32 matmul, or not
    installed: a no-op on the CPU).
    """
    if not isinstance(enabled, bool):
        raise TypeError(f"allow_tf32: enabled must be a bool, got {enabled!r}")
    os.environ["CUPY_TF32"] = "1" if enabled else "0"
    if "cupy" not in sys.modules:
        return False
    linalg = importlib.import_module("cupy._core._routines_linalg")
    compute_type = linalg.COMPUTE_TYPE_TF32 if enabled else linalg.COMPUTE_TYPE_DEFAULT
    linalg.set_compute_type(np.float32, compute_type)
    return True


def tf32_allowed() -> bool:
    """Whether float32 CUDA matmuls may use TF32 (as ``CUPY_TF32`` says)."""
    return os.environ.get("CUPY_TF32", "0").strip() not in ("", "0")
