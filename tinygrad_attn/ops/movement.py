"""Movement ops: reshape, reorder, select and combine elements without arithmetic.

Each backward moves the gradient back to where the elements came from: a reshape is undone by a
reshape, a permutation by the inverse permutation, a selection (``x[idx]``) by adding the gradient
into a zero tensor at the same places (``IndexAdd``, which accumulates repeated indices), and a
concatenation by slicing.

Indexing follows PyTorch where it differs from NumPy: an integer is basic indexing even next to index arrays,
so it never separates them (``x[1, :, idx]`` of a (5, 6, 7) tensor is (6, 3), where NumPy gives (3, 6)).

Ops whose result shares memory with the input (reshape, permute, expand, basic slicing) make *views*:
the view shares the input's version counter, so an in-place change through either is seen by both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..autograd import Function
from ..backend import Device, device_of
from ..backend import array_module as _xp
from ..backend import to_device as _move
from ..tensor import Tensor
from .reduce import sum_to
from .shapes import normalize_dim


def _view_of(out: Tensor, x: Tensor, always: bool = False) -> Tensor:
    """Mark ``out`` as a view of ``x`` if their memory overlaps (``always``: the op returns a view, no need to
    ask)."""
    if always or out.data is x.data or out.xp.may_share_memory(out.data, x.data):
        out._version = x._version
        out._base = x._base if x._base is not None else x
        out._base_fn = out._base.grad_fn  # the base's graph this view was taken from (see Function.apply)
    return out


class Reshape(Function):
    """z = x with a new shape.   The gradient is reshaped back."""

    def forward(self, x: Any, shape: tuple[int, ...]) -> Any:
        self.in_shape = x.shape
        try:
            return x.reshape(shape)
        except ValueError:
            raise ValueError(f"reshape: cannot reshape a tensor of shape {x.shape} ({x.size} elements) "
                             f"into shape {tuple(shape)}") from None

    def backward(self, g: Tensor) -> Tensor:
        return reshape(g, self.in_shape)


class Permute(Function):
    """z = x with its axes reordered.   The gradient is permuted by the inverse permutation."""

    def forward(self, x: Any, dims: tuple[int, ...]) -> Any:
        self.dims = dims
        return x.transpose(dims)

    def backward(self, g: Tensor) -> Tensor:
        inverse = [0] * len(self.dims)
        for i, d in enumerate(self.dims):
            inverse[d] = i
        return permute(g, tuple(inverse))


class Expand(Function):
    """z = x broadcast to a larger shape (no copy).   Backward sums over the broadcast axes."""

    def forward(self, x: Any, shape: tuple[int, ...]) -> Any:
        self.in_shape = x.shape
        return _xp(x).broadcast_to(x, shape)

    def backward(self, g: Tensor) -> Tensor:
        return sum_to(g, self.in_shape)


class Cat(Function):
    """z = the inputs joined along ``dim``.   Each input gets its slice of the gradient."""

    def forward(self, *xs: Any, dim: int) -> Any:
        self.dim, self.sizes = dim, [x.shape[dim] for x in xs]
        return _xp(xs[0]).concatenate(xs, axis=dim)

    def backward(self, g: Tensor) -> tuple[Tensor | None, ...]:
        pieces, start = [], 0
        for need, n in zip(self.needs_input_grad, self.sizes):
            index = (slice(None),) * self.dim + (slice(start, start + n),)
            pieces.append(getitem(g, index) if need else None)
            start += n
        return tuple(pieces)


class Pad(Function):
    """z = x with constant padding.   Backward slices the padding off the gradient."""

    def forward(self, x: Any, widths: tuple[tuple[int, int], ...], value: float) -> Any:
        self.widths = widths
        return _xp(x).pad(x, widths, mode="constant", constant_values=value)

    def backward(self, g: Tensor) -> Tensor:
        return getitem(g, tuple(slice(lo, g.shape[i] - hi) for i, (lo, hi) in enumerate(self.widths)))


class GetItem(Function):
    """z = x[index] (ints, slices, None, Ellipsis, integer arrays, boolean masks).
    Backward adds the gradient into zeros of x's shape at the same places (``IndexAdd``)."""

    def forward(self, x: Any, index: Any) -> Any:
        self.in_shape, self.index = x.shape, index
        try:
            return x[index.basic][index.advanced] if isinstance(index, _IntsFirst) else x[index]
        except IndexError as e:
            raise IndexError(f"getitem: {e} (indexing a tensor of shape {x.shape})") from None

    def backward(self, g: Tensor) -> Tensor:
        return IndexAdd.apply(g, shape=self.in_shape, index=self.index)


class IndexAdd(Function):
    """z = zeros(shape) with ``z[index] += x`` (repeated indices accumulate).   Backward: ``g[index]``.
    This is the adjoint of ``GetItem``, and ``GetItem`` is its adjoint."""

    def forward(self, x: Any, shape: tuple[int, ...], index: Any) -> Any:
        xp = _xp(x)
        self.index = index
        z = xp.zeros(shape, dtype=x.dtype)
        target, index = (z[index.basic], index.advanced) if isinstance(index, _IntsFirst) else (z, index)
        if _is_basic(index):
            target[index] = x
        else:
            xp.add.at(target, index, x)  # NumPy's and CuPy's scatter-add (CuPy with atomics)
        return z

    def backward(self, g: Tensor) -> Tensor:
        return GetItem.apply(g, index=self.index)


class IndexPut(Function):
    """z = x with ``z[index] = v`` (what ``x[index] = v`` computes).
    dz/dx: the gradient, with zeros where x was overwritten;  dz/dv: the gradient at index, summed over
    whatever broadcasting made v fit."""

    def forward(self, x: Any, v: Any, index: Any) -> Any:
        self.index, self.v_shape = index, v.shape
        z = x.copy()
        target, index = (z[index.basic], index.advanced) if isinstance(index, _IntsFirst) else (z, index)
        try:
            target[index] = v
        except (IndexError, ValueError) as e:
            raise type(e)(f"setitem: {e} (tensor of shape {x.shape}, value of shape {v.shape})") from None
        return z

    def backward(self, g: Tensor) -> tuple[Tensor | None, Tensor | None]:
        gx = gv = None
        if self.needs_input_grad[0]:
            zero = Tensor._make(g.xp.zeros((), dtype=g.dtype))
            gx = IndexPut.apply(g, zero, index=self.index)
        if self.needs_input_grad[1]:
            picked = GetItem.apply(g, index=self.index)
            extra = picked.ndim - len(self.v_shape)
            if extra < 0:
                picked = reshape(picked, (1,) * -extra + tuple(picked.shape))
            gv = sum_to(picked, self.v_shape)
        return gx, gv


class CopyInto(Function):
    """z = v broadcast to x's shape and cast to x's dtype (``x.copy_(v)``, ``x.fill_(v)``).
    x's old values are gone, so x gets no gradient; v gets the gradient summed to its shape."""

    def forward(self, x: Any, v: Any) -> Any:
        self.v_shape, self.v_dtype = v.shape, v.dtype
        return _xp(x).broadcast_to(v, x.shape).astype(x.dtype, copy=True)

    def backward(self, g: Tensor) -> tuple[None, Tensor]:
        from .elementwise import cast

        return None, cast(sum_to(g, self.v_shape), self.v_dtype)


class ToDevice(Function):
    """z = x copied to another device.   The gradient is copied back."""

    def forward(self, x: Any, target: Device) -> Any:
        self.source = device_of(x)
        return _move(x, target)

    def backward(self, g: Tensor) -> Tensor:
        return ToDevice.apply(g, target=self.source)


# ---- index normalisation -----------------------------------------------------------------------------------


class _IntsFirst:
    """``x[index]`` in PyTorch's order as ``x[basic][advanced]``: first the ints, slices, None and Ellipsis (a
    view, index arrays replaced by full slices), then the index arrays alone, on the dims where they landed."""

    __slots__ = ("basic", "advanced")

    def __init__(self, basic: tuple, advanced: tuple) -> None:
        self.basic, self.advanced = basic, advanced

    def __repr__(self) -> str:
        return f"[{self.basic}][{self.advanced}]"


def _is_array(i: Any) -> bool:
    return hasattr(i, "ndim") and hasattr(i, "dtype")


def _torch_order(index: Any, ndim: int) -> Any:
    """The index, or an ``_IntsFirst`` where it mixes ints with index arrays.

    NumPy counts such ints as index arrays: advanced indices separated by a slice then put their dims first.
    PyTorch applies the ints first, so only the arrays count. A 0-d integer array is an int in PyTorch."""
    if not isinstance(index, tuple) or not any(_is_array(i) and i.ndim > 0 for i in index):
        return index
    if any(isinstance(i, bool) or (_is_array(i) and i.ndim == 0 and i.dtype.kind == "b") for i in index):
        return index  # a bool scalar is a 0-d mask, in both
    if not any(isinstance(i, int) or (_is_array(i) and i.ndim == 0) for i in index):
        return index
    used = sum(i.ndim if _is_array(i) and i.dtype.kind == "b" else 1 for i in index
               if i is not None and i is not Ellipsis)
    basic: list = []
    advanced: list = []  # one entry per dim of x[basic]: an array, or a full slice
    for i in index:
        if i is Ellipsis:
            basic.append(Ellipsis)
            advanced.extend([slice(None)] * (ndim - used))
        elif _is_array(i) and i.ndim > 0:
            basic.extend([slice(None)] * (i.ndim if i.dtype.kind == "b" else 1))
            advanced.append(i)  # a k-dim mask covers k dims
        elif isinstance(i, int) or _is_array(i):
            basic.append(int(i))
        else:  # a slice or None: one dim of x[basic]
            basic.append(i)
            advanced.append(slice(None))
    return _IntsFirst(tuple(basic), tuple(advanced))


def _is_basic(index: Any) -> bool:
    """Basic indexing (ints, slices, None, Ellipsis) selects a view and never repeats an element."""
    items = index if isinstance(index, tuple) else (index,)
    return all(i is None or i is Ellipsis or isinstance(i, (int, slice)) for i in items)


def _normalize_index(x: Tensor, index: Any) -> Any:
    """Turn Tensors and lists inside an index into arrays on x's device (bool stays a mask)."""
    items = index if isinstance(index, tuple) else (index,)
    out = []
    for i in items:
        if isinstance(i, Tensor):
            if i.dtype.kind not in "iub":
                raise IndexError(f"getitem: tensors used as indices must be integer or boolean, got {i.dtype}")
            i = i.data
            if device_of(i) != x.device:
                raise RuntimeError(f"getitem: the index is on {device_of(i)} but the tensor is on {x.device}")
        elif isinstance(i, (list, tuple)) or (hasattr(i, "__array_priority__") and hasattr(i, "dtype")):
            i = x.xp.asarray(_move(i, x.device) if hasattr(i, "dtype") else i)
            if i.size == 0 and i.dtype.kind == "f":  # [] is an empty list of indices, not of floats
                i = i.astype(x.xp.int64)
            if i.dtype.kind not in "iub":
                raise IndexError(f"getitem: arrays used as indices must be integer or boolean, got {i.dtype}")
        elif hasattr(i, "__index__") and not isinstance(i, (int, slice)) and i is not None and i is not Ellipsis:
            i = int(i)
        out.append(i)
    return tuple(out) if isinstance(index, tuple) else out[0]


# ---- the functions users call ------------------------------------------------------------------------------


def reshape(x: Tensor, shape: Sequence[int]) -> Tensor:
    shape = tuple(int(n) for n in shape)
    if shape == tuple(x.shape):
        return x
    return _view_of(Reshape.apply(x, shape=shape), x)


def flatten(x: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    if x.ndim == 0:
        return reshape(x, (1,))
    s, e = normalize_dim(start_dim, x.ndim, "flatten"), normalize_dim(end_dim, x.ndim, "flatten")
    n = 1
    for d in x.shape[s:e + 1]:
        n *= d
    return reshape(x, x.shape[:s] + (n,) + x.shape[e + 1:])


def permute(x: Tensor, dims: Sequence[int]) -> Tensor:
    n = x.ndim
    dims = tuple([d if 0 <= d < n else normalize_dim(d, n, "permute") for d in dims])
    identity = tuple(range(n))
    if sorted(dims) != list(identity):
        raise ValueError(f"permute: {dims} is not a permutation of the {n} dims of shape {tuple(x.shape)}")
    if dims == identity:
        return x
    return _view_of(Permute.apply(x, dims=dims), x, always=True)  # NumPy's and CuPy's transpose are views


def transpose(x: Tensor, dim0: int, dim1: int) -> Tensor:
    dims = list(range(x.ndim))
    a, b = normalize_dim(dim0, x.ndim, "transpose"), normalize_dim(dim1, x.ndim, "transpose")
    if x.ndim == 0:  # dims 0 and -1 of a 0-d tensor: nothing to swap
        return x
    dims[a], dims[b] = dims[b], dims[a]
    return permute(x, dims)


def expand(x: Tensor, shape: Sequence[int]) -> Tensor:
    """Broadcast to ``shape``; -1 keeps a dimension's size (PyTorch's ``expand``)."""
    shape = tuple(shape)
    lead = len(shape) - x.ndim
    if lead < 0:
        raise ValueError(f"expand: cannot expand shape {tuple(x.shape)} to fewer dims {shape}")
    if -1 in shape[:lead]:
        raise ValueError(f"expand: -1 keeps the size of an existing dim, it cannot size a new leading dim "
                         f"(shape {tuple(x.shape)} to {shape})")
    shape = tuple(x.shape[i - lead] if n == -1 else n for i, n in enumerate(shape))
    for i, n in enumerate(x.shape):
        if n != 1 and n != shape[lead + i]:
            raise ValueError(f"expand: cannot expand shape {tuple(x.shape)} to {shape}")
    if shape == tuple(x.shape):
        return x
    return _view_of(Expand.apply(x, shape=shape), x, always=True)  # broadcast_to is a view


def squeeze(x: Tensor, dim: Any = None) -> Tensor:
    """Remove dims of size 1 (all of them, or those in ``dim``; a dim that is not 1 is left alone)."""
    if dim is None:
        dims = {i for i, n in enumerate(x.shape) if n == 1}
    else:
        dims = {normalize_dim(d, x.ndim, "squeeze") for d in ((dim,) if isinstance(dim, int) else dim)}
    return reshape(x, tuple(n for i, n in enumerate(x.shape) if not (i in dims and n == 1)))


def unsqueeze(x: Tensor, dim: int) -> Tensor:
    d = normalize_dim(dim, x.ndim + 1, "unsqueeze")
    return reshape(x, x.shape[:d] + (1,) + x.shape[d:])


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Join tensors along an existing dim; all other dims must match."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: expected a non-empty list of tensors")
    d = normalize_dim(dim, tensors[0].ndim, "cat")
    first = tensors[0].shape
    for t in tensors[1:]:
        if t.ndim != len(first) or any(a != b for i, (a, b) in enumerate(zip(t.shape, first)) if i != d):
            raise ValueError(f"cat: shapes {tuple(first)} and {tuple(t.shape)} differ outside dim {d}")
        if t.dtype != tensors[0].dtype:
            raise TypeError(f"cat: dtypes {tensors[0].dtype} and {t.dtype} differ; convert with .to(dtype)")
    if len(tensors) == 1:
        return tensors[0]
    return Cat.apply(*tensors, dim=d)


def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Join tensors of the same shape along a new dim."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: expected a non-empty list of tensors")
    for t in tensors[1:]:
        if t.shape != tensors[0].shape:
            raise ValueError(f"stack: all tensors must have the same shape, got {tuple(tensors[0].shape)} "
                             f"and {tuple(t.shape)}")
    d = normalize_dim(dim, tensors[0].ndim + 1, "stack")
    return cat([unsqueeze(t, d) for t in tensors], d)


def split(x: Tensor, split_size_or_sections: int | Sequence[int], dim: int = 0) -> tuple[Tensor, ...]:
    """Split into chunks of ``split_size`` (the last may be smaller) or of the listed sizes."""
    d = normalize_dim(dim, x.ndim, "split")
    n = x.shape[d]
    if isinstance(split_size_or_sections, int):
        step = split_size_or_sections
        if step <= 0:
            raise ValueError(f"split: split_size must be positive, got {step}")
        sizes = [min(step, n - i) for i in range(0, n, step)] or [0]
    else:
        sizes = list(split_size_or_sections)
        if sum(sizes) != n:
            raise ValueError(f"split: sizes {sizes} sum to {sum(sizes)}, but dim {d} has size {n}")
    out, start = [], 0
    for s in sizes:
        out.append(getitem(x, (slice(None),) * d + (slice(start, start + s),)))
        start += s
    return tuple(out)


def chunk(x: Tensor, chunks: int, dim: int = 0) -> tuple[Tensor, ...]:
    """Split into ``chunks`` pieces of size ceil(n / chunks) (the last may be smaller); an empty dim gives
    ``chunks`` empty pieces, as in PyTorch."""
    if chunks <= 0:
        raise ValueError(f"chunk: chunks must be positive, got {chunks}")
    n = x.shape[normalize_dim(dim, x.ndim, "chunk")]
    if n == 0:
        return split(x, [0] * chunks, dim)
    return split(x, max(1, -(-n // chunks)), dim)


def repeat(x: Tensor, sizes: Sequence[int]) -> Tensor:
    """Tile x: ``x.repeat(2, 3)`` repeats it twice along dim 0 and three times along dim 1."""
    sizes = tuple(sizes)
    if len(sizes) < x.ndim:
        raise ValueError(f"repeat: give at least {x.ndim} sizes for a tensor of shape {tuple(x.shape)}")
    shape = (1,) * (len(sizes) - x.ndim) + tuple(x.shape)
    interleaved = [d for n in shape for d in (1, n)]
    expanded = [d for r, n in zip(sizes, shape) for d in (r, n)]
    return reshape(expand(reshape(x, interleaved), expanded), [r * n for r, n in zip(sizes, shape)])


def pad(x: Tensor, pad: Sequence[int], value: float = 0.0) -> Tensor:
    """Constant padding, PyTorch's convention: ``pad=(left, right, top, bottom, ...)`` from the last dim."""
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        raise ValueError(f"pad: expected an even number of at most {2 * x.ndim} widths, got {tuple(pad)}")
    if any(p < 0 for p in pad):
        raise ValueError(f"pad: negative widths are not supported, got {tuple(pad)}")
    widths = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        widths[x.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    return Pad.apply(x, widths=tuple(widths), value=value)


def getitem(x: Tensor, index: Any) -> Tensor:
    index = _torch_order(_normalize_index(x, index), x.ndim)
    if _is_basic(index) and not any(i is Ellipsis for i in (index if isinstance(index, tuple) else (index,))):
        index = (*(index if isinstance(index, tuple) else (index,)), Ellipsis)  # x[0] of a vector: a 0-d view
    out = GetItem.apply(x, index=index)
    return _view_of(out, x, always=True) if _is_basic(index) else out  # basic indexing gives a view


def index_put(x: Tensor, index: Any, value: Tensor) -> Tensor:
    """Out-of-place ``x[index] = value``: what ``Tensor.__setitem__`` writes back into x."""
    return IndexPut.apply(x, value, index=_torch_order(_normalize_index(x, index), x.ndim))


def copy_into(x: Tensor, value: Tensor) -> Tensor:
    """``value`` broadcast to x's shape and dtype: what ``copy_`` and ``fill_`` write into x."""
    return CopyInto.apply(x, value)


def gather(x: Tensor, dim: int, index: Tensor) -> Tensor:
    """``out[i][j][k] = x[i][index[i][j][k]][k]`` for dim=1 (PyTorch's gather). Backward scatter-adds."""
    d = normalize_dim(dim, x.ndim, "gather")
    if x.ndim == 0 and isinstance(index, Tensor):  # a 0-d tensor is a row of one (dim 0 or -1)
        return reshape(gather(reshape(x, (1,)), 0, reshape(index, (-1,))), tuple(index.shape))
    if not isinstance(index, Tensor) or index.dtype.kind not in "iu":
        raise TypeError("gather: index must be an integer tensor")
    if index.ndim != x.ndim:
        raise ValueError(f"gather: index has {index.ndim} dims but input has {x.ndim} (shape {tuple(x.shape)})")
    for i, (n, m) in enumerate(zip(index.shape, x.shape)):
        if i != d and n > m:
            raise ValueError(f"gather: index shape {tuple(index.shape)} is larger than input shape "
                             f"{tuple(x.shape)} in dim {i}")
    xp = x.xp
    if index.numel() and (int(index.data.max()) >= x.shape[d] or int(index.data.min()) < -x.shape[d]):
        raise IndexError(f"gather: index out of range for dim {d} of size {x.shape[d]}")
    grids = xp.ogrid[tuple(slice(0, n) for n in index.shape)] if index.ndim else ()
    full = tuple(index.data if i == d else grids[i] for i in range(index.ndim))
    return GetItem.apply(x, index=full)


def _triangle(x: Tensor, diagonal: int, upper: bool) -> Tensor:
    from .elementwise import where

    if x.ndim < 2:
        raise ValueError(f"{'triu' if upper else 'tril'}: needs at least 2 dims, got shape {tuple(x.shape)}")
    ones = x.xp.ones(x.shape[-2:], dtype=bool)
    keep = x.xp.triu(ones, diagonal) if upper else x.xp.tril(ones, diagonal)
    zero = Tensor._make(x.xp.zeros((), dtype=x.dtype))
    return where(Tensor._make(keep), x, zero)


def triu(x: Tensor, diagonal: int = 0) -> Tensor:
    """Keep the upper triangle (j - i >= diagonal) of the last two dims, zero the rest."""
    return _triangle(x, diagonal, upper=True)


def tril(x: Tensor, diagonal: int = 0) -> Tensor:
    """Keep the lower triangle (j - i <= diagonal) of the last two dims, zero the rest."""
    return _triangle(x, diagonal, upper=False)


def to_device(x: Tensor, target: Device) -> Tensor:
    return ToDevice.apply(x, target=target)
