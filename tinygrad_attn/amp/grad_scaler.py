"""``GradScaler``: dynamic loss scaling (the known-good algorithm; Chainer's ``loss_scaling`` and PyTorch's
``torch.amp.GradScaler``).

Float16 gradients underflow to 0 below about 6e-8. Backpropagating ``loss · S`` multiplies every
gradient by S and lifts them into range; before the optimizer step they are divided by S again (in float32
master gradients nothing is lost). S is chosen on the fly:

    start high (2**16); a step whose gradients hold an inf or nan is skipped and S ← S · backoff (0.5);
    after ``growth_interval`` clean steps in a row, S ← S · growth (2).

The inf/nan check costs one read from the device per step (per device the parameters live on), not one
per parameter: each gradient's float32 sum is added into a device scalar, which is non-finite exactly when
some gradient element is (or when the sum itself overflows float32, which a usable gradient never does),
and ``step`` reads that scalar once.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ..backend import array_module, device_of, on_device_of

if TYPE_CHECKING:
    from ..optim.optimizer import Optimizer
    from ..tensor import Tensor

_READY, _UNSCALED, _STEPPED = "ready", "unscaled", "stepped"


class GradScaler:
    """Scale the loss, unscale the gradients, skip steps with inf/nan gradients, adapt the scale.

    Names and semantics as ``torch.amp.GradScaler``. With ``enabled=False`` every method is a
    pass-through (``scale`` returns its input, ``step`` just steps), so one training loop serves both
    precisions.
    """

    def __init__(self, device: str = "cuda", init_scale: float = 2.0**16, growth_factor: float = 2.0,
                 backoff_factor: float = 0.5, growth_interval: int = 2000, enabled: bool = True) -> None:
        if not init_scale > 0 or not math.isfinite(init_scale):
            raise ValueError(f"GradScaler: init_scale must be a positive finite number, got {init_scale!r}")
        if not growth_factor > 1.0:
            raise ValueError(f"GradScaler: growth_factor must be > 1, got {growth_factor!r}")
        if not 0.0 < backoff_factor < 1.0:
            raise ValueError(f"GradScaler: backoff_factor must be in (0, 1), got {backoff_factor!r}")
        if not isinstance(growth_interval, int) or growth_interval < 1:
            raise ValueError(f"GradScaler: growth_interval must be a positive int, got {growth_interval!r}")
        self.device = device
        self._enabled = bool(enabled)
        self._scale = float(init_scale)
        self._growth_factor, self._backoff_factor = float(growth_factor), float(backoff_factor)
        self._growth_interval = growth_interval
        self._growth_tracker = 0
        self._per_optimizer: dict[int, dict[str, Any]] = {}

    def is_enabled(self) -> bool:
        return self._enabled

    def get_scale(self) -> float:
        """The current scale S (1.0 when disabled)."""
        return self._scale if self._enabled else 1.0

    def get_growth_factor(self) -> float:
        return self._growth_factor

    def get_backoff_factor(self) -> float:
        return self._backoff_factor

    def get_growth_interval(self) -> int:
        return self._growth_interval

    # ---- the step ---------------------------------------------------------------------------------------
    def scale(self, outputs: Any) -> Any:
        """``outputs · S`` (a tensor, or a list/tuple of them); unchanged when disabled."""
        if not self._enabled:
            return outputs
        if isinstance(outputs, (list, tuple)):
            return type(outputs)(self.scale(o) for o in outputs)
        if not hasattr(outputs, "grad_fn"):
            raise TypeError(f"GradScaler.scale: expected a Tensor (or a list/tuple of them), got "
                            f"{type(outputs).__name__}")
        return outputs * self._scale

    def _state(self, optimizer: Optimizer) -> dict[str, Any]:
        return self._per_optimizer.setdefault(id(optimizer), {"stage": _READY, "found_inf": None})

    def unscale_(self, optimizer: Optimizer) -> None:
        """Divide the gradients of ``optimizer``'s parameters by S, in place (call it before clipping them).

        Adds each gradient's float32 sum into one device scalar per device; ``step`` reads it once.
        """
        if not self._enabled:
            return
        state = self._state(optimizer)
        if state["stage"] == _UNSCALED:
            raise RuntimeError("GradScaler.unscale_() has already been called on this optimizer since the last "
                               "update()")
        if state["stage"] == _STEPPED:
            raise RuntimeError("GradScaler.unscale_() is being called after step(); call update() first")
        inv_scale = 1.0 / self._scale
        sums: dict[Any, Any] = {}
        for group in optimizer.param_groups:
            for p in group["params"]:
                g: Tensor | None = p.grad
                if g is None:
                    continue
                if g.dtype != np.float32 and g.dtype != np.float64:
                    raise ValueError(f"GradScaler.unscale_: a gradient is {g.dtype}; unscaling needs float32 "
                                     "gradients (keep the parameters float32 and let autocast cast, rather than "
                                     "model.half())")
                if not getattr(g.data.flags, "writeable", True) or g.grad_fn is not None:
                    g = p.grad = g.detach().clone()
                data = g.data
                with on_device_of(data):
                    xp = array_module(data)
                    data *= inv_scale
                    total = xp.sum(data, dtype=np.float32)
                    key = device_of(data)
                    sums[key] = total if key not in sums else sums[key] + total
                g._version.value += 1
        state["sums"] = list(sums.values())
        state["stage"] = _UNSCALED

    def step(self, optimizer: Optimizer, *args: Any, **kwargs: Any) -> Any:
        """Unscale (unless ``unscale_`` did already), then ``optimizer.step()`` unless a gradient holds an
        inf or nan, in which case the step is skipped. Returns what ``optimizer.step`` returns (None if skipped).

        Reads one scalar from each device the gradients live on: the only host read of a scaled step.
        """
        if not self._enabled:
            return optimizer.step(*args, **kwargs)
        if "closure" in kwargs:
            raise RuntimeError("GradScaler.step: closures are not supported (as in PyTorch)")
        state = self._state(optimizer)
        if state["stage"] == _STEPPED:
            raise RuntimeError("GradScaler.step() has already been called since the last update()")
        if state["stage"] == _READY:
            self.unscale_(optimizer)
        state["found_inf"] = not all(math.isfinite(float(s)) for s in state.pop("sums"))
        state["stage"] = _STEPPED
        if state["found_inf"]:
            return None
        return optimizer.step(*args, **kwargs)

    def update(self, new_scale: float | None = None) -> None:
        """Adapt S after the step(s) of this iteration: back off if any skipped, grow after
        ``growth_interval`` clean iterations in a row. ``new_scale`` sets S outright instead."""
        if not self._enabled:
            return
        if new_scale is not None:
            if not new_scale > 0 or not math.isfinite(float(new_scale)):
                raise ValueError(f"GradScaler.update: new_scale must be a positive finite number, got {new_scale!r}")
            self._scale = float(new_scale)
        else:
            found = [s["found_inf"] for s in self._per_optimizer.values() if s["found_inf"] is not None]
            if not found:
                raise RuntimeError("GradScaler.update: no inf checks were recorded; call step(optimizer) first")
            if any(found):
                self._scale *= self._backoff_factor
                self._growth_tracker = 0
            else:
                self._growth_tracker += 1
                if self._growth_tracker == self._growth_interval:
                    self._scale *= self._growth_factor
                    self._growth_tracker = 0
        self._per_optimizer.clear()

    # ---- state dicts ------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """``{"scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker"}`` as in
        PyTorch; empty when disabled."""
        if not self._enabled:
            return {}
        return {"scale": self._scale, "growth_factor": self._growth_factor, "backoff_factor": self._backoff_factor,
                "growth_interval": self._growth_interval, "_growth_tracker": self._growth_tracker}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore ``state_dict()`` (scale and growth tracker included, so a resumed run continues exactly)."""
        if not self._enabled:
            return
        if not state_dict:
            raise RuntimeError("GradScaler.load_state_dict: the state dict is empty (it was saved by a disabled "
                               "GradScaler)")
        missing = [k for k in ("scale", "_growth_tracker") if k not in state_dict]
        if missing:
            raise ValueError(f"GradScaler.load_state_dict: missing {', '.join(missing)}")
        self._scale = float(_number(state_dict["scale"]))
        self._growth_factor = float(_number(state_dict.get("growth_factor", self._growth_factor)))
        self._backoff_factor = float(_number(state_dict.get("backoff_factor", self._backoff_factor)))
        self._growth_interval = int(_number(state_dict.get("growth_interval", self._growth_interval)))
        self._growth_tracker = int(_number(state_dict["_growth_tracker"]))


def _number(value: Any) -> Any:
    """A Python number from a number or a one-element tensor/array (a state dict that went through a file)."""
    if hasattr(value, "item"):
        return value.item()
    return value
