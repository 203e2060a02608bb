"""softmax and log_softmax (re-exported by ``functional``), and their derivatives: ``SoftmaxBackward``, written
once and shared by every op that differentiates through a softmax (softmax itself, attention, cross-entropy's
second derivative), and ``LogSoftmaxBackward``.

The pattern of every fused op: its ``backward`` applies a backward Function whose ``forward`` is array code (the
fast path, with or without ``create_graph``), and whose own ``backward`` is the second derivative.
"""

from __future__ import annotations

from typing import Any

from .amp import autocast_mode as _autocast
from .autograd import Function
from .backend import array_module as _xp
from .ops.elementwise import exp
from .ops.movement import reshape
from .ops.shapes import normalize_dim
from .tensor import Tensor


class Softmax(Function):
    """y = e^x / sum e^x along ``dim``.   dL/dx = y * (g - sum(g * y)) (``SoftmaxBackward``)."""

    def forward(self, x: Any, dim: int) -> Any:
        xp = _xp(x)
        y = x - x.max(axis=dim, keepdims=True) if x.size else x.copy()
        xp.exp(y, out=y)
        y /= y.sum(axis=dim, keepdims=True)
        self.dim = dim
        self.save_for_backward(y)
        return y

    def backward(self, g: Tensor) -> Tensor:
        (y,) = self.saved_tensors
        return SoftmaxBackward.apply(g, y, dim=self.dim)


class SoftmaxBackward(Function):
    """dx = y * (g - sum(g * y)) along ``dim``, for y = softmax(x): the Jacobian diag(y) - y y^T applied to g
    without ever building it.

    Its own derivatives, for an incoming u: dx is linear in g with a symmetric Jacobian, so d/dg = y * (u -
    sum(u * y)), this op again; and d/dy = u * (g - sum(g * y)) - g * sum(u * y).
    """

    def forward(self, g: Any, y: Any, dim: int) -> Any:
        xp = _xp(g)
        if dim == g.ndim - 1:  # the common case, without a (..., n) product temporary
            total = xp.einsum("...j,...j->...", g, y)[..., None]
        else:
            total = (g * y).sum(axis=dim, keepdims=True)
        dx = g - total
        dx *= y
        self.dim = dim
        self.save_for_backward(g, y)
        return dx

    def backward(self, u: Tensor) -> tuple[Tensor | None, Tensor | None]:
        g, y = self.saved_tensors
        dg = SoftmaxBackward.apply(u, y, dim=self.dim) if self.needs_input_grad[0] else None
        dy = None
        if self.needs_input_grad[1]:
            dy = u * (g - (g * y).sum(self.dim, keepdim=True)) - g * (u * y).sum(self.dim, keepdim=True)
        return dg, dy


class LogSoftmax(Function):
    """y = x - logsumexp(x) along ``dim``.   dL/dx = g - softmax(x) * sum(g) = g - e^y * sum(g)."""

    def forward(self, x: Any, dim: int) -> Any:
        xp = _xp(x)
        if not x.size:
            y = x.copy()
        else:
            m = x.max(axis=dim, keepdims=True)
            m = xp.where(xp.isfinite(m), m, 0)
            y = x - m
            y -= xp.log(xp.exp(y).sum(axis=dim, keepdims=True))
        self.dim = dim
        self.save_for_backward(y)
        return y

    def backward(self, g: Tensor) -> Tensor:
        (y,) = self.saved_tensors
        return LogSoftmaxBackward.apply(g, y, dim=self.dim)


class LogSoftmaxBackward(Function):
    """dx = g - e^y * sum(g) along ``dim``, for y = log_softmax(x) (e^y is the softmax), in one buffer.

    Its own derivatives, for an incoming u: d/dg = u - sum(u * e^y) (the same map transposed), and
    d/dy = -u * e^y * sum(g).
    """

    def forward(self, g: Any, y: Any, dim: int) -> Any:
        dx = _xp(y).exp(y)
        dx *= -g.sum(axis=dim, keepdims=True)
        dx += g
        self.dim = dim
        self.save_for_backward(g, y)
        return dx

    def backward(self, u: Tensor) -> tuple[Tensor | None, Tensor | None]:
        g, y = self.saved_tensors
        p = exp(y)
        dg = u - (u * p).sum(self.dim, keepdim=True) if self.needs_input_grad[0] else None
        dy = -(u * p) * g.sum(self.dim, keepdim=True) if self.needs_input_grad[1] else None
        return dg, dy


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """Softmax along ``dim``; rows are shifted by their max first, so large logits do not overflow. A 0-d tensor
    is a row of one (its softmax is 1), as in PyTorch."""
    if _autocast.enabled:
        (x,) = _autocast.to_float32(x)
    dim = normalize_dim(dim, x.ndim, "softmax")
    if x.ndim == 0:
        return reshape(Softmax.apply(reshape(x, (1,)), dim=0), ())
    return Softmax.apply(x, dim=dim)


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    """log(softmax(x)) computed as x - logsumexp(x): stable for logits of any size (0 for a 0-d tensor)."""
    if _autocast.enabled:
        (x,) = _autocast.to_float32(x)
    dim = normalize_dim(dim, x.ndim, "log_softmax")
    if x.ndim == 0:
        return reshape(LogSoftmax.apply(reshape(x, (1,)), dim=0), ())
    return LogSoftmax.apply(x, dim=dim)
