"""Checking gradients against finite differences, for learners and for our own test suite.

``gradcheck`` compares the gradient autograd computes with the central difference
(f(x + eps) - f(x - eps)) / 2 eps, element by element, in float64. To compare one number per input
element rather than a whole Jacobian, both sides are contracted with a fixed random vector v over the
outputs: autograd gives d(v . f)/dx in one backward pass, and each finite difference gives one entry of it.

``gradgradcheck`` does the same to the first derivative itself (computed with ``create_graph=True``),
which checks second derivatives.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .autograd import grad
from .tensor import Tensor

# Central differences in float64 are off by O(eps^2) (truncation) plus about 1e-16 |f| / eps (rounding),
# both far below these tolerances for a correct gradient; a gradient off by one part in a million fails.
EPS = 1e-6
ATOL = 1e-8
RTOL = 1e-6


class GradcheckError(AssertionError):
    """Raised when an analytic gradient disagrees with finite differences."""


def _as_tuple(x: Any) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _outputs(fn: Callable, inputs: Sequence[Tensor]) -> tuple[Tensor, ...]:
    outs = _as_tuple(fn(*inputs))
    return tuple(o for o in outs if isinstance(o, Tensor) and o.dtype.kind == "f")


def _float64_leaves(inputs: Sequence[Any]) -> list[Any]:
    out = []
    for x in inputs:
        if isinstance(x, Tensor) and x.dtype.kind == "f":
            leaf = Tensor._make(x.data.astype(np.float64))
            leaf.requires_grad = x.requires_grad
            out.append(leaf)
        else:
            out.append(x)
    return out


def gradcheck(
    fn: Callable[..., Any],
    inputs: Sequence[Any],
    eps: float = EPS,
    atol: float = ATOL,
    rtol: float = RTOL,
    raise_exception: bool = True,
    seed: int = 0,
) -> bool:
    """Check d fn / d x for every input tensor that requires grad, in float64.

    On a mismatch raises ``GradcheckError`` naming the input, the element, both values and the difference
    (or returns False with ``raise_exception=False``).
    """
    inputs = _float64_leaves(_as_tuple(inputs))
    wrt = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not wrt:
        raise ValueError("gradcheck: no input requires grad; pass tensors with requires_grad=True")
    outs = _outputs(fn, inputs)
    if not outs:
        raise GradcheckError("gradcheck: fn returned no floating-point tensor")
    rng = np.random.default_rng(seed)
    vs = [rng.standard_normal(o.shape) for o in outs]
    used = [o for o in outs if o.requires_grad]
    # Outputs that do not require grad are constants to autograd: their analytic derivative is 0, and the
    # finite differences below must agree (a constant first derivative makes gradgradcheck land here).
    analytic = grad(used, [inputs[i] for i in wrt],
                    grad_outputs=[Tensor._make(o.xp.asarray(v)) for o, v in zip(outs, vs) if o.requires_grad],
                    allow_unused=True) if used else (None,) * len(wrt)
    for k, i in enumerate(wrt):
        x = inputs[i]
        g = analytic[k]
        a = np.zeros(x.shape) if g is None else g.numpy().astype(np.float64)
        n = _numeric(fn, inputs, i, vs, eps)
        bad = ~np.isclose(a, n, rtol=rtol, atol=atol, equal_nan=True)  # a nan on one side only is a mismatch
        if bad.any():
            j = np.unravel_index(int(np.argmax(np.abs(a - n) * bad)), a.shape) if a.ndim else ()
            message = (f"gradcheck: gradient of input {i} (shape {tuple(x.shape)}) disagrees at element "
                       f"{tuple(int(t) for t in j)}: analytic {a[j]:.8g}, numeric {n[j]:.8g}, difference "
                       f"{abs(a[j] - n[j]):.3g} (atol={atol}, rtol={rtol}); {int(bad.sum())} of {a.size} elements "
                       "disagree")
            if raise_exception:
                raise GradcheckError(message)
            return False
    return True


def _numeric(fn: Callable, inputs: list[Any], i: int, vs: Sequence[Any], eps: float) -> np.ndarray:
    """Central differences of v . fn with respect to every element of input i.

    The outputs are differenced before they are contracted with v: outputs that do not depend on the moved
    element then cancel exactly, and only the ones that do contribute rounding error."""
    x = inputs[i]
    host = x.numpy().astype(np.float64)
    out = np.zeros(host.shape)
    flat = host.reshape(-1)
    for j in range(flat.size):
        values = []
        for step in (eps, -eps):
            probe = flat.copy()
            probe[j] += step
            moved = list(inputs)
            # still requires grad: gradgradcheck's fn differentiates with respect to it
            moved[i] = Tensor._make(x.xp.asarray(probe.reshape(host.shape)), requires_grad=True)
            values.append([o.numpy().astype(np.float64) for o in _outputs(fn, moved)])
        out.reshape(-1)[j] = sum(float(((hi - lo) * v).sum()) for hi, lo, v in zip(*values, vs)) / (2 * eps)
    return out


def gradgradcheck(
    fn: Callable[..., Any],
    inputs: Sequence[Any],
    eps: float = EPS,
    atol: float = ATOL,
    rtol: float = RTOL,
    raise_exception: bool = True,
    seed: int = 0,
) -> bool:
    """Check second derivatives: gradcheck applied to x -> d(v . fn(x))/dx, computed with create_graph."""
    inputs = _float64_leaves(_as_tuple(inputs))
    wrt = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    rng = np.random.default_rng(seed + 1)
    outs = _outputs(fn, inputs)
    vs = [rng.standard_normal(o.shape) for o in outs]

    def first_derivative(*xs: Any) -> tuple[Tensor, ...]:
        outs = _outputs(fn, xs)
        used = [(o, v) for o, v in zip(outs, vs) if o.requires_grad]
        gs = grad([o for o, _ in used], [xs[i] for i in wrt],
                  grad_outputs=[Tensor._make(o.xp.asarray(v)) for o, v in used],
                  create_graph=True, allow_unused=True)
        return tuple(g for g in gs if g is not None)

    return gradcheck(first_derivative, inputs, eps, atol, rtol, raise_exception, seed)
