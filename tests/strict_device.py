"""A strict stand-in for a CuPy GPU, for machines without one: the ``"strict"`` device (tests only).

CI has no GPU, so the CuPy path would only ever run on a developer's GPU, rarely. This backend computes with
NumPy on the host but behaves like CuPy wherever CuPy differs from NumPy in a way the framework could trip on:

- ``np.asarray(a)`` (``__array__``) refuses, with CuPy's message: data leaves the device only through
  ``.get()`` (``Backend.to_numpy``). An op that hands a host array to a device function gets CuPy's
  ``TypeError`` too (a raw ``numpy.ndarray`` operand is not accepted; ``asarray`` uploads it, as in CuPy);
- ``a.flags`` has only CuPy's three flags: ``c_contiguous``, ``f_contiguous``, ``owndata``;
- its ``xp`` offers only names that ``cupy`` (14.2) has; an array offers only ``cupy.ndarray``'s attributes;
- reductions to one element and scalar indexing give 0-d arrays, never host scalars (as CuPy does);
- broadcast views (``broadcast_to``, ``broadcast_arrays``) are writable, as CuPy's are;
- no ``__index__`` (CuPy's ndarray has none: a device scalar is not a Python index);
- every read from the device to the host is counted (``host_reads``): ``get``, ``item``, ``tolist``,
  ``__bool__``, ``__float__``, ``__int__``, ``repr``, boolean-mask indexing (read or write),
  and the functions whose output size depends on the data (``nonzero``, ``flatnonzero``, ``argwhere``,
  ``unique``, one-argument ``where``, ``compress``);
- ``"strict:1"`` is a second device: an array lives on the device that was current when it was made, and a
  computation on an array of another device raises (as CuPy does without peer access), so code that forgets
  to enter the array's device (``Backend.on``) fails here instead of launching on GPU 0.

A wrapper, not an ``ndarray`` subclass: NumPy turns a subclass back into a plain ndarray without asking
(``np.asarray``, ``np.array``, buffer access), which is exactly the implicit conversion CuPy refuses; a
wrapper whose ``__array__`` raises cannot be converted behind our back. The price is the code below: the
module namespace and the array methods are forwarded to NumPy, unwrapping arguments and wrapping results.

``register()`` adds the backend to ``tinygrad_attn.backend.BACKENDS`` (tests/conftest.py does it for the
session): it is never a user device. Without CuPy installed it also provides a ``cupyx`` holding only
``scatter_add``, for code that imports it on the device path.
"""

from __future__ import annotations

import contextlib
import importlib.util
import operator
import sys
import traceback
import types
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from tinygrad_attn import backend as _backend

# ---------------------------------------------------------------------------------------------------------
# What CuPy 14.2 has: the public names bound in cupy/__init__.py of the cupy-cuda12x 14.2.0 wheel, and the
# attributes of cupy.ndarray (the methods of _ndarray_base in the wheel's cupy/_core/core.so, and its properties)
# ---------------------------------------------------------------------------------------------------------

CUPY_NAMES = frozenset("""
AxisError ComplexWarning DataSource ElementwiseKernel Inf Infinity ModuleDeprecationWarning NAN NINF NZERO NaN PINF
PZERO RankWarning RawKernel RawModule ReductionKernel TooHardError VisibleDeprecationWarning abs absolute acos acosh
add all allclose alltrue amax amin angle annotations any append apply_along_axis apply_over_axes arange arccos
arccosh arcsin arcsinh arctan arctan2 arctanh argmax argmin argpartition argsort argwhere around array array2string
array_equal array_equiv array_repr array_split array_str asanyarray asarray asarray_chkfinite ascontiguousarray
asfarray asfortranarray asin asinh asnumpy astype atan atan2 atanh atleast_1d atleast_2d atleast_3d average bartlett
base_repr binary_repr bincount bitwise_and bitwise_count bitwise_invert bitwise_left_shift bitwise_not bitwise_or
bitwise_right_shift bitwise_xor blackman bool bool_ broadcast broadcast_arrays broadcast_shapes broadcast_to byte
byte_bounds c_ can_cast cbrt cdouble ceil cfloat choose clear_memo clip column_stack common_type complex128
complex64 complex_ complexfloating compress concat concatenate conj conjugate convolve copy copysign copyto corrcoef
correlate cos cosh count_nonzero cov cross csingle cuda cumprod cumproduct cumsum cumulative_prod cumulative_sum
cupyx default_float_dtype deg2rad degrees delete diag diag_indices diag_indices_from diagflat diagonal diff digitize
disable_experimental_feature_warning disp divide divmod dot double dsplit dstack dtype dtypes e ediff1d einsum empty
empty_like equal euler_gamma exceptions exp exp2 expand_dims expm1 extract eye fabs fft fill_diagonal
find_common_type finfo fix flatiter flatnonzero flip fliplr flipud float16 float32 float64 float_ float_power
floating floor floor_divide fmax fmin fmod format_float_positional format_float_scientific format_parser frexp
fromDlpack from_ from_dlpack frombuffer fromfile fromfunction fromiter fromstring full full_like fuse gcd generic
genfromtxt get_array_module get_array_wrap get_default_memory_pool get_default_pinned_memory_pool get_printoptions
gradient greater greater_equal half hamming hanning heaviside histogram histogram2d histogramdd hsplit hstack hypot
i0 identity iinfo imag importlib in1d index_exp indices inexact inf infty inner int16 int32 int64 int8 int_ intc
integer interp intersect1d intp invert is_available isclose iscomplex iscomplexobj isdtype isfinite isfortran isin
isinf isnan isneginf isposinf isreal isrealobj isscalar issctype issubclass_ issubdtype issubsctype iterable ix_
kaiser kron lcm ldexp left_shift less less_equal lexsort linalg linspace load loader loadtxt log log10 log1p log2
logaddexp logaddexp2 logical_and logical_not logical_or logical_xor logspace long longlong make_aligned_dtype
mask_indices matmul matrix_transpose max maximum may_share_memory mean median memoize mesg meshgrid mgrid min
min_scalar_type minimum mintypecode mod modf module moveaxis msort multiply nan nan_to_num nanargmax nanargmin
nancumprod nancumsum nanmax nanmean nanmedian nanmin nanprod nanstd nansum nanvar ndarray ndim ndindex negative
newaxis nextafter nonzero not_equal number obj2sctype ogrid ones ones_like out outer packbits pad partition
percentile permute_dims pi piecewise place poly poly1d polyadd polyfit polymul polynomial polysub polyval positive
pow power printoptions prod product promote_types ptp put put_along_axis putmask quantile r_ rad2deg radians random
ravel ravel_multi_index real real_if_close reciprocal remainder repeat require res reshape resize result_type
right_shift rint roll rollaxis roots rot90 round round_ row_stack s_ safe_eval save savetxt savez savez_compressed
sctype sctype2char searchsorted select set_printoptions set_string_function setdiff1d setxor1d shape shares_memory
short show_config sign signbit signedinteger sin sinc single singlecomplex sinh size sometrue sort sort_complex spec
split sqrt square squeeze stack std subtract sum swapaxes take take_along_axis tan tanh temp tensordot testing tile
trace transpose trapezoid trapz tri tril tril_indices tril_indices_from trim_zeros triu triu_indices
triu_indices_from true_divide trunc typename ubyte ufunc uint uint16 uint32 uint64 uint8 uintc uintp ulong ulonglong
union1d unique unique_all unique_counts unique_inverse unique_values unpackbits unravel_index unsignedinteger unwrap
ushort vander var vdot vectorize vsplit vstack where who zeros zeros_like
""".split())

NDARRAY_ATTRS = frozenset("""
T mT all any argmax argmin argpartition argsort astype base choose clip compress conj conjugate copy cumprod
cumsum device diagonal dot dtype dump dumps fill flags flat flatten get imag item itemsize max mean min
nbytes ndim nonzero partition prod ptp put ravel real reduced_view repeat reshape round scatter_add searchsorted
set shape size sort squeeze std strides sum swapaxes take tobytes tofile tolist trace transpose var view byteswap
""".split())

# Functions whose output size depends on the values: CuPy must read the data on the host to allocate it.
_SYNCING_FUNCTIONS = frozenset({"nonzero", "flatnonzero", "argwhere", "unique", "unique_all", "unique_counts",
                                "unique_inverse", "unique_values", "compress", "extract", "asnumpy"})


# ---------------------------------------------------------------------------------------------------------
# Counting reads from the device to the host
# ---------------------------------------------------------------------------------------------------------

class HostReads:
    """The device-to-host reads made inside ``with host_reads() as reads:``: ``reads.count``, and ``reads.where``
    (what read, and from which line of the package or the models) to say which read a test did not expect."""

    def __init__(self) -> None:
        self.where: list[str] = []

    @property
    def count(self) -> int:
        return len(self.where)

    def __repr__(self) -> str:
        return f"HostReads({self.count}: " + "; ".join(self.where) + ")"


_recorders: list[HostReads] = []


@contextlib.contextmanager
def host_reads() -> Iterator[HostReads]:
    """Count the host reads of strict arrays made inside the block."""
    record = HostReads()
    _recorders.append(record)
    try:
        yield record
    finally:
        _recorders.remove(record)


def _relative(filename: str) -> str:
    for top in ("/tinygrad_attn/", "/models/", "/tests/"):
        if top in filename:
            return top[1:] + filename.rsplit(top, 1)[1]
    return filename


def _read(what: str) -> None:
    if not _recorders:
        return
    frames = [f for f in traceback.extract_stack(limit=16)[:-2] if "strict_device" not in f.filename]
    # the line that asked for the read: skip the plumbing that performs it (Tensor.item -> numpy -> to_device)
    plumbing = ("/tinygrad_attn/backend.py", "/tinygrad_attn/tensor.py")
    caller = next((f for f in reversed(frames) if ("/tinygrad_attn/" in f.filename or "/models/" in f.filename)
                   and not f.filename.endswith(plumbing)), frames[-1] if frames else None)
    place = f"{_relative(caller.filename)}:{caller.lineno}" if caller else "?"
    for record in _recorders:
        record.where.append(f"{what} at {place}")


# ---------------------------------------------------------------------------------------------------------
# Devices: which one is current
# ---------------------------------------------------------------------------------------------------------

_current = [0]


class Device:
    """``xp.cuda.Device(i)``: a context manager that makes device ``i`` current, as CuPy's does."""

    def __init__(self, index: int | None = 0) -> None:
        self.id = int(index or 0)
        self._previous: list[int] = []

    def __enter__(self) -> Device:
        self._previous.append(_current[0])
        _current[0] = self.id
        return self

    def __exit__(self, *exc: object) -> None:
        _current[0] = self._previous.pop()

    def __repr__(self) -> str:
        return f"<strict Device {self.id}>"


def _check_device(arrays: list[StrictArray], what: str) -> None:
    for a in arrays:
        if a._dev != _current[0]:
            raise ValueError(f"{what}: the array is on strict device {a._dev} but the current device is "
                             f"{_current[0]} (CuPy launches on the current device; enter the array's device)")


# ---------------------------------------------------------------------------------------------------------
# The array
# ---------------------------------------------------------------------------------------------------------

_live: weakref.WeakValueDictionary[int, StrictArray] = weakref.WeakValueDictionary()


def _wrap(x: Any, dev: int | None = None) -> Any:
    """NumPy results as strict arrays (the same wrapper for the same ndarray: ``out=`` returns ``out``)."""
    if isinstance(x, np.ndarray):
        w = _live.get(id(x))
        if w is not None and w._a is x:
            return w
        w = StrictArray(x, _current[0] if dev is None else dev)
        _live[id(x)] = w
        return w
    if isinstance(x, np.generic):  # CuPy gives 0-d arrays where NumPy gives scalars
        return StrictArray(np.asarray(x), _current[0] if dev is None else dev)
    if isinstance(x, tuple):
        return tuple(_wrap(v, dev) for v in x)
    if isinstance(x, list):
        return [_wrap(v, dev) for v in x]
    return x


def _unwrap(x: Any, seen: list[StrictArray], host_ok: bool, what: str) -> Any:
    if isinstance(x, StrictArray):
        seen.append(x)
        return x._a
    if isinstance(x, np.ndarray):
        if host_ok:
            return x
        raise TypeError(f"{what}: Unsupported type {type(x)} (a host NumPy array given to a device function; "
                        "CuPy refuses it: move it to the device first)")
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v, seen, host_ok, what) for v in x)
    if isinstance(x, dict):
        return {k: _unwrap(v, seen, host_ok, what) for k, v in x.items()}
    return x


_OPERAND_TYPES = (bool, int, float, complex, np.generic)


def _operand(x: Any) -> Any:
    """The NumPy value of the other operand of an operator, or NotImplemented for types CuPy does not take."""
    if isinstance(x, StrictArray):
        return x._a
    if isinstance(x, _OPERAND_TYPES):
        return x
    if isinstance(x, np.ndarray):
        raise TypeError(f"Unsupported type {type(x)}: a host NumPy array cannot be an operand of a device array")
    return NotImplemented


def _is_mask(key: Any) -> bool:
    keys = key if isinstance(key, tuple) else (key,)
    return any(isinstance(k, (StrictArray, np.ndarray)) and k.dtype == np.bool_ and k.ndim > 0 for k in keys)


def _is_basic(key: Any) -> bool:
    keys = key if isinstance(key, tuple) else (key,)
    return all(k is None or k is Ellipsis or isinstance(k, (int, np.integer, slice)) for k in keys)


class _Flags:
    """CuPy's flags: three, no ``writeable`` (no ``aligned``, no ``writebackifcopy``)."""

    __slots__ = ("_flags",)

    def __init__(self, flags: Any) -> None:
        self._flags = flags

    c_contiguous = property(lambda self: bool(self._flags.c_contiguous))
    f_contiguous = property(lambda self: bool(self._flags.f_contiguous))
    owndata = property(lambda self: bool(self._flags.owndata))

    def __getitem__(self, name: str) -> bool:
        if name not in ("C_CONTIGUOUS", "F_CONTIGUOUS", "OWNDATA"):
            raise KeyError(name)
        return getattr(self, name.lower())


class _DeviceId:
    __slots__ = ("id",)

    def __init__(self, index: int) -> None:
        self.id = index


class StrictArray:
    """An array on a strict device: NumPy memory inside, CuPy's manners outside."""

    __slots__ = ("_a", "_dev", "__weakref__")
    __array_priority__ = 100  # CuPy's: NumPy defers to us; Tensor (1000) outranks us
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, array: np.ndarray, dev: int = 0) -> None:
        self._a = array
        self._dev = dev

    # ---- attributes: only cupy.ndarray's ---------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        if name not in NDARRAY_ATTRS:
            raise AttributeError(f"'cupy.ndarray' (strict stand-in) has no attribute {name!r}")
        if name == "flags":
            return _Flags(self._a.flags)
        if name == "device":
            return _DeviceId(self._dev)
        if name == "get":
            return self._get
        if name == "set":
            return self._set
        if name == "scatter_add":
            return self._scatter_add
        if name in ("item", "tolist", "nonzero"):
            _read(f"ndarray.{name}")
        value = getattr(self._a, name)
        if not callable(value):
            return _wrap(value, self._dev)
        return self._method(value, name)

    def _method(self, method: Callable, name: str) -> Callable:
        def call(*args: Any, **kwargs: Any) -> Any:
            seen: list[StrictArray] = [self]
            a = _unwrap(args, seen, False, f"ndarray.{name}")
            kw = _unwrap(kwargs, seen, False, f"ndarray.{name}")
            if name not in ("reshape", "view", "transpose", "swapaxes", "squeeze", "ravel", "diagonal"):
                _check_device(seen, f"ndarray.{name}")
            return _wrap(method(*a, **kw), self._dev)
        return call

    def _get(self, stream: Any = None, order: str = "C", out: np.ndarray | None = None) -> np.ndarray:
        _read("ndarray.get")
        if out is not None:
            np.copyto(out, self._a)
            return out
        return np.array(self._a, order=order, copy=True)

    def _set(self, arr: np.ndarray, stream: Any = None) -> None:
        np.copyto(self._a, arr)

    def _scatter_add(self, slices: Any, value: Any) -> None:
        seen: list[StrictArray] = [self]
        k, v = _unwrap(slices, seen, True, "scatter_add"), _unwrap(value, seen, False, "scatter_add")
        _check_device(seen, "ndarray.scatter_add")
        np.add.at(self._a, k, v)

    # ---- conversion to the host: refused implicitly, counted explicitly -----------------------------------
    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct a "
                        "NumPy array explicitly.")

    def __bool__(self) -> bool:
        _read("ndarray.__bool__")
        return bool(self._a)

    def __float__(self) -> float:
        _read("ndarray.__float__")
        return float(self._a)

    def __int__(self) -> int:
        _read("ndarray.__int__")
        return int(self._a)

    def __complex__(self) -> complex:
        _read("ndarray.__complex__")
        return complex(self._a)

    def __repr__(self) -> str:
        _read("ndarray.__repr__")
        return f"strict_array({np.array2string(self._a, separator=', ')}, device={self._dev})"

    __str__ = __repr__

    # ---- shape-level things (no data read) ----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._a)

    def __iter__(self) -> Iterator[StrictArray]:
        for i in range(len(self._a)):
            yield self[i]

    def __copy__(self) -> StrictArray:
        return StrictArray(self._a.copy(), self._dev)

    def __deepcopy__(self, memo: dict) -> StrictArray:
        return StrictArray(self._a.copy(), self._dev)

    def __reduce__(self) -> tuple:
        return (StrictArray, (self._a.copy(), self._dev))

    # ---- indexing ---------------------------------------------------------------------------------------
    def __getitem__(self, key: Any) -> Any:
        if _is_mask(key):
            _read("boolean-mask indexing")
        seen: list[StrictArray] = []
        k = _unwrap(key, seen, True, "ndarray.__getitem__")
        if not _is_basic(key):
            _check_device([self, *seen], "ndarray.__getitem__")
        return _wrap(self._a[k], self._dev)

    def __setitem__(self, key: Any, value: Any) -> None:
        if _is_mask(key):
            _read("boolean-mask assignment")
        seen: list[StrictArray] = [self]
        k = _unwrap(key, seen, True, "ndarray.__setitem__")
        v = _unwrap(value, seen, True, "ndarray.__setitem__")
        _check_device(seen, "ndarray.__setitem__")
        self._a[k] = v

    # ---- NumPy's protocols: CuPy's behaviour --------------------------------------------------------------
    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        if ufunc.__name__ not in CUPY_NAMES:
            return NotImplemented
        target = getattr(xp, ufunc.__name__)
        return target(*inputs, **kwargs) if method == "__call__" else getattr(target, method)(*inputs, **kwargs)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        module = func.__module__ or ""
        space: Any = xp if module == "numpy" else xp.linalg if module == "numpy.linalg" else None
        name = func.__name__
        if space is None or (space is xp and name not in CUPY_NAMES):
            return NotImplemented
        return getattr(space, name)(*args, **kwargs)


def _binary(op: Callable, name: str, inplace: bool = False) -> Callable:
    def method(self: StrictArray, other: Any) -> Any:
        b = _operand(other)
        if b is NotImplemented:
            return NotImplemented
        _check_device([self] + ([other] if isinstance(other, StrictArray) else []), name)
        if inplace:
            op(self._a, b)
            return self
        return _wrap(op(self._a, b), self._dev)
    method.__name__ = name
    return method


def _reflected(op: Callable, name: str) -> Callable:
    def method(self: StrictArray, other: Any) -> Any:
        b = _operand(other)
        if b is NotImplemented:
            return NotImplemented
        _check_device([self], name)
        return _wrap(op(b, self._a), self._dev)
    method.__name__ = name
    return method


def _unary(op: Callable, name: str) -> Callable:
    def method(self: StrictArray) -> Any:
        _check_device([self], name)
        return _wrap(op(self._a), self._dev)
    method.__name__ = name
    return method


_BINARY = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "truediv": operator.truediv,
           "floordiv": operator.floordiv, "mod": operator.mod, "pow": operator.pow, "matmul": operator.matmul,
           "and": operator.and_, "or": operator.or_, "xor": operator.xor, "lshift": operator.lshift,
           "rshift": operator.rshift}
_INPLACE = {"add": operator.iadd, "sub": operator.isub, "mul": operator.imul, "truediv": operator.itruediv,
            "floordiv": operator.ifloordiv, "mod": operator.imod, "pow": operator.ipow, "and": operator.iand,
            "or": operator.ior, "xor": operator.ixor, "lshift": operator.ilshift, "rshift": operator.irshift}
for _name, _op in _BINARY.items():
    setattr(StrictArray, f"__{_name}__", _binary(_op, f"__{_name}__"))
    setattr(StrictArray, f"__r{_name}__", _reflected(_op, f"__r{_name}__"))
for _name, _op in _INPLACE.items():
    setattr(StrictArray, f"__i{_name}__", _binary(_op, f"__i{_name}__", inplace=True))
for _name, _op in {"lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge,
                   "eq": operator.eq, "ne": operator.ne}.items():
    setattr(StrictArray, f"__{_name}__", _binary(_op, f"__{_name}__"))
for _name, _op in {"neg": operator.neg, "pos": operator.pos, "abs": operator.abs, "invert": operator.invert}.items():
    setattr(StrictArray, f"__{_name}__", _unary(_op, f"__{_name}__"))


# ---------------------------------------------------------------------------------------------------------
# The module: ``xp`` for strict arrays
# ---------------------------------------------------------------------------------------------------------

_CREATES_FROM_HOST = frozenset({"asarray", "array", "ascontiguousarray", "asanyarray", "asfortranarray"})
_VIEWS = frozenset({"reshape", "transpose", "swapaxes", "moveaxis", "expand_dims", "squeeze", "ravel",
                    "broadcast_to", "broadcast_arrays", "atleast_1d", "atleast_2d", "atleast_3d", "permute_dims",
                    "matrix_transpose", "diagonal", "shape", "ndim", "size", "may_share_memory",
                    "shares_memory", "result_type", "can_cast", "dtype", "finfo", "iinfo", "promote_types",
                    "isscalar", "issubdtype", "get_array_module"})


def _function(fn: Callable, name: str) -> Callable:
    host_ok = name in _CREATES_FROM_HOST

    def call(*args: Any, **kwargs: Any) -> Any:
        seen: list[StrictArray] = []
        a = _unwrap(args, seen, host_ok, f"xp.{name}")
        kw = _unwrap(kwargs, seen, host_ok, f"xp.{name}")
        if name not in _VIEWS and name not in _CREATES_FROM_HOST:
            _check_device(seen, f"xp.{name}")
        if name in _SYNCING_FUNCTIONS or (name == "where" and len(args) + len(kwargs) == 1):
            _read(f"xp.{name}")
        result = fn(*a, **kw)
        if name in _CREATES_FROM_HOST and isinstance(result, np.ndarray) and any(result is s._a for s in seen):
            return _wrap(result)
        if name in _CREATES_FROM_HOST and isinstance(result, np.ndarray) and not seen and isinstance(
                args[0] if args else None, np.ndarray) and np.may_share_memory(result, args[0]):
            result = result.copy()  # an upload copies: device memory never aliases host memory
        dev = seen[0]._dev if seen and name in _VIEWS else None
        return _wrap(result, dev)
    call.__name__ = name
    return call


class _Ufunc:
    """A NumPy ufunc on strict arrays, with the methods CuPy's ufuncs have."""

    def __init__(self, ufunc: np.ufunc) -> None:
        self._ufunc = ufunc
        self.__name__ = ufunc.__name__
        self._call = _function(ufunc, ufunc.__name__)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._ufunc, name)
        if name in ("at", "reduce", "accumulate", "reduceat", "outer"):
            return _function(value, f"{self.__name__}.{name}")
        return value


def _broadcast_to(array: Any, shape: Any) -> StrictArray:
    """CuPy's broadcast views are writable (writing through one writes every element it repeats)."""
    if not isinstance(array, StrictArray):
        raise TypeError(f"xp.broadcast_to: Unsupported type {type(array)}")
    view = np.broadcast_to(array._a, shape)
    writable = np.lib.stride_tricks.as_strided(array._a, shape=view.shape, strides=view.strides,
                                               writeable=bool(array._a.flags.writeable))
    return _wrap(writable, array._dev)


def _broadcast_arrays(*arrays: Any) -> list[StrictArray]:
    shape = np.broadcast_shapes(*(a.shape for a in arrays))
    return [_broadcast_to(a, shape) for a in arrays]


class _Generator:
    """``xp.random.default_rng(seed)``: draws on the device current when the generator was made (CuPy's
    generators keep their state in that device's memory). Like CuPy's, its state cannot be exported."""

    _METHODS = frozenset({"random", "standard_normal", "integers", "uniform", "normal", "choice", "permutation",
                          "shuffle", "standard_exponential", "exponential", "gamma", "binomial", "poisson",
                          "beta", "standard_gamma", "dirichlet", "geometric", "hypergeometric", "logseries",
                          "f", "chisquare", "noncentral_chisquare", "noncentral_f", "power", "random_raw"})

    def __init__(self, seed: Any = None) -> None:
        self._gen = np.random.default_rng(seed)
        self._dev = _current[0]

    def __getattr__(self, name: str) -> Any:
        if name not in self._METHODS:
            raise AttributeError(f"'cupy.random.Generator' (strict stand-in) has no attribute {name!r}")
        method = getattr(self._gen, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            if self._dev != _current[0]:
                raise ValueError(f"random.Generator.{name}: the generator lives on strict device {self._dev} but "
                                 f"the current device is {_current[0]}")
            seen: list[StrictArray] = []
            return _wrap(method(*_unwrap(args, seen, False, name), **_unwrap(kwargs, seen, False, name)))
        return call


class _Namespace:
    """A module-like object: only the names given."""

    def __init__(self, name: str, members: dict[str, Any]) -> None:
        self.__name__ = name
        self._members = members

    def __getattr__(self, name: str) -> Any:
        try:
            return self._members[name]
        except KeyError:
            raise AttributeError(f"module '{self.__name__}' (strict stand-in) has no attribute {name!r}") from None


class StrictModule:
    """The ``xp`` of strict arrays: CuPy's names, NumPy's implementations, strict arrays in and out."""

    __name__ = "strict"  # code that tests ``xp.__name__ == "numpy"`` takes its device path here

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}
        self.ndarray = StrictArray
        self.random = _Namespace("strict.random", {"default_rng": _Generator})
        self.cuda = _Namespace("strict.cuda", {"Device": Device})
        self.linalg = _Namespace("strict.linalg", {n: _function(getattr(np.linalg, n), f"linalg.{n}")
                                                   for n in ("norm", "inv", "solve", "det", "qr", "svd", "cholesky",
                                                             "eigh", "eigvalsh", "slogdet", "pinv", "lstsq",
                                                             "matrix_power", "matrix_rank", "tensorsolve",
                                                             "tensorinv")})

    def __getattr__(self, name: str) -> Any:
        if name not in CUPY_NAMES:
            raise AttributeError(f"module 'cupy' has no attribute {name!r} (the strict stand-in device offers only "
                                 "the names CuPy 14 has)")
        if name in self._cache:
            return self._cache[name]
        value = self._make(name)
        self._cache[name] = value
        return value

    def _make(self, name: str) -> Any:
        if name == "broadcast_to":
            return _broadcast_to
        if name == "broadcast_arrays":
            return _broadcast_arrays
        if name == "asnumpy":
            return lambda a, stream=None, order="C", out=None: a.get(out=out) if isinstance(a, StrictArray) \
                else np.asarray(a)
        if name == "get_array_module":
            return lambda *args: self if any(isinstance(a, StrictArray) for a in args) else np
        if name in ("ogrid", "mgrid"):
            return _Grid(getattr(np, name))
        numpy_name = {"concat": "concatenate", "pow": "power", "permute_dims": "transpose"}.get(name, name)
        if not hasattr(np, numpy_name):  # CuPy's own: fuse, ElementwiseKernel, RawKernel, ...
            raise AttributeError(f"cupy.{name} exists but the strict stand-in does not implement it")
        value = getattr(np, numpy_name)
        if isinstance(value, np.ufunc):
            return _Ufunc(value)
        if isinstance(value, type) or not callable(value):
            return value  # dtypes, scalar types, constants
        return _function(value, name)


class _Grid:
    def __init__(self, grid: Any) -> None:
        self._grid = grid

    def __getitem__(self, key: Any) -> Any:
        return _wrap(self._grid[key])


xp = StrictModule()


# ---------------------------------------------------------------------------------------------------------
# The backend
# ---------------------------------------------------------------------------------------------------------

class StrictBackend(_backend.Backend):
    """The strict stand-in as a third backend, registered through the same seam as NumPy and CuPy."""

    name = "strict"

    def import_module(self) -> Any:
        return xp

    def owns(self, array: Any) -> bool:
        return isinstance(array, StrictArray)

    def index_of(self, array: Any) -> int | None:
        return array._dev

    def from_numpy(self, array: np.ndarray, index: int | None) -> StrictArray:
        with Device(index or 0):
            return xp.array(array, copy=True)

    def to_numpy(self, array: Any) -> np.ndarray:
        return array.get()

    def scalar(self, value: Any, dtype: Any, like: Any) -> Any:
        with Device(like._dev):
            return xp.asarray(value, dtype=dtype)

    def copy_to(self, array: Any, index: int | None) -> StrictArray:
        return StrictArray(array._a.copy(), index or 0)  # device to device: no host read

    def on(self, index: int | None) -> Any:
        return Device(index or 0)


BACKEND = StrictBackend()


def _scatter_add(a: Any, slices: Any, value: Any) -> None:
    """``cupyx.scatter_add``: ``a[slices] += value`` with repeated indices accumulating."""
    if not isinstance(a, StrictArray):
        raise TypeError(f"cupyx.scatter_add: Unsupported type {type(a)}")
    a.scatter_add(slices, value)


def register() -> None:
    """Make ``"strict"`` (and ``"strict:1"``, ...) a device for the rest of the process. Where CuPy is not
    installed, a ``cupyx`` module with CuPy's ``scatter_add`` (and nothing else: no ``cupyx.scipy``) stands in for
    code that imports it on its device path."""
    _backend.BACKENDS.setdefault("strict", BACKEND)
    if "cupyx" not in sys.modules and importlib.util.find_spec("cupyx") is None:
        cupyx = types.ModuleType("cupyx", "the strict stand-in's cupyx (tests/strict_device.py)")
        cupyx.scatter_add = _scatter_add  # type: ignore[attr-defined]
        sys.modules["cupyx"] = cupyx
