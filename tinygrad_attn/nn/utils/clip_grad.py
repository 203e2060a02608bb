"""Gradient clipping, in place on the parameters' ``.grad``: call it between ``backward()`` and ``step()``.

``clip_grad_norm_`` treats all gradients as one long vector g and rescales it to norm at most
``max_norm``: g <- g * min(1, max_norm / (||g|| + 1e-6)). The direction of the update is kept, only its
length is capped, which tames the occasional exploding step. ``clip_grad_value_`` clamps each element.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from ...autograd import no_grad
from ...backend import array_module
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
    Returns that norm, measured before clipping (handy to log). Each gradient is read once to get its
    partial sum and, only if clipping is needed, scaled once in place. ``foreach`` is accepted for
    PyTorch compatibility and ignored.
    """
    p = float(norm_type)
    if not p > 0:
        raise ValueError(f"clip_grad_norm_: norm_type must be positive (or inf), got {norm_type!r}")
    grads = _grads(parameters)
    if not grads:
        return Tensor(0.0)
    with no_grad():
        by_device: dict[Any, list[Any]] = {}
        for g in grads:
            by_device.setdefault(g.device, []).append(g.data)
        totals = []
        for arrays in by_device.values():  # one reduction per device, not one sync per parameter
            xp = array_module(arrays[0])
            parts = xp.stack([_partial(xp, a, p).astype(arrays[0].dtype) for a in arrays])
            totals.append(float(parts.max() if p == math.inf else parts.sum()))
        total = max(totals) if p == math.inf else math.fsum(totals) ** (1.0 / p)
        if error_if_nonfinite and not math.isfinite(total):
            raise RuntimeError(
                f"clip_grad_norm_: the total norm of order {p} of the gradients is non-finite ({total}), so it "
                "cannot be clipped. Set error_if_nonfinite=False to scale the gradients by it anyway.")
        coef = max_norm / (total + 1e-6)
        if coef < 1.0 or math.isnan(coef):
            for g in grads:
                g.data *= coef
                g._version.value += 1
    first = grads[0]
    return Tensor._make(first.xp.asarray(total, dtype=first.dtype))


def clip_grad_value_(parameters: Tensor | Iterable[Tensor], clip_value: float, foreach: bool | None = None) -> None:
    """Clamp every gradient element into [-clip_value, clip_value], in place."""
    v = float(clip_value)
    if v < 0:
        raise ValueError(f"clip_grad_value_: clip_value must be non-negative, got {clip_value}")
    for g in _grads(parameters):
        g.xp.clip(g.data, -v, v, out=g.data)
        g._version.value += 1
