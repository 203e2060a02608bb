"""Adam and AdamW: per-parameter step sizes from running averages of the gradient and its square."""

from __future__ import annotations

from typing import Any

from .. import cuda_kernels
from ..backend import array_module
from ..tensor import Tensor
from .optimizer import Optimizer, ParamsT


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015), PyTorch's update (``torch.optim.Adam``).

    With gradient g, parameter θ, learning rate η, step count t (per parameter, from 1)::

        θ ← θ·(1 - η·λ)                       if decoupled_weight_decay (AdamW)
        g ← ±g + λ·θ                          otherwise (L2 penalty; minus when maximize=True)
        m ← β1·m + (1 - β1)·g                 first moment
        v ← β2·v + (1 - β2)·g²                second moment
        v̂ ← max(v̂, v) if amsgrad, else v
        θ ← θ - η/(1 - β1^t) · m / (sqrt(v̂)/sqrt(1 - β2^t) + ε)      (bias-corrected)

    State per parameter: ``step`` (an int), ``exp_avg`` (m), ``exp_avg_sq`` (v) and, with amsgrad,
    ``max_exp_avg_sq`` (v̂), all in the parameter's dtype (float32, with a float32 master copy, for a float16
    parameter: see ``Optimizer``). The update runs in place on the parameter
    and state arrays, with one reused scratch buffer per dtype: a step allocates nothing.
    """

    def __init__(self, params: ParamsT, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, amsgrad: bool = False, *, maximize: bool = False,
                 decoupled_weight_decay: bool = False) -> None:
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def _check_hyperparameters(self, group: dict[str, Any]) -> None:
        super()._check_hyperparameters(group)
        name = self._name
        if group["eps"] < 0:
            raise ValueError(f"{name}: invalid eps={group['eps']!r} (must be >= 0)")
        if len(group["betas"]) != 2:
            raise ValueError(f"{name}: betas must be a pair (beta1, beta2), got {group['betas']!r}")
        for i, beta in enumerate(group["betas"]):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"{name}: invalid beta{i + 1}={beta!r} in betas (must be in [0, 1))")
        if group["weight_decay"] < 0:
            raise ValueError(f"{name}: invalid weight_decay={group['weight_decay']!r} (must be >= 0)")

    def _update(self, param: Any, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> None:
        xp = array_module(param)
        lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
        beta1, beta2 = group["betas"]
        if "step" not in state:  # (a float16 parameter's state already holds its master copy)
            state["step"] = 0
            state["exp_avg"] = Tensor._make(xp.zeros_like(param))
            state["exp_avg_sq"] = Tensor._make(xp.zeros_like(param))
        if group["amsgrad"] and "max_exp_avg_sq" not in state:
            state["max_exp_avg_sq"] = Tensor._make(xp.zeros_like(param))
        state["step"] += 1
        t = state["step"]
        m, v = state["exp_avg"].data, state["exp_avg_sq"].data
        decoupled = group["decoupled_weight_decay"]
        if decoupled and wd:
            param *= 1 - lr * wd
        l2 = 0 if decoupled else wd
        if not group["amsgrad"] and cuda_kernels.fused(param, grad, m, v):  # the same step, one GPU kernel
            cuda_kernels.adam_update_(param, grad, m, v, lr=lr, beta1=beta1, beta2=beta2, eps=eps, step=t, l2=l2,
                                      maximize=group["maximize"])
            return
        s = self._scratch_like(param)

        # m += (1 - β1)·(g - m)
        g = self._regularized_grad(grad, param, l2, group["maximize"], out=s)
        xp.subtract(g, m, out=s)
        s *= 1 - beta1
        m += s
        # v = β2·v + (1 - β2)·g²   (g is recomputed if it lived in the scratch buffer)
        g = self._regularized_grad(grad, param, l2, group["maximize"], out=s)
        xp.multiply(g, g, out=s)
        s *= 1 - beta2
        v *= beta2
        v += s
        if group["amsgrad"]:
            v = xp.maximum(state["max_exp_avg_sq"].data, v, out=state["max_exp_avg_sq"].data)

        # θ -= η/(1 - β1^t) · m / (sqrt(v)/sqrt(1 - β2^t) + ε)
        bias_correction1 = 1 - beta1**t
        bias_correction2_sqrt = (1 - beta2**t) ** 0.5
        xp.sqrt(v, out=s)
        s /= bias_correction2_sqrt
        s += eps
        xp.divide(m, s, out=s)
        s *= lr / bias_correction1
        param -= s


class AdamW(Adam):
    """AdamW (Loshchilov & Hutter, 2019): Adam with decoupled weight decay, ``θ ← θ·(1 - η·λ)`` before the
    Adam step instead of an L2 term in the gradient. Default ``weight_decay=1e-2`` as in PyTorch."""

    def __init__(self, params: ParamsT, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True)
