"""SGD: stochastic gradient descent, with optional momentum (heavy ball or Nesterov) and L2 weight decay."""

from __future__ import annotations

from typing import Any

from ..backend import array_module
from ..tensor import Tensor
from .optimizer import Optimizer, ParamsT


class SGD(Optimizer):
    """Stochastic gradient descent, PyTorch's update (``torch.optim.SGD``).

    With gradient g, parameter θ, learning rate η, momentum μ, dampening τ, weight decay λ::

        g ← ±g + λ·θ                          (minus when maximize=True)
        b ← g                    on the first step
        b ← μ·b + (1 - τ)·g      afterwards    (only when μ ≠ 0)
        g ← g + μ·b  if nesterov, else  g ← b
        θ ← θ - η·g

    State per parameter: ``momentum_buffer`` (only when μ ≠ 0; float32, with a float32 master copy, for a
    float16 parameter: see ``Optimizer``).
    """

    def __init__(self, params: ParamsT, lr: float = 1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False, *, maximize: bool = False) -> None:
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize)
        super().__init__(params, defaults)

    def _check_hyperparameters(self, group: dict[str, Any]) -> None:
        super()._check_hyperparameters(group)
        if group["momentum"] < 0:
            raise ValueError(f"SGD: invalid momentum={group['momentum']!r} (must be >= 0)")
        if group["weight_decay"] < 0:
            raise ValueError(f"SGD: invalid weight_decay={group['weight_decay']!r} (must be >= 0)")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("SGD: Nesterov momentum requires momentum > 0 and dampening = 0, got "
                             f"momentum={group['momentum']!r}, dampening={group['dampening']!r}")

    def _update(self, param: Any, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> None:
        xp = array_module(param)
        lr, mu, tau = group["lr"], group["momentum"], group["dampening"]
        s = self._scratch_like(param)
        g = self._regularized_grad(grad, param, group["weight_decay"], group["maximize"], out=s)  # grad or s

        if mu == 0:  # plain SGD: θ -= η·g
            xp.multiply(g, lr, out=s)
            param -= s
            return

        buf = state.get("momentum_buffer")
        if buf is None:  # first step: b = g
            buf = state["momentum_buffer"] = Tensor._make(g.copy())
            b = buf.data
        else:  # b = μ·b + (1 - τ)·g
            b = buf.data
            b *= mu
            if tau != 0:
                xp.multiply(g, 1 - tau, out=s)  # g is not needed again: nesterov requires τ = 0
                b += s
            else:
                b += g

        if not group["nesterov"]:  # θ -= η·b
            xp.multiply(b, lr, out=s)
        elif g is grad:  # θ -= η·(g + μ·b)
            xp.multiply(b, mu, out=s)
            s += g
            s *= lr
        else:  # g lives in the scratch buffer: subtract its two terms one after the other
            s *= lr
            param -= s
            xp.multiply(b, mu, out=s)
            s *= lr
        param -= s
