"""Neural-network functions (``import tinygrad_attn.functional as F``).

Each heavy one is a *fused* Function: one forward over the arrays, one hand-written backward, instead
of a chain of primitive ops that would each keep an intermediate alive for backward. The backward is
still written in Tensor ops, so second derivatives work too.
"""

from __future__ import annotations

from typing import Any

from .autograd import Function
from .backend import array_module as _xp
from .ops.elementwise import exp, gelu, relu, sigmoid, tanh
from .ops.shapes import normalize_dim
from .tensor import Tensor

__all__ = ["softmax", "log_softmax", "relu", "gelu", "sigmoid", "tanh"]


class Softmax(Function):
    """y = e^x / sum e^x along ``dim``.   dL/dx = y * (g - sum(g * y)): the Jacobian diag(y) - y y^T
    applied to g without ever building it."""

    def forward(self, x: Any, dim: int) -> Any:
        xp = _xp(x)
        y = x - x.max(axis=dim, keepdims=True)
        xp.exp(y, out=y)
        y /= y.sum(axis=dim, keepdims=True)
        self.dim = dim
        self.save_for_backward(y)
        return y

    def backward(self, g: Tensor) -> Tensor:
        (y,) = self.saved_tensors
        gy = g * y
        return gy - y * gy.sum(self.dim, keepdim=True)


class LogSoftmax(Function):
    """y = x - logsumexp(x) along ``dim``.   dL/dx = g - softmax(x) * sum(g) = g - e^y * sum(g)."""

    def forward(self, x: Any, dim: int) -> Any:
        xp = _xp(x)
        m = x.max(axis=dim, keepdims=True)
        m = xp.where(xp.isfinite(m), m, 0)
        y = x - m
        y -= xp.log(xp.exp(y).sum(axis=dim, keepdims=True))
        self.dim = dim
        self.save_for_backward(y)
        return y

    def backward(self, g: Tensor) -> Tensor:
        (y,) = self.saved_tensors
        return g - exp(y) * g.sum(self.dim, keepdim=True)


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """Softmax along ``dim``; rows are shifted by their max first, so large logits do not overflow."""
    return Softmax.apply(x, dim=normalize_dim(dim, x.ndim, "softmax"))


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    """log(softmax(x)) computed as x - logsumexp(x): stable for logits of any size."""
    return LogSoftmax.apply(x, dim=normalize_dim(dim, x.ndim, "log_softmax"))
