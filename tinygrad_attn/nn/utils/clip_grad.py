"""Gradient clipping, in place on the parameters' ``.grad``: call it between ``backward()`` and ``step()``.

``clip_grad_norm_`` treats all gradients as one long vector g and rescales it to norm at most
``max_norm``: g <- g * min(1, max_norm / (||g|| + 1e-6)). The direction of the update is kept, only its
length is capped, which tames the occasional exploding step. ``clip_grad_value_`` clamps each element.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from ...autograd import no_grad
from ...backend import array_module, device_of, on_device_of, to_device
from ...tensor import Tensor

__all__ = ["clip_grad_norm_", "clip_grad_value_"]


def _grads(parameters: Tensor | Iterable[Tensor]) -> list[Tensor]:
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p.grad for p in parameters if p.grad is not None]


def _partial(xp: Any, a: Any, p: float) -> Any:
    """This gradient's share of the total: sum |g|^p, or max |g| for p = inf (a 0-d device array)."""
    if a.size == 0:
        return xp.zeros((), dtype=a.dtype)
    if p == 2.0:
        flat = a.ravel()
        return xp.dot(flat, flat)
    if p == math.inf:
        return xp.abs(a).max()
    if p == 1.0:
        return xp.abs(a).sum()
    return (xp.abs(a) ** p).sum()


def clip_grad_norm_(parameters: Tensor | Iterable[Tensor], max_norm: float, norm_type: float | str = 2.0,
                    error_if_nonfinite: bool = False, foreach: bool | None = None) -> Tensor:
    """Rescale all gradients together so that their joint ``norm_type``-norm is at most ``max_norm``.

    ||g||_p = (sum over every element of every gradient of |g|^p)^(1/p) (the max |g| for p = inf).
    Returns that norm, measured before clipping (handy to log), as a 0-d tensor on the first gradient's
    device. Each gradient is read once to get its partial sum and scaled once in place. On a GPU nothing is
    read back to the host (a read would stall the device's queue): the norm and the factor
    min(1, max_norm / (norm + 1e-6)) stay there and every gradient is multiplied by it, 1 or not; on the CPU
    the factor is read for free and gradients that need no clipping are left untouched. Only
    ``error_if_nonfinite=True`` reads the norm. ``foreach`` is accepted for PyTorch compatibility and ignored.
    """
    p = float(norm_type)
    if not p > 0:
        raise ValueError(f"clip_grad_norm_: norm_type must be positive (or inf), got {norm_type!r}")
    grads = _grads(parameters)
    if not grads:
        return Tensor(0.0)
    first = grads[0].data
    with no_grad():
        by_device: dict[Any, list[Any]] = {}
        for g in grads:
            by_device.setdefault(g.device, []).append(g.data)
        totals = []
        for arrays in by_device.values():  # one reduction per device, moved to the first gradient's device
            xp = array_module(arrays[0])
            with on_device_of(arrays[0]):
                parts = xp.stack([_partial(xp, a, p).astype(first.dtype) for a in arrays])
                totals.append(to_device(parts.max() if p == math.inf else parts.sum(), device_of(first)))
        xp = array_module(first)
        with on_device_of(first):
            total = xp.stack(totals).max() if p == math.inf else xp.stack(totals).sum() ** (1.0 / p)
            if error_if_nonfinite and not bool(xp.isfinite(total)):
                raise RuntimeError(
                    f"clip_grad_norm_: the total norm of order {p} of the gradients is non-finite ({float(total)}), "
                    "so it cannot be clipped. Set error_if_nonfinite=False to scale the gradients by it anyway.")
            coef = xp.minimum(max_norm / (total + 1e-6), 1.0).astype(first.dtype)  # nan stays nan
        if isinstance(first, np.ndarray) and float(coef) == 1.0:
            return Tensor._make(np.asarray(total, dtype=first.dtype))  # the CPU reads the factor for free
        for arrays in by_device.values():
            with on_device_of(arrays[0]):
                factor = to_device(coef, device_of(arrays[0]))
                for a in arrays:
                    a *= factor
        for g in grads:
            g._version.value += 1
    return Tensor._make(xp.asarray(total, dtype=first.dtype))


def clip_grad_value_(parameters: Tensor | Iterable[Tensor], clip_value: float, foreach: bool | None = None) -> None:
    """Clamp every gradient element into [-clip_value, clip_value], in place."""
    v = float(clip_value)
    if v < 0:
        raise ValueError(f"clip_grad_value_: clip_value must be non-negative, got {clip_value}")
    for g in _grads(parameters):
        g.xp.clip(g.data, -v, v, out=g.data)
        g._version.value += 1
