"""Reductions: many input elements to one output element.

The backward of a sum copies the output gradient back to every element that was summed (``expand``);
the backward of ``expand`` sums it again (``sum_to``). That pair is the adjoint of broadcasting, and
every other reduction's backward is built on it.

As in PyTorch, a 0-d tensor accepts ``dim`` 0 or -1 and a reduction over it returns the value (nothing to
reduce); a sum over an empty dim is 0 and its mean nan, while a maximum over an empty dim is an error.
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any

from ..autograd import Function
from ..backend import array_module as _xp
from ..tensor import Tensor
from .shapes import kept_shape, normalize_dim, normalize_dims


class Sum(Function):
    """z = sum of x over ``dims``.   dz/dx_i = 1: the gradient is copied back to every summed element."""

    def forward(self, x: Any, dims: tuple[int, ...], keepdim: bool) -> Any:
        self.in_shape, self.dims = x.shape, dims
        return x.sum(axis=dims, keepdims=keepdim)

    def backward(self, g: Tensor) -> Tensor:
        from .movement import expand, reshape

        return expand(reshape(g, kept_shape(self.in_shape, self.dims)), self.in_shape)


class SumTo(Function):
    """Sum x down to ``shape`` (undo broadcasting: sum the leading axes and the axes where shape is 1).
    Its backward is ``expand`` back to the input shape."""

    def forward(self, x: Any, shape: tuple[int, ...]) -> Any:
        self.in_shape = x.shape
        lead = x.ndim - len(shape)
        axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and x.shape[lead + i] != 1)
        out = x.sum(axis=axes, keepdims=True) if axes else x
        return out.reshape(shape)

    def backward(self, g: Tensor) -> Tensor:
        from .movement import expand

        return expand(g, self.in_shape)


class Amax(Function):
    """z = max of x over ``dims``.   dz/dx_i = 1/k at the k positions that attain the max, 0 elsewhere
    (ties share the gradient evenly)."""

    def forward(self, x: Any, dims: tuple[int, ...], keepdim: bool, smallest: bool) -> Any:
        z = x.min(axis=dims, keepdims=True) if smallest else x.max(axis=dims, keepdims=True)
        self.dims, self.keepdim = dims, keepdim
        self.save_for_backward(x, z)
        return z if keepdim else z.reshape([n for i, n in enumerate(x.shape) if i not in dims])

    def backward(self, g: Tensor) -> Tensor:
        from .movement import reshape

        x, z = self.saved_tensors
        z_kept = z.data if self.keepdim else z.data.reshape(kept_shape(x.shape, self.dims))
        hit = x.data == z_kept
        share = hit / hit.sum(axis=self.dims, keepdims=True)
        return reshape(g, kept_shape(x.shape, self.dims)) * Tensor._make(share.astype(x.dtype, copy=False))


class LogSumExp(Function):
    """z = log sum_i e^{x_i}, computed as m + log sum e^{x_i - m} with m = max x (no overflow).
    dz/dx_i = e^{x_i - z} = softmax(x)_i."""

    def forward(self, x: Any, dims: tuple[int, ...], keepdim: bool) -> Any:
        xp = _xp(x)
        if x.size:
            m = x.max(axis=dims, keepdims=True)
            m = xp.where(xp.isfinite(m), m, 0)  # rows of all -inf give -inf, not nan
        else:  # an empty dim sums to 0: its logsumexp is -inf
            m = xp.zeros(kept_shape(x.shape, dims), dtype=x.dtype)
        total = xp.exp(x - m).sum(axis=dims, keepdims=True)
        empty = total == 0  # a row of all -inf: log 0 = -inf, without NumPy's divide-by-zero warning
        z = xp.where(empty, -xp.inf, xp.log(xp.where(empty, 1, total))) + m
        self.dims, self.keepdim = dims, keepdim
        out = z if keepdim else z.reshape([n for i, n in enumerate(x.shape) if i not in dims])
        self.save_for_backward(x, out)
        return out

    def backward(self, g: Tensor) -> Tensor:
        from .elementwise import exp
        from .movement import reshape

        x, z = self.saved_tensors
        shape = kept_shape(x.shape, self.dims)
        return reshape(g, shape) * exp(x - reshape(z, shape))


# ---- the functions users call ------------------------------------------------------------------------------


def _reduced_dims(x: Tensor, dim: Any, op: str) -> tuple[int, ...]:
    """The dims to reduce over, sorted and non-negative. As in PyTorch, an empty tuple means every dim, and a 0-d
    tensor's dim 0 (or -1) is the tensor itself: nothing to reduce over."""
    dims = normalize_dims(None if isinstance(dim, (tuple, list)) and not dim else dim, x.ndim, op)
    return () if x.ndim == 0 else dims


def sum(x: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    """Sum over ``dim`` (an int, a tuple of ints, or None for all)."""
    dims = _reduced_dims(x, dim, "sum")
    if x.dtype.kind in "b":
        from .elementwise import cast

        x = cast(x, x.xp.dtype("int64"))
    return Sum.apply(x, dims=dims, keepdim=keepdim)


def sum_to(x: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Sum a broadcast result back to ``shape`` (the adjoint of ``expand``)."""
    if tuple(x.shape) == tuple(shape):
        return x
    return SumTo.apply(x, shape=tuple(shape))


def mean(x: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    """Mean over ``dim``: the sum divided by the number of elements summed."""
    if x.dtype.kind != "f":
        raise TypeError(f"mean: needs a floating-point tensor, got {x.dtype} (use .float() first)")
    dims = _reduced_dims(x, dim, "mean")
    n = 1
    for d in dims:
        n *= x.shape[d]
    return Sum.apply(x, dims=dims, keepdim=keepdim) * (1.0 / n if n else float("nan"))


def var(x: Tensor, dim: Any = None, correction: int = 1, keepdim: bool = False) -> Tensor:
    """Variance: sum (x - mean)^2 / (N - correction). ``correction=1`` (the default) is unbiased."""
    dims = _reduced_dims(x, dim, "var")
    n = 1
    for d in dims:
        n *= x.shape[d]
    centered = x - mean(x, dims, keepdim=True)
    return sum(centered * centered, dims, keepdim) * (1.0 / (n - correction) if n > correction else float("nan"))


def std(x: Tensor, dim: Any = None, correction: int = 1, keepdim: bool = False) -> Tensor:
    """Standard deviation: sqrt(var). Where var is 0 the gradient is 0 (as in PyTorch), not 1/(2 sqrt 0) = inf."""
    from .elementwise import sqrt, where

    v = var(x, _reduced_dims(x, dim, "std"), correction, keepdim)
    zero = v == 0
    return where(zero, 0.0, sqrt(where(zero, 1.0, v)))  # the inner where keeps inf * 0 = nan out of backward


MaxResult = namedtuple("MaxResult", ["values", "indices"])


def amax(x: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    """The largest element over ``dim`` (an int, a tuple of ints, or None for all)."""
    return Amax.apply(x, dims=_nonempty(x, dim, "amax"), keepdim=keepdim, smallest=False)


def amin(x: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    """The smallest element over ``dim`` (an int, a tuple of ints, or None for all)."""
    return Amax.apply(x, dims=_nonempty(x, dim, "amin"), keepdim=keepdim, smallest=True)


def _nonempty(x: Tensor, dim: Any, op: str) -> tuple[int, ...]:
    """The dims of a max/min-like reduction, none of them empty: an empty dim has no maximum or minimum.
    The errors are PyTorch's types: IndexError for an empty dim that was named, RuntimeError for no dim."""
    dims = _reduced_dims(x, dim, op)
    if dim is None and x.numel() == 0:
        raise RuntimeError(f"{op}: the tensor is empty (shape {tuple(x.shape)}), it has no maximum or minimum; "
                           "name the dims to reduce over")
    for d in dims:
        if x.shape[d] == 0:
            raise IndexError(f"{op}: dim {d} is empty (shape {tuple(x.shape)}), it has no maximum or minimum")
    return dims


def max(x: Tensor, dim: int | None = None, keepdim: bool = False) -> Any:
    """Without ``dim``: the largest element. With ``dim``: ``(values, indices)`` along it, as PyTorch.
    The gradient goes to the positions holding the maximum (split evenly between ties)."""
    values = Amax.apply(x, dims=_nonempty(x, dim, "max"), keepdim=keepdim and dim is not None, smallest=False)
    return values if dim is None else MaxResult(values, argmax(x, dim, keepdim))


def min(x: Tensor, dim: int | None = None, keepdim: bool = False) -> Any:
    """Like ``max``, for the smallest elements."""
    values = Amax.apply(x, dims=_nonempty(x, dim, "min"), keepdim=keepdim and dim is not None, smallest=True)
    return values if dim is None else MaxResult(values, argmin(x, dim, keepdim))


def _arg(x: Tensor, dim: int | None, keepdim: bool, name: str) -> Tensor:
    if dim is None and x.numel() == 0:
        raise IndexError(f"{name}: the tensor is empty (shape {tuple(x.shape)}), it has no maximum or minimum; "
                         "name the dim to reduce over")
    fn = getattr(x.xp, name)
    if x.ndim == 0:  # dim 0 or -1 of a 0-d tensor: the only element, index 0
        if dim is not None:
            normalize_dim(dim, 0, name)
        out = x.xp.zeros((), dtype=x.xp.int64)
    elif dim is None:
        out = fn(x.data.reshape(-1))
        out = out.reshape((1,) * x.ndim) if keepdim else out
    else:
        d = normalize_dim(dim, x.ndim, name)
        if x.shape[d] == 0:
            raise IndexError(f"{name}: dim {d} is empty (shape {tuple(x.shape)}), it has no maximum or minimum")
        out = fn(x.data, axis=d)
        out = x.xp.expand_dims(out, d) if keepdim else out
    return Tensor._make(x.xp.asarray(out, dtype=x.xp.int64))


def argmax(x: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    """Index of the largest element (along ``dim``, or of the flattened tensor). No gradient."""
    return _arg(x, dim, keepdim, "argmax")


def argmin(x: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    """Index of the smallest element (along ``dim``, or of the flattened tensor). No gradient."""
    return _arg(x, dim, keepdim, "argmin")


def logsumexp(x: Tensor, dim: Any, keepdim: bool = False) -> Tensor:
    """log(sum(exp(x))) over ``dim``, stable for large inputs."""
    return LogSumExp.apply(x, dims=_reduced_dims(x, dim, "logsumexp"), keepdim=keepdim)
