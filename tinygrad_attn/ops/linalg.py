"""Matrix multiplication, the op that does the heavy lifting (it runs in BLAS / cuBLAS).

For Z = X @ Y:   dL/dX = dL/dZ @ Y^T   and   dL/dY = X^T @ dL/dZ.
"Transpose" means swapping the last two axes (not reversing all of them), and batch axes that were
broadcast are summed back, so the same two lines serve vectors, matrices and batches of matrices.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..amp import autocast_mode as _autocast
from ..autograd import Function
from ..tensor import Tensor
from .movement import reshape, transpose
from .reduce import sum_to
from .shapes import broadcast_shape


def array_matmul(x: Any, y: Any) -> Any:
    """x @ y on raw arrays, what every matmul of the package runs. NumPy has no float16 BLAS (its float16 loop
    is some 60x slower than float32's): on NumPy, float16 operands are multiplied in float32 and the product
    rounded once to float16, which is also what a GPU's float16 matmul computes (float32 accumulation)."""
    if x.dtype == np.float16 and isinstance(x, np.ndarray):
        return np.matmul(x, y, dtype=np.float32).astype(np.float16)
    return x @ y


class MatMul(Function):
    """Z = X @ Y (NumPy's matmul rules).   dZ/dX: G @ Y^T;  dZ/dY: X^T @ G."""

    def forward(self, x: Any, y: Any) -> Any:
        if x.ndim == 0 or y.ndim == 0:
            raise ValueError(f"matmul: both operands need at least 1 dim, got shapes {x.shape} and {y.shape}")
        if x.shape[-1] != y.shape[-2 if y.ndim > 1 else 0]:
            raise ValueError(f"matmul: shapes {x.shape} and {y.shape} do not align "
                             f"({x.shape[-1]} != {y.shape[-2 if y.ndim > 1 else 0]})")
        if x.ndim > 2 or y.ndim > 2:
            broadcast_shape(x.shape[:-2], y.shape[:-2] if y.ndim > 1 else (), op="matmul (batch dims)")
        self.save_for_backward(x, y)
        return array_matmul(x, y)

    def backward(self, g: Tensor) -> tuple[Tensor | None, Tensor | None]:
        x, y = self.saved_tensors
        # Treat vectors as matrices: x (k,) -> (1, k) and y (k,) -> (k, 1); put the lost axes back into g.
        x2 = reshape(x, (1,) + x.shape) if x.ndim == 1 else x
        y2 = reshape(y, y.shape + (1,)) if y.ndim == 1 else y
        g2 = g
        if x.ndim == 1:
            g2 = reshape(g2, g2.shape[:-1] + (1,) + g2.shape[-1:]) if y.ndim > 1 else reshape(g2, (1,) + g2.shape)
        if y.ndim == 1:
            g2 = reshape(g2, g2.shape + (1,))
        gx = gy = None
        if self.needs_input_grad[0]:
            gx = reshape(sum_to(matmul(g2, transpose(y2, -1, -2)), x2.shape), x.shape)
        if self.needs_input_grad[1]:
            gy = reshape(sum_to(matmul(transpose(x2, -1, -2), g2), y2.shape), y.shape)
        return gx, gy


def matmul(x: Tensor, y: Tensor) -> Tensor:
    """Matrix product with NumPy's rules for 1-D operands and broadcast batch dimensions."""
    if not isinstance(y, Tensor):
        raise TypeError(f"matmul: expected a Tensor, got {type(y).__name__}")
    if _autocast.enabled:
        x, y = _autocast.to_lower(x, y)
    if x.dtype != y.dtype:
        raise TypeError(f"matmul: dtypes differ ({x.dtype} @ {y.dtype}); convert one with .to(dtype)")
    return MatMul.apply(x, y)
