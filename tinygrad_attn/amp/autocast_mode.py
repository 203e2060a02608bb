"""``autocast``: inside it, the ops that gain from low precision (matmul, linear, attention) cast their floating
inputs to float16, and the ops that need range or accumulate many terms (softmax, log-softmax, layer norm,
cross-entropy) cast theirs to float32, as in PyTorch's autocast op lists. Other ops run in the dtype they
are given (a float16 result added to a float32 one gives float32).

The casts are ``Tensor.to(dtype)``, a differentiable op: gradients come back in each input's own dtype.
An op reads the module-level flag ``enabled`` and, only when it is set, calls ``to_lower`` or
``to_float32``; outside autocast that flag check is the whole cost. The flag is per process, not per
thread (run autocast regions from one thread).
"""

from __future__ import annotations

import functools
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .. import dtypes as _dtypes

if TYPE_CHECKING:
    from ..tensor import Tensor

enabled = False  # read by the hooked ops: is an autocast region active?
dtype: Any = _dtypes.float16  # the low precision of the active region

DEVICE_TYPES = ("cpu", "cuda")


def is_autocast_enabled() -> bool:
    """True inside an enabled ``autocast`` region."""
    return enabled


def get_autocast_dtype() -> Any:
    """The low-precision dtype of the active (or last) region."""
    return dtype


def _cast_all(target: Any, tensors: tuple[Tensor | None, ...]) -> tuple[Any, ...]:
    return tuple(t if t is None or t.dtype.kind != "f" or t.dtype == target else t.to(target) for t in tensors)


def to_lower(*tensors: Tensor | None) -> tuple[Any, ...]:
    """The floating tensors among ``tensors`` in the autocast dtype (None and integer tensors pass through)."""
    return _cast_all(dtype, tensors)


def to_float32(*tensors: Tensor | None) -> tuple[Any, ...]:
    """The floating tensors among ``tensors`` in float32 (None and integer tensors pass through)."""
    return _cast_all(_dtypes.float32, tensors)


class autocast:
    """Context manager (and decorator) for a mixed-precision region, PyTorch's signature::

        with ta.amp.autocast(device_type="cuda", dtype=ta.float16, enabled=True): ...

    Regions nest; leaving one restores the enclosing state. ``enabled=False`` switches autocast off inside.
    ``device_type`` is checked but does not select tensors: the region applies to the ops of every device.
    Only float16 is supported as the low precision (NumPy and CuPy have no bfloat16).
    """

    def __init__(self, device_type: str, dtype: Any = None, enabled: bool = True,
                 cache_enabled: bool | None = None) -> None:
        if device_type not in DEVICE_TYPES:
            raise ValueError(f"autocast: device_type must be one of {', '.join(DEVICE_TYPES)}, got {device_type!r}")
        low = _dtypes.float16 if dtype is None else _dtypes.to_dtype(dtype)
        if low != _dtypes.float16:
            raise ValueError(f"autocast: dtype must be float16 (the only low precision here), got {low}")
        if not isinstance(enabled, bool):
            raise TypeError(f"autocast: enabled must be a bool, got {enabled!r}")
        self.device_type, self.fast_dtype, self._enabled = device_type, low, enabled
        self._saved: list[tuple[bool, Any]] = []

    def __enter__(self) -> autocast:
        global enabled, dtype
        self._saved.append((enabled, dtype))
        enabled = self._enabled
        if self._enabled:
            dtype = self.fast_dtype
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        global enabled, dtype
        enabled, dtype = self._saved.pop()

    def __call__(self, fn: Any) -> Any:
        """Use as a decorator: ``fn`` runs inside this region."""
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self:
                return fn(*args, **kwargs)

        return wrapper
