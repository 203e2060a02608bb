"""Factories: ``zeros``, ``ones``, ``full``, ``empty``, ``arange``, ``eye``, ``rand``, ``randn`` and ``*_like``.

They make leaf tensors directly on the requested device, in float32 unless told otherwise.
"""

from __future__ import annotations

from typing import Any

from . import dtypes as _dtypes
from .backend import BACKENDS, module_for
from .backend import device as _device
from .random import generator
from .tensor import Tensor, _leaf


def _shape(size: tuple) -> tuple[int, ...]:
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    return tuple(int(n) for n in size)


def _make(fill: str, size: tuple, dtype: Any, device: Any, requires_grad: bool, value: Any = None) -> Tensor:
    dev = _device(device)
    xp = module_for(dev)
    dt = _dtypes.to_dtype(dtype) if dtype is not None else _dtypes.default_float
    shape = _shape(size)
    with BACKENDS[dev.type].on(dev.index):
        if fill == "full":
            arr = xp.full(shape, value, dtype=dt)
        else:
            arr = getattr(xp, fill)(shape, dtype=dt)
    return _leaf(arr, requires_grad)


def zeros(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    return _make("zeros", size, dtype, device, requires_grad)


def ones(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    return _make("ones", size, dtype, device, requires_grad)


def empty(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    return _make("empty", size, dtype, device, requires_grad)


def full(size: Any, fill_value: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    if dtype is None and isinstance(fill_value, bool):
        dtype = _dtypes.bool_
    elif dtype is None and isinstance(fill_value, int):
        dtype = _dtypes.int64
    return _make("full", (size,) if isinstance(size, int) else (tuple(size),), dtype, device, requires_grad,
                 fill_value)


def arange(start: float, end: float | None = None, step: float = 1, dtype: Any = None, device: Any = None,
           requires_grad: bool = False) -> Tensor:
    """Numbers from ``start`` (inclusive) to ``end`` (exclusive); int64 for integer arguments."""
    if end is None:
        start, end = 0, start
    if dtype is None:
        ints = all(isinstance(v, int) for v in (start, end, step))
        dtype = _dtypes.int64 if ints else _dtypes.default_float
    dev = _device(device)
    xp = module_for(dev)
    with BACKENDS[dev.type].on(dev.index):
        arr = xp.arange(start, end, step, dtype=_dtypes.to_dtype(dtype))
    return _leaf(arr, requires_grad)


def eye(n: int, m: int | None = None, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    dev = _device(device)
    xp = module_for(dev)
    with BACKENDS[dev.type].on(dev.index):
        arr = xp.eye(n, m, dtype=_dtypes.to_dtype(dtype) if dtype is not None else _dtypes.default_float)
    return _leaf(arr, requires_grad)


def rand(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """Uniform on [0, 1), from the device's seeded generator."""
    return _random("random", size, dtype, device, requires_grad)


def randn(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """Standard normal, from the device's seeded generator."""
    return _random("standard_normal", size, dtype, device, requires_grad)


def randint(low: int, high: int | None = None, size: Any = (), dtype: Any = None, device: Any = None) -> Tensor:
    """Integers uniform in [low, high)."""
    if high is None:
        low, high = 0, low
    dev = _device(device)
    with BACKENDS[dev.type].on(dev.index):
        arr = generator(dev).integers(low, high, size=_shape((size,) if isinstance(size, int) else (tuple(size),)))
        arr = arr.astype(_dtypes.to_dtype(dtype) if dtype is not None else _dtypes.int64)
    return _leaf(arr, False)


def _random(kind: str, size: tuple, dtype: Any, device: Any, requires_grad: bool) -> Tensor:
    dev = _device(device)
    dt = _dtypes.to_dtype(dtype) if dtype is not None else _dtypes.default_float
    if dt.kind != "f":
        raise TypeError(f"rand/randn make floating-point tensors, not {dt}")
    gen = generator(dev)
    draw_dt = dt if dt in (_dtypes.float32, _dtypes.float64) else _dtypes.float32
    with BACKENDS[dev.type].on(dev.index):
        arr = getattr(gen, kind)(_shape(size), dtype=draw_dt).astype(dt, copy=False)
    return _leaf(arr, requires_grad)


def _like(fn: Any, t: Tensor, dtype: Any, device: Any, requires_grad: bool, *args: Any) -> Tensor:
    return fn(*args, t.shape, dtype=dtype or t.dtype, device=device or t.device, requires_grad=requires_grad)


def zeros_like(t: Tensor, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    return _like(zeros, t, dtype, device, requires_grad)


def ones_like(t: Tensor, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    return _like(ones, t, dtype, device, requires_grad)


def empty_like(t: Tensor, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    return _like(empty, t, dtype, device, requires_grad)


def full_like(t: Tensor, fill_value: Any, dtype: Any = None, device: Any = None,
              requires_grad: bool = False) -> Tensor:
    return full(t.shape, fill_value, dtype=dtype or t.dtype, device=device or t.device, requires_grad=requires_grad)


def rand_like(t: Tensor, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    return _like(rand, t, dtype, device, requires_grad)


def randn_like(t: Tensor, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    return _like(randn, t, dtype, device, requires_grad)
