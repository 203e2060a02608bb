"""The Tensor: an array (NumPy or CuPy) plus what autograd needs to know about it.

A Tensor is deliberately thin. It holds

- ``data``: the array itself (``numpy.ndarray`` on the CPU, ``cupy.ndarray`` on a GPU);
- ``requires_grad``: whether gradients should flow to it;
- ``grad_fn``: the Function that produced it (None for leaves: tensors the user made);
- ``grad``: where ``backward()`` accumulates d(loss)/d(this tensor), for leaves;
- ``_version``: a counter bumped by every in-place change, shared with views of the same memory.

Every method that computes something calls an op from ``tinygrad_attn.ops`` or ``functional``;
the Tensor itself contains no math.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import autograd
from . import dtypes as _dtypes
from .backend import Device, array_module, device, device_of, module_for, on_device_of, scalar_like, to_device


class Tensor:
    __slots__ = ("data", "requires_grad", "grad", "grad_fn", "_version", "_base", "_base_fn", "_hooks",
                 "__weakref__")

    # Let NumPy defer to us in mixed expressions (ndarray + Tensor -> Tensor.__radd__).
    __array_priority__ = 1000

    def __init__(self, data: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> None:
        t = tensor(data, dtype=dtype, device=device, requires_grad=requires_grad)
        self._init(t.data, requires_grad, None)

    def _init(self, data: Any, requires_grad: bool, grad_fn: Any) -> None:
        self.data = data
        self.requires_grad = requires_grad
        self.grad: Tensor | None = None
        self.grad_fn = grad_fn
        self._version = autograd.VersionCounter()
        self._base: Tensor | None = None  # for a view: the tensor that owns the memory
        self._base_fn: Any = None  # for a view: the base's grad_fn when the view was taken
        self._hooks: Sequence[Callable] = ()  # a list once register_hook adds one

    @classmethod
    def _make(cls, data: Any, requires_grad: bool = False, grad_fn: Any = None) -> Tensor:
        """Wrap an array without copying or checking (used by ops: the fast path)."""
        if type(data) is not np.ndarray and isinstance(data, np.generic):
            data = np.asarray(data)  # NumPy gives scalars for 0-d results; tensors hold (writable) arrays
        t = object.__new__(cls)  # what _init does, inlined (this runs once per op)
        t.data = data
        t.requires_grad = requires_grad
        t.grad = None
        t.grad_fn = grad_fn
        t._version = autograd.VersionCounter()
        t._base = None
        t._base_fn = None
        t._hooks = ()
        return t

    # ---- basic attributes -------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def device(self) -> Device:
        return device_of(self.data)

    @property
    def xp(self) -> Any:
        """The array module of this tensor's data: numpy or cupy."""
        return array_module(self.data)

    @property
    def ndim(self) -> int:
        return self.data.ndim

    def dim(self) -> int:
        return self.data.ndim

    def size(self, dim: int | None = None) -> tuple[int, ...] | int:
        return self.shape if dim is None else self.shape[dim]

    def numel(self) -> int:
        return int(self.data.size)

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    @property
    def T(self) -> Tensor:
        """All dimensions reversed (for a matrix, the transpose)."""
        return self.permute(*reversed(range(self.ndim)))

    @property
    def mT(self) -> Tensor:
        """The last two dimensions swapped (a batch of transposed matrices)."""
        return self.transpose(-2, -1)

    def __repr__(self) -> str:
        body = np.array2string(self.numpy(), separator=", ", precision=4, threshold=200, prefix="tensor(")
        extra = [f"dtype={self.dtype}", f"device='{self.device}'"]
        if self.grad_fn is not None:
            extra.append(f"grad_fn=<{self.grad_fn.name}>")
        elif self.requires_grad:
            extra.append("requires_grad=True")
        return "tensor(" + ", ".join([body, *extra]) + ")"

    # ---- leaving the framework --------------------------------------------------------------------
    def numpy(self) -> np.ndarray:
        """The data as a NumPy array (a copy from the GPU; the same memory on the CPU)."""
        return to_device(self.data, Device("cpu"))

    def item(self) -> float | int | bool:
        if self.numel() != 1:
            raise ValueError(f"item() needs a tensor with one element, this one has shape {self.shape}")
        return self.numpy().reshape(()).item()

    def tolist(self) -> Any:
        return self.numpy().tolist()

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __bool__(self) -> bool:
        if self.numel() != 1:
            raise RuntimeError(f"the truth value of a tensor with {self.numel()} elements is ambiguous")
        return bool(self.item())

    def __index__(self) -> int:
        if self.dtype.kind not in "iu" or self.numel() != 1:
            raise TypeError("only integer tensors of one element can be used as an index")
        return int(self.item())

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = self.numpy()
        return a.astype(dtype) if dtype is not None else a

    # ---- moving and converting ---------------------------------------------------------------------
    def to(self, *args: Any, dtype: Any = None, device: Any = None) -> Tensor:
        """``.to("cuda")``, ``.to(ta.float64)``, ``.to("cpu", ta.float32)``: differentiable."""
        for a in args:
            if isinstance(a, (str, Device)) and not _is_dtype_name(a):
                device = a
            else:
                dtype = a
        out = self
        if device is not None and _dev(device) != self.device:
            out = movement.to_device(out, _dev(device))
        if dtype is not None and _dtypes.to_dtype(dtype) != out.dtype:
            out = elementwise.cast(out, _dtypes.to_dtype(dtype))
        return out

    def cpu(self) -> Tensor:
        return self.to("cpu")

    def cuda(self, index: int | None = None) -> Tensor:
        return self.to("cuda" if index is None else f"cuda:{index}")

    def type_as(self, other: Tensor) -> Tensor:
        return self.to(other.dtype)

    def detach(self) -> Tensor:
        """The same data, cut from the graph (shares memory and version counter, so in-place changes
        through it are still caught; unlike a view it may be changed in place)."""
        out = Tensor._make(self.data)
        out._version = self._version
        return out

    def detach_(self) -> Tensor:
        self.grad_fn, self.requires_grad = None, False
        return self

    def clone(self) -> Tensor:
        return elementwise.clone(self)

    def contiguous(self) -> Tensor:
        return self if self.data.flags.c_contiguous else self.clone()

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        if not self.is_leaf:
            raise RuntimeError("requires_grad_ can only change leaf tensors; use .detach().requires_grad_() "
                               "to make a new leaf from this result")
        if requires_grad and not _dtypes.is_floating(self.dtype):
            raise RuntimeError(f"only floating-point tensors can require gradients, this one is {self.dtype}")
        self.requires_grad = requires_grad
        return self

    # ---- autograd ----------------------------------------------------------------------------------
    def backward(self, gradient: Any = None, retain_graph: bool | None = None, create_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf in the graph behind self."""
        autograd.backward(self, None if gradient is None else [gradient], retain_graph, create_graph)

    def register_hook(self, hook: Callable[[Tensor], Tensor | None]) -> Callable[[], None]:
        """Call ``hook(grad)`` when the gradient of this tensor is computed; a returned tensor replaces
        the gradient. Returns a function that removes the hook."""
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that does not require grad")
        # the first hook replaces the shared empty default with a list of this tensor's own
        if self.grad_fn is None:
            hooks = self._hooks = self._hooks if isinstance(self._hooks, list) else []
        else:
            node = self.grad_fn
            hooks = node.hooks = node.hooks if isinstance(node.hooks, list) else []
        hooks.append(hook)
        return lambda: hooks.remove(hook) if hook in hooks else None

    def retain_grad(self) -> None:
        """Keep the gradient of this non-leaf tensor in ``.grad`` after backward."""
        if self.grad_fn is None or self.grad_fn.retain_hook is not None:
            return
        ref = autograd.weak_hook_target(self)

        def keep(g: Tensor) -> None:
            t = ref()
            if t is not None:
                g = g if g.requires_grad else Tensor._make(g.data.copy())  # .grad must own writable memory
                t.grad = g if t.grad is None else t.grad + g

        self.grad_fn.retain_hook = keep

    # ---- in-place changes ---------------------------------------------------------------------------
    def _inplace(self, op: Callable[..., Tensor], *args: Any) -> Tensor:
        """Run ``op(self, *args)`` out of place, then write the result into self's memory.

        The graph gains a node as for the out-of-place op, and self takes it as its ``grad_fn``. If that
        node saved self's old value for backward, it gets a private copy first. Every tensor that saved
        this memory earlier sees the version bump and refuses to backward with the changed values.
        """
        recording = autograd.is_grad_enabled()
        if recording and self.requires_grad and self.grad_fn is None:
            raise RuntimeError(
                "a leaf tensor that requires grad is being modified in place. Wrap the update in "
                "`with ta.no_grad():` (as optimizers do) or work on a copy (x.clone())."
            )
        if recording and self._base is not None and self._base.requires_grad:
            raise RuntimeError("in-place change of a view of a tensor that requires grad is not supported by "
                               "autograd: use the out-of-place op instead")
        old = Tensor._make(self.data, self.requires_grad, self.grad_fn)  # the value before the change
        result = op(old, *args)
        if tuple(result.shape) != tuple(self.shape):
            raise RuntimeError(f"in-place op: result shape {tuple(result.shape)} cannot be written into a tensor "
                               f"of shape {tuple(self.shape)}")
        node = result.grad_fn
        if node is not None and self._base is not None:
            raise RuntimeError("in-place op with an operand that requires grad on a view of a tensor that does "
                               "not: the base tensor would miss the gradient. Write base[index] = base[index] + "
                               "value instead, or use the out-of-place op")
        if self.dtype != result.dtype and not self.xp.can_cast(result.dtype, self.dtype, "same_kind"):
            raise TypeError(f"in-place op: the result has dtype {result.dtype}, which cannot be written into a "
                            f"tensor of dtype {self.dtype}; use the out-of-place op")
        if old._version.saved:  # some op kept the old value for backward: give it a private copy
            old.data = self.data.copy()
        self.xp.copyto(self.data, result.data, casting="same_kind")
        self._version.value += 1
        if node is not None:
            self.grad_fn, self.requires_grad = node, True
            if hasattr(node, "_saved"):
                node._saved = tuple(_rebind_output(s, self) for s in node._saved)
        return self

    def add_(self, other: Any, alpha: float = 1) -> Tensor:
        return self._inplace(lambda t: t + (other * alpha if alpha != 1 else other))

    def sub_(self, other: Any, alpha: float = 1) -> Tensor:
        return self._inplace(lambda t: t - (other * alpha if alpha != 1 else other))

    def mul_(self, other: Any) -> Tensor:
        return self._inplace(lambda t: t * other)

    def div_(self, other: Any) -> Tensor:
        return self._inplace(lambda t: t / other)

    def pow_(self, other: Any) -> Tensor:
        return self._inplace(lambda t: t**other)

    def clamp_(self, min: Any = None, max: Any = None) -> Tensor:
        return self._inplace(lambda t: t.clamp(min, max))

    def masked_fill_(self, mask: Tensor, value: Any) -> Tensor:
        return self._inplace(lambda t: t.masked_fill(mask, value))

    def copy_(self, src: Any) -> Tensor:
        return self._inplace(lambda t: movement.copy_into(t, _coerce(src, t)))

    def zero_(self) -> Tensor:
        return self.fill_(0)

    def fill_(self, value: Any) -> Tensor:
        return self._inplace(lambda t: movement.copy_into(t, _coerce(value, t)))

    def __iadd__(self, other: Any) -> Tensor:
        return self.add_(other)

    def __isub__(self, other: Any) -> Tensor:
        return self.sub_(other)

    def __imul__(self, other: Any) -> Tensor:
        return self.mul_(other)

    def __itruediv__(self, other: Any) -> Tensor:
        return self.div_(other)

    def __setitem__(self, index: Any, value: Any) -> None:
        self._inplace(lambda t: movement.index_put(t, index, _coerce(value, t)))

    # ---- arithmetic ---------------------------------------------------------------------------------
    def __add__(self, other: Any) -> Tensor:
        return elementwise.add(self, other)

    def __radd__(self, other: Any) -> Tensor:
        return elementwise.add(_coerce(other, self), self)

    def __sub__(self, other: Any) -> Tensor:
        return elementwise.sub(self, other)

    def __rsub__(self, other: Any) -> Tensor:
        return elementwise.sub(_coerce(other, self), self)

    def __mul__(self, other: Any) -> Tensor:
        return elementwise.mul(self, other)

    def __rmul__(self, other: Any) -> Tensor:
        return elementwise.mul(_coerce(other, self), self)

    def __truediv__(self, other: Any) -> Tensor:
        return elementwise.div(self, other)

    def __rtruediv__(self, other: Any) -> Tensor:
        return elementwise.div(_coerce(other, self), self)

    def __pow__(self, other: Any) -> Tensor:
        return elementwise.pow(self, other if isinstance(other, Tensor) else _python_scalar(other))

    def __rpow__(self, other: Any) -> Tensor:
        return elementwise.pow(_coerce(other, self), self)

    def __matmul__(self, other: Tensor) -> Tensor:
        return linalg.matmul(self, other)

    def __rmatmul__(self, other: Any) -> Tensor:
        return linalg.matmul(_coerce(other, self), self)

    def __neg__(self) -> Tensor:
        return elementwise.neg(self)

    def __pos__(self) -> Tensor:
        return self

    def __abs__(self) -> Tensor:
        return elementwise.abs(self)

    # comparisons: no gradient, boolean results
    def _compare(self, other: Any, name: str) -> Tensor:
        other = _coerce(other, self)
        return Tensor._make(getattr(self.xp, name)(self.data, other.data))

    def __eq__(self, other: Any) -> Tensor:  # type: ignore[override]
        return self._compare(other, "equal")

    def __ne__(self, other: Any) -> Tensor:  # type: ignore[override]
        return self._compare(other, "not_equal")

    def __lt__(self, other: Any) -> Tensor:
        return self._compare(other, "less")

    def __le__(self, other: Any) -> Tensor:
        return self._compare(other, "less_equal")

    def __gt__(self, other: Any) -> Tensor:
        return self._compare(other, "greater")

    def __ge__(self, other: Any) -> Tensor:
        return self._compare(other, "greater_equal")

    eq, ne, lt, le, gt, ge = __eq__, __ne__, __lt__, __le__, __gt__, __ge__
    __hash__ = object.__hash__

    def logical_not(self) -> Tensor:
        return Tensor._make(self.xp.logical_not(self.data))

    def __invert__(self) -> Tensor:
        return Tensor._make(self.xp.invert(self.data))

    def __and__(self, other: Any) -> Tensor:
        return Tensor._make(self.xp.logical_and(self.data, _coerce(other, self).data))

    def __or__(self, other: Any) -> Tensor:
        return Tensor._make(self.xp.logical_or(self.data, _coerce(other, self).data))

    def isnan(self) -> Tensor:
        return Tensor._make(self.xp.isnan(self.data))

    def isfinite(self) -> Tensor:
        return Tensor._make(self.xp.isfinite(self.data))

    def any(self) -> Tensor:
        return Tensor._make(self.xp.asarray(self.data.any()))

    def all(self) -> Tensor:
        return Tensor._make(self.xp.asarray(self.data.all()))

    # ---- elementwise math (see ops/elementwise.py) ---------------------------------------------------
    def add(self, other: Any, alpha: float = 1) -> Tensor:
        return self + (other * alpha if alpha != 1 else other)

    def sub(self, other: Any, alpha: float = 1) -> Tensor:
        return self - (other * alpha if alpha != 1 else other)

    def mul(self, other: Any) -> Tensor:
        return self * other

    def div(self, other: Any) -> Tensor:
        return self / other

    def pow(self, exponent: Any) -> Tensor:
        return self**exponent

    def neg(self) -> Tensor:
        return -self

    def exp(self) -> Tensor:
        return elementwise.exp(self)

    def log(self) -> Tensor:
        return elementwise.log(self)

    def sqrt(self) -> Tensor:
        return elementwise.sqrt(self)

    def rsqrt(self) -> Tensor:
        return elementwise.sqrt(self) ** -1

    def square(self) -> Tensor:
        return self * self

    def reciprocal(self) -> Tensor:
        return self**-1

    def abs(self) -> Tensor:
        return elementwise.abs(self)

    def sin(self) -> Tensor:
        return elementwise.sin(self)

    def cos(self) -> Tensor:
        return elementwise.cos(self)

    def tanh(self) -> Tensor:
        return elementwise.tanh(self)

    def sigmoid(self) -> Tensor:
        return elementwise.sigmoid(self)

    def relu(self) -> Tensor:
        return elementwise.relu(self)

    def clamp(self, min: Any = None, max: Any = None) -> Tensor:
        return elementwise.clamp(self, min, max)

    clip = clamp

    def maximum(self, other: Any) -> Tensor:
        return elementwise.maximum(self, _coerce(other, self))

    def minimum(self, other: Any) -> Tensor:
        return elementwise.minimum(self, _coerce(other, self))

    def masked_fill(self, mask: Tensor, value: Any) -> Tensor:
        return elementwise.where(mask, _coerce(value, self), self)

    # ---- reductions (see ops/reduce.py) ---------------------------------------------------------------
    def sum(self, dim: Any = None, keepdim: bool = False, *, axis: Any = None, keepdims: Any = None) -> Tensor:
        return reduce.sum(self, _alias(dim, axis), _alias(keepdim, keepdims))

    def mean(self, dim: Any = None, keepdim: bool = False, *, axis: Any = None, keepdims: Any = None) -> Tensor:
        return reduce.mean(self, _alias(dim, axis), _alias(keepdim, keepdims))

    def var(self, dim: Any = None, unbiased: bool | None = None, keepdim: bool = False, *,
            correction: int | None = None, axis: Any = None, keepdims: Any = None) -> Tensor:
        return reduce.var(self, _alias(dim, axis), _correction(unbiased, correction), _alias(keepdim, keepdims))

    def std(self, dim: Any = None, unbiased: bool | None = None, keepdim: bool = False, *,
            correction: int | None = None, axis: Any = None, keepdims: Any = None) -> Tensor:
        return reduce.std(self, _alias(dim, axis), _correction(unbiased, correction), _alias(keepdim, keepdims))

    def max(self, dim: Any = None, keepdim: bool = False, *, axis: Any = None, keepdims: Any = None) -> Any:
        return reduce.max(self, _alias(dim, axis), _alias(keepdim, keepdims))

    def min(self, dim: Any = None, keepdim: bool = False, *, axis: Any = None, keepdims: Any = None) -> Any:
        return reduce.min(self, _alias(dim, axis), _alias(keepdim, keepdims))

    def amax(self, dim: Any = None, keepdim: bool = False) -> Tensor:
        return reduce.amax(self, dim, keepdim)

    def amin(self, dim: Any = None, keepdim: bool = False) -> Tensor:
        return reduce.amin(self, dim, keepdim)

    def argmax(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        return reduce.argmax(self, dim, keepdim)

    def argmin(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        return reduce.argmin(self, dim, keepdim)

    def logsumexp(self, dim: Any, keepdim: bool = False) -> Tensor:
        return reduce.logsumexp(self, dim, keepdim)

    def softmax(self, dim: int = -1) -> Tensor:
        return functional.softmax(self, dim)

    def log_softmax(self, dim: int = -1) -> Tensor:
        return functional.log_softmax(self, dim)

    # ---- shape and indexing (see ops/movement.py) --------------------------------------------------------
    def reshape(self, *shape: Any) -> Tensor:
        return movement.reshape(self, _shape_args(shape))

    def view(self, *shape: Any) -> Tensor:
        return movement.reshape(self, _shape_args(shape))

    def view_as(self, other: Tensor) -> Tensor:
        return self.reshape(other.shape)

    def reshape_as(self, other: Tensor) -> Tensor:
        return self.reshape(other.shape)

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        return movement.flatten(self, start_dim, end_dim)

    def unflatten(self, dim: int, sizes: Sequence[int]) -> Tensor:
        dim = movement.normalize_dim(dim, self.ndim, "unflatten")
        return self.reshape(self.shape[:dim] + tuple(sizes) + self.shape[dim + 1:])

    def transpose(self, dim0: int, dim1: int) -> Tensor:
        return movement.transpose(self, dim0, dim1)

    def permute(self, *dims: Any) -> Tensor:
        return movement.permute(self, _shape_args(dims))

    def expand(self, *shape: Any) -> Tensor:
        return movement.expand(self, _shape_args(shape))

    def expand_as(self, other: Tensor) -> Tensor:
        return self.expand(other.shape)

    def broadcast_to(self, shape: Sequence[int]) -> Tensor:
        return movement.expand(self, tuple(shape))

    def squeeze(self, dim: Any = None) -> Tensor:
        return movement.squeeze(self, dim)

    def unsqueeze(self, dim: int) -> Tensor:
        return movement.unsqueeze(self, dim)

    def split(self, split_size_or_sections: Any, dim: int = 0) -> tuple[Tensor, ...]:
        return movement.split(self, split_size_or_sections, dim)

    def chunk(self, chunks: int, dim: int = 0) -> tuple[Tensor, ...]:
        return movement.chunk(self, chunks, dim)

    def repeat(self, *sizes: Any) -> Tensor:
        return movement.repeat(self, _shape_args(sizes))

    def __getitem__(self, index: Any) -> Tensor:
        return movement.getitem(self, index)

    def gather(self, dim: int, index: Tensor) -> Tensor:
        return movement.gather(self, dim, index)

    def triu(self, diagonal: int = 0) -> Tensor:
        return movement.triu(self, diagonal)

    def tril(self, diagonal: int = 0) -> Tensor:
        return movement.tril(self, diagonal)

    def matmul(self, other: Tensor) -> Tensor:
        return linalg.matmul(self, other)

    # ---- dtype shortcuts: last in the class, since below them ``float``, ``int`` and ``bool`` in annotations
    # would name these methods instead of the builtin types --------------------------------------------------
    def float(self) -> Tensor:
        return self.to(_dtypes.float32)

    def double(self) -> Tensor:
        return self.to(_dtypes.float64)

    def half(self) -> Tensor:
        return self.to(_dtypes.float16)

    def long(self) -> Tensor:
        return self.to(_dtypes.int64)

    def int(self) -> Tensor:
        return self.to(_dtypes.int32)

    def bool(self) -> Tensor:
        return self.to(_dtypes.bool_)


# ------------------------------------------------------------------------------------------------------
# Making tensors
# ------------------------------------------------------------------------------------------------------


def tensor(data: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """Make a leaf tensor from a Python number or (nested) list, a NumPy/CuPy array, or a Tensor (copied).

    Dtypes follow PyTorch: Python floats give float32, ints give int64, bools give bool; an array keeps
    its dtype unless ``dtype`` is given.
    """
    if isinstance(data, Tensor):
        data = data.data
    dt = _dtypes.to_dtype(dtype) if dtype is not None else None
    if hasattr(data, "__array_priority__") and hasattr(data, "shape"):  # a NumPy or CuPy array
        target = _dev(device) if device is not None else device_of(data)
        moved = to_device(data, target)
        fresh = moved is not data  # already a copy of its own
        with on_device_of(moved):  # a copy lands on the current device: make it the target
            if dt is not None:
                arr = moved.astype(dt, copy=not fresh)
            else:
                arr = moved if fresh else moved.copy()
    else:
        target = _dev(device)
        host = np.asarray(data)
        if dt is None:
            dt = _default_dtype_for(host)
        arr = to_device(np.array(host, dtype=dt), target)
    return _leaf(arr, requires_grad)


def _default_dtype_for(host: np.ndarray) -> np.dtype:
    if host.dtype.kind == "f":
        return _dtypes.default_float
    if host.dtype.kind in "iu":
        return _dtypes.int64
    if host.dtype.kind == "b":
        return _dtypes.bool_
    raise TypeError(f"cannot make a tensor from data of type {host.dtype}")


def _leaf(arr: Any, requires_grad: bool) -> Tensor:
    t = Tensor._make(arr)
    if requires_grad:
        t.requires_grad_(True)
    return t


def _dev(spec: Any) -> Device:
    return device(spec) if not isinstance(spec, Device) else spec


def _is_dtype_name(a: Any) -> bool:
    if not isinstance(a, str):
        return False
    try:
        _dtypes.to_dtype(a)
        return True
    except TypeError:
        return False


def _python_scalar(x: Any) -> Any:
    if isinstance(x, np.generic):  # np.float64(2) would upcast a float32 tensor: use the Python number
        x = x.item()
    if isinstance(x, (bool, int, float)):
        return x
    raise TypeError(f"unsupported operand: {type(x).__name__}")


def _coerce(x: Any, like: Tensor) -> Tensor:
    """Turn a Python number (or array) into a constant tensor on ``like``'s device.

    A Python float keeps a float32 tensor float32: ``x * 0.5`` must not become float64. A float scalar
    with an integer tensor gives the default float dtype, as in PyTorch.
    """
    if isinstance(x, Tensor):
        return x
    if isinstance(x, (bool, int, float)):
        dt = like.data.dtype
        if not (dt.kind == "f" or isinstance(x, bool) or (isinstance(x, int) and dt.kind in "iu")):
            dt = _dtypes.default_float
        return Tensor._make(scalar_like(x, dt, like.data))
    if isinstance(x, (list, tuple)) or hasattr(x, "__array_priority__") or isinstance(x, np.generic):
        kind = x.dtype.kind if hasattr(x, "dtype") else np.asarray(x).dtype.kind  # a GPU array stays where it is
        return tensor(x, device=like.device, dtype=like.dtype if kind == "f" else None)
    raise TypeError(f"cannot combine a Tensor with {type(x).__name__}")


def _alias(torch_value: Any, numpy_value: Any) -> Any:
    """Accept NumPy's ``axis``/``keepdims`` as aliases of PyTorch's ``dim``/``keepdim``."""
    return numpy_value if numpy_value is not None else torch_value


def _correction(unbiased: bool | None, correction: int | None) -> int:
    if correction is not None:
        return correction
    return 1 if unbiased is None or unbiased else 0


def _shape_args(args: tuple) -> tuple[int, ...]:
    """``reshape(2, 3)`` and ``reshape((2, 3))`` both mean shape (2, 3)."""
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        return tuple(args[0])
    return tuple(args)


def _rebind_output(saved: autograd.SavedTensor, t: Tensor) -> autograd.SavedTensor:
    """After an in-place op the node's saved output is ``t``'s memory: track ``t``'s version counter."""
    if saved.is_output:
        saved.array, saved.counter, saved.version = t.data, t._version, t._version.value
    return saved


# Ops import Tensor from this module, so they are imported after it is defined.
from . import functional  # noqa: E402
from .ops import elementwise, linalg, movement, reduce  # noqa: E402

__all__ = ["Tensor", "tensor", "module_for"]
