"""Shape arithmetic shared by the ops: normalising dims, broadcasting, and which axes a reduction removes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def normalize_dim(dim: int, ndim: int, op: str = "op") -> int:
    """Map a possibly negative ``dim`` into ``range(ndim)``, with an error naming the op if it is out of range."""
    if not -max(ndim, 1) <= dim < max(ndim, 1):
        raise IndexError(f"{op}: dim {dim} is out of range for a tensor with {ndim} dimensions "
                         f"(expected -{max(ndim, 1)} <= dim < {max(ndim, 1)})")
    return dim % max(ndim, 1)


def normalize_dims(dim: Any, ndim: int, op: str = "op") -> tuple[int, ...]:
    """``None`` means every dim; an int or an iterable of ints is normalised and sorted."""
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    out = tuple(sorted({normalize_dim(d, ndim, op) for d in dims}))
    if len(out) != len(dims):
        raise ValueError(f"{op}: dim {dim} names a dimension twice")
    return out


def broadcast_shape(*shapes: Iterable[int], op: str = "op") -> tuple[int, ...]:
    """NumPy's broadcasting rule, with an error naming the op and all the shapes."""
    tuples = [tuple(s) for s in shapes]
    ndim = max(len(s) for s in tuples)
    out = []
    for i in range(-ndim, 0):
        sizes = {s[i] for s in tuples if len(s) >= -i} - {1}
        if len(sizes) > 1:
            raise ValueError(f"{op}: shapes {' and '.join(str(s) for s in tuples)} cannot be broadcast together")
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def kept_shape(shape: tuple[int, ...], dims: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of a reduction over ``dims`` with keepdim=True."""
    return tuple(1 if i in dims else n for i, n in enumerate(shape))
