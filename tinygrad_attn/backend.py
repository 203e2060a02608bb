"""Backends: where the numbers live and which array library computes on them.

A Tensor holds one array. The array's type decides everything: a ``numpy.ndarray`` lives on the CPU and
is computed on with NumPy, a ``cupy.ndarray`` lives on an NVIDIA GPU and is computed on with CuPy. Ops
never ask "are we on the GPU?"; they ask the array for its module (``array_module``) and call
``xp.exp``, ``xp.matmul``, ... on it, the way CuPy's ``get_array_module`` is meant to be used.

A ``Backend`` bundles what differs between array libraries: its module, how to recognise its arrays,
how to move data to and from it. Adding a third backend means registering one more ``Backend``; no op
changes.
"""

from __future__ import annotations

import contextlib
import importlib
from dataclasses import dataclass
from typing import Any

import numpy as np

_NOTHING_TO_ENTER = contextlib.nullcontext()  # reusable: the CPU has no current device to switch


@dataclass(frozen=True)
class Device:
    """A place where tensors live: ``Device("cpu")``, ``Device("cuda", 0)``. Compares equal to its string."""

    type: str
    index: int | None = None

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self) -> str:
        return f"device('{self}')"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            try:
                other = device(other)
            except ValueError:
                return False
        if not isinstance(other, Device):
            return NotImplemented
        return self.type == other.type and (self.index or 0) == (other.index or 0)

    def __hash__(self) -> int:
        return hash((self.type, self.index or 0))


class Backend:
    """One array library. Subclasses say how to import it and how to move arrays in and out."""

    name: str = ""

    def __init__(self) -> None:
        self._xp: Any = None
        self._import_error: Exception | None = None

    def load(self) -> Any:
        """The array module, imported on first use. Raises a clear error if it is not installed/usable."""
        if self._xp is None:
            try:
                self._xp = self.import_module()
            except Exception as e:  # ImportError, or CuPy present but no GPU/driver
                raise RuntimeError(
                    f"device '{self.name}' is not available: {type(e).__name__}: {e}. "
                    f"{self.install_hint}"
                ) from e
        return self._xp

    def available(self) -> bool:
        try:
            self.load()
            return True
        except RuntimeError:
            return False

    install_hint = ""

    def import_module(self) -> Any:
        raise NotImplementedError

    def owns(self, array: Any) -> bool:
        """Is ``array`` one of this backend's arrays?"""
        raise NotImplementedError

    def index_of(self, array: Any) -> int | None:
        return None

    def from_numpy(self, array: np.ndarray, index: int | None) -> Any:
        """Copy a host array onto this backend."""
        raise NotImplementedError

    def to_numpy(self, array: Any) -> np.ndarray:
        """Copy an array of this backend to a host NumPy array."""
        raise NotImplementedError

    def scalar(self, value: Any, dtype: Any, like: Any) -> Any:
        """A 0-d array holding ``value`` on the same device as ``like``."""
        return self.load().asarray(value, dtype=dtype)

    def copy_to(self, array: Any, index: int | None) -> Any:
        """Copy an array of this backend onto its device ``index`` (by default through the host)."""
        return self.from_numpy(self.to_numpy(array), index)

    def on(self, index: int | None) -> Any:
        """A context manager making device ``index`` current, so that what runs inside allocates and launches
        there (a GPU library computes on its current device, whatever device the arrays live on)."""
        return _NOTHING_TO_ENTER


class NumPyBackend(Backend):
    name = "cpu"

    def import_module(self) -> Any:
        return np

    def owns(self, array: Any) -> bool:
        return isinstance(array, (np.ndarray, np.generic))

    def from_numpy(self, array: np.ndarray, index: int | None) -> np.ndarray:
        return array

    def to_numpy(self, array: Any) -> np.ndarray:
        return np.asarray(array)


class CuPyBackend(Backend):
    name = "cuda"
    install_hint = "Install the GPU extra (pip install 'tinygrad_attn[gpu]') on a machine with an NVIDIA GPU."

    def import_module(self) -> Any:
        cupy = importlib.import_module("cupy")
        cupy.cuda.runtime.getDeviceCount()  # raises if there is no usable GPU
        return cupy

    def owns(self, array: Any) -> bool:
        # Never import CuPy just to answer "no": a NumPy-only user must not pay for it.
        return type(array).__module__.startswith("cupy")

    def index_of(self, array: Any) -> int | None:
        return int(array.device.id)

    def from_numpy(self, array: np.ndarray, index: int | None) -> Any:
        xp = self.load()
        with xp.cuda.Device(index or 0):
            return xp.asarray(array)

    def to_numpy(self, array: Any) -> np.ndarray:
        return array.get()

    def scalar(self, value: Any, dtype: Any, like: Any) -> Any:
        xp = self.load()
        with xp.cuda.Device(like.device.id):  # not the current device: like's (for cuda:1, cuda:2, ...)
            return xp.asarray(value, dtype=dtype)

    def copy_to(self, array: Any, index: int | None) -> Any:
        with self.on(index):  # a copy made on the current device, from the other device's memory (no host)
            return array.copy()

    def on(self, index: int | None) -> Any:
        return self.load().cuda.Device(index or 0)


BACKENDS: dict[str, Backend] = {"cpu": NumPyBackend(), "cuda": CuPyBackend()}


def device(spec: str | Device | None = None) -> Device:
    """Parse ``"cpu"``, ``"cuda"``, ``"cuda:1"`` (or a Device) into a Device; None means the CPU."""
    if spec is None:
        return Device("cpu")
    if isinstance(spec, Device):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"device must be a string like 'cpu' or 'cuda:0', got {type(spec).__name__}")
    kind, _, idx = spec.strip().lower().partition(":")
    if kind not in BACKENDS:
        raise ValueError(f"unknown device '{spec}': expected one of {sorted(BACKENDS)} (e.g. 'cuda:0')")
    if idx and not idx.isdigit():
        raise ValueError(f"bad device index in '{spec}': expected e.g. 'cuda:0'")
    index = int(idx) if idx else None
    if kind == "cpu":
        if index not in (None, 0):
            raise ValueError(f"device '{spec}': the CPU has no index")
        index = None
    return Device(kind, index)


def backend_of(array: Any) -> Backend:
    """The backend that owns ``array`` (NumPy for NumPy arrays and scalars)."""
    for backend in BACKENDS.values():
        if backend.owns(array):
            return backend
    raise TypeError(f"not an array of any backend: {type(array).__name__}")


def array_module(array: Any) -> Any:
    """``numpy`` or ``cupy``: the module that computes on ``array``."""
    if isinstance(array, (np.ndarray, np.generic)):  # fast path: the common case
        return np
    return backend_of(array).load()


def device_of(array: Any) -> Device:
    backend = backend_of(array)
    return Device(backend.name, backend.index_of(array))


def to_device(array: Any, target: Device) -> Any:
    """Copy ``array`` onto ``target`` (no copy if it is already there). Between two devices of one backend
    (``cuda:0`` -> ``cuda:1``) the copy goes device to device, not through the host."""
    source = device_of(array)
    if source == target:
        return array
    backend = backend_of(array)
    if source.type == target.type:
        return backend.copy_to(array, target.index)
    host = backend.to_numpy(array)
    return BACKENDS[target.type].from_numpy(host, target.index)


def on_device_of(array: Any) -> Any:
    """A context manager making ``array``'s device current (nothing to do for a NumPy array)."""
    if isinstance(array, np.ndarray):
        return _NOTHING_TO_ENTER
    backend = backend_of(array)
    return backend.on(backend.index_of(array))


def scalar_like(value: Any, dtype: Any, like: Any) -> Any:
    """A 0-d array holding ``value``, on the device of the array ``like`` (how Python numbers enter ops).

    On the CPU the array is read-only and shared: ``x * 0.5`` on every step reuses one (ops never write
    into their inputs). A bounded cache, so that ever-new values (a learning rate schedule) cannot grow it."""
    if isinstance(like, np.ndarray):
        # the type too (1, 1.0 and True are equal keys), and a float by its bits (0.0 and -0.0 are equal keys)
        key = (type(value), value.hex() if type(value) is float else value, dtype)
        array = _CPU_SCALARS.get(key)
        if array is None:
            array = np.asarray(value, dtype=dtype)
            array.flags.writeable = False
            if len(_CPU_SCALARS) < _CPU_SCALARS_MAX:
                _CPU_SCALARS[key] = array
        return array
    return backend_of(like).scalar(value, dtype, like)


_CPU_SCALARS: dict[tuple[type, Any, Any], np.ndarray] = {}
_CPU_SCALARS_MAX = 4096


# A memory-bound op that makes several passes over a big (N, C) array runs faster on a CPU if it makes them
# all over one block of rows while the block sits in a core's cache, instead of streaming the whole array
# from memory once per pass. A GPU has no such cache to aim for: there, one block of all rows.
CPU_BLOCK_BYTES = 1 << 20


def row_blocks(n_rows: int, row_bytes: int, like: Any) -> list[slice]:
    """Slices cutting ``n_rows`` rows of ``row_bytes`` bytes each into blocks of about ``CPU_BLOCK_BYTES`` for a
    NumPy array ``like`` (one block otherwise); never empty: zero rows give one empty slice."""
    if not isinstance(like, np.ndarray) or n_rows == 0:
        return [slice(0, n_rows)]
    step = max(1, CPU_BLOCK_BYTES // max(row_bytes, 1))
    return [slice(start, min(start + step, n_rows)) for start in range(0, n_rows, step)]


def module_for(target: Device) -> Any:
    """The array module of a device (loading it, with a clear error if unavailable)."""
    return BACKENDS[target.type].load()


def is_available(kind: str = "cuda") -> bool:
    """Can tensors be put on ``kind``? ``ta.cuda.is_available()`` asks this for ``"cuda"``."""
    return BACKENDS[kind].available()
