"""Data types. They are NumPy's dtype objects (CuPy uses the same ones), exported under PyTorch's names.

``ta.float32 is numpy.dtype("float32")``, so ``tensor.dtype == np.float32`` and ``== "float32"`` both hold.
"""

from __future__ import annotations

from typing import Any

import numpy as np

float16 = half = np.dtype("float16")
float32 = float = np.dtype("float32")
float64 = double = np.dtype("float64")
int8 = np.dtype("int8")
int16 = np.dtype("int16")
int32 = np.dtype("int32")
int64 = long = np.dtype("int64")
uint8 = np.dtype("uint8")
bool_ = np.dtype("bool")

#: The dtype of tensors made from Python floats, and of ``ta.randn`` and friends.
default_float = float32

_TORCH_NAMES: dict[str, np.dtype] = {"float": float32, "double": float64, "half": float16, "long": int64,
                                    "int": int32, "bool": bool_}


def to_dtype(spec: Any) -> np.dtype:
    """Accept ``ta.float32``, ``np.float32``, ``"float32"`` or ``"float"``; return a NumPy dtype."""
    if isinstance(spec, np.dtype):
        return spec
    if isinstance(spec, str) and spec in _TORCH_NAMES:
        return _TORCH_NAMES[spec]
    try:
        return np.dtype(spec)
    except TypeError as e:
        raise TypeError(f"not a dtype: {spec!r} (use e.g. ta.float32 or 'float64')") from e


def is_floating(dtype: np.dtype) -> bool:
    """Only floating-point tensors can require gradients."""
    return dtype.kind == "f"
