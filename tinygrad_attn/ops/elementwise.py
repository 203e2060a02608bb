"""Elementwise ops: one output element from the matching input elements.

Binary ops broadcast like NumPy. Broadcasting copies an input along some axes, so in backward the
gradient is summed back along those axes (``sum_to``): the adjoint of a copy is a sum.
"""

from __future__ import annotations

import math
from typing import Any

from ..autograd import Function
from ..backend import array_module as _xp
from ..dtypes import default_float
from ..special import erf as _erf
from ..special import erf_single as _erf_single
from ..tensor import Tensor, _coerce
from .reduce import sum_to
from .shapes import broadcast_shape


def _binary_check(op: str, x: Any, y: Any) -> None:
    if x.shape != y.shape and x.ndim and y.ndim:  # a 0-d operand (a Python scalar) fits any shape
        broadcast_shape(x.shape, y.shape, op=op)  # raises with both shapes if incompatible


def _promote(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """An integer (or bool) tensor meeting a floating one takes the float's dtype, as in PyTorch
    (NumPy would make int64 with float32 float64)."""
    if x.data.dtype is y.data.dtype:  # fast path (a hot one): nothing to promote
        return x, y
    if x.dtype.kind == "f" and y.dtype.kind != "f":
        return x, cast(y, x.dtype)
    if y.dtype.kind == "f" and x.dtype.kind != "f":
        return cast(x, y.dtype), y
    return x, y


def _operands(x: Tensor, y: Any) -> tuple[Tensor, Tensor]:
    """The two operands of a binary op: y made a tensor like x (``_coerce``), then both promoted (``_promote``)."""
    if isinstance(y, Tensor) and x.data.dtype is y.data.dtype:  # fast path (the hot one): nothing to do
        return x, y
    return _promote(x, _coerce(y, x))


def _floating(x: Tensor) -> Tensor:
    """Integer and bool inputs of float math (exp, sqrt, ...) become the default float, as in PyTorch
    (NumPy would give float64)."""
    return x if x.dtype.kind == "f" else cast(x, default_float)


def _const(like: Tensor, array: Any) -> Tensor:
    """An array computed in backward that autograd treats as a constant (masks, signs)."""
    return Tensor._make(array.astype(like.dtype, copy=False))


# ---- arithmetic ---------------------------------------------------------------------------------------


class Add(Function):
    """z = x + y.   dz/dx = 1, dz/dy = 1 (then summed over broadcast axes)."""

    def forward(self, x: Any, y: Any) -> Any:
        _binary_check("add", x, y)
        self.shapes = x.shape, y.shape
        return x + y

    def backward(self, g: Tensor) -> tuple[Tensor | None, Tensor | None]:
        gx = sum_to(g, self.shapes[0]) if self.needs_input_grad[0] else None
        gy = sum_to(g, self.shapes[1]) if self.needs_input_grad[1] else None
        return gx, gy


class Sub(Function):
    """z = x - y.   dz/dx = 1, dz/dy = -1."""

    def forward(self, x: Any, y: Any) -> Any:
        _binary_check("sub", x, y)
        self.shapes = x.shape, y.shape
        return x - y

    def backward(self, g: Tensor) -> tuple[Tensor | None, Tensor | None]:
        gx = sum_to(g, self.shapes[0]) if self.needs_input_grad[0] else None
        gy = -sum_to(g, self.shapes[1]) if self.needs_input_grad[1] else None
        return gx, gy


class Mul(Function):
    """z = x * y.   dz/dx = y, dz/dy = x."""

    def forward(self, x: Any, y: Any) -> Any:
        _binary_check("mul", x, y)
        self.save_for_backward(x, y)
        return x * y

    def backward(self, g: Tensor) -> tuple[Tensor | None, Tensor | None]:
        x, y = self.saved_tensors
        gx = sum_to(g * y, x.shape) if self.needs_input_grad[0] else None
        gy = sum_to(g * x, y.shape) if self.needs_input_grad[1] else None
        return gx, gy


class Div(Function):
    """z = x / y.   dz/dx = 1/y, dz/dy = -x/y^2."""

    def forward(self, x: Any, y: Any) -> Any:
        _binary_check("div", x, y)
        self.save_for_backward(x, y)
        return x / y

    def backward(self, g: Tensor) -> tuple[Tensor | None, Tensor | None]:
        x, y = self.saved_tensors
        gx = sum_to(g / y, x.shape) if self.needs_input_grad[0] else None
        gy = sum_to(-g * x / (y * y), y.shape) if self.needs_input_grad[1] else None
        return gx, gy


class Neg(Function):
    """z = -x.   dz/dx = -1."""

    def forward(self, x: Any) -> Any:
        return -x

    def backward(self, g: Tensor) -> Tensor:
        return -g


class PowScalar(Function):
    """z = x^c for a Python number c.   dz/dx = c * x^(c-1)."""

    def forward(self, x: Any, exponent: float) -> Any:
        self.exponent = exponent
        self.save_for_backward(x)
        return x**exponent

    def backward(self, g: Tensor) -> Tensor:
        (x,) = self.saved_tensors
        c = self.exponent
        if c == 0:  # x^0 = 1 is constant; c * x^(c-1) would be 0 * inf = nan at x = 0
            return Tensor._make(g.xp.zeros_like(g.data))
        if c == 2:
            return g * x * 2
        return g * (x ** (c - 1)) * c


class Pow(Function):
    """z = x^y for tensors.   dz/dx = y * x^(y-1),  dz/dy = z * log(x)  (taken as 0 where x = 0, as PyTorch:
    there z = 0 for y > 0, and log 0 would turn 0 * -inf into nan)."""

    def forward(self, x: Any, y: Any) -> Any:
        _binary_check("pow", x, y)
        z = x**y
        self.save_for_backward(x, y, z)
        return z

    def backward(self, g: Tensor) -> tuple[Tensor | None, Tensor | None]:
        x, y, z = self.saved_tensors
        gx = sum_to(g * y * x ** (y - 1), x.shape) if self.needs_input_grad[0] else None
        if self.needs_input_grad[1]:
            at_zero = Tensor._make(x.data == 0)
            safe_x = where(at_zero, Tensor._make(x.xp.ones((), dtype=x.dtype)), x)
            gy = sum_to(where(at_zero, Tensor._make(x.xp.zeros((), dtype=x.dtype)), g * z * log(safe_x)), y.shape)
        else:
            gy = None
        return gx, gy


# ---- unary math ---------------------------------------------------------------------------------------


class Exp(Function):
    """z = e^x.   dz/dx = e^x = z (so we keep the output, not the input)."""

    def forward(self, x: Any) -> Any:
        z = _xp(x).exp(x)
        self.save_for_backward(z)
        return z

    def backward(self, g: Tensor) -> Tensor:
        (z,) = self.saved_tensors
        return g * z


class Log(Function):
    """z = ln x.   dz/dx = 1/x."""

    def forward(self, x: Any) -> Any:
        self.save_for_backward(x)
        return _xp(x).log(x)

    def backward(self, g: Tensor) -> Tensor:
        (x,) = self.saved_tensors
        return g / x


class Sqrt(Function):
    """z = sqrt(x).   dz/dx = 1 / (2 sqrt(x)) = 1 / (2z)."""

    def forward(self, x: Any) -> Any:
        z = _xp(x).sqrt(x)
        self.save_for_backward(z)
        return z

    def backward(self, g: Tensor) -> Tensor:
        (z,) = self.saved_tensors
        return g / (z * 2)


class Abs(Function):
    """z = |x|.   dz/dx = sign(x) (0 at 0, as PyTorch)."""

    def forward(self, x: Any) -> Any:
        self.save_for_backward(x)
        return _xp(x).abs(x)

    def backward(self, g: Tensor) -> Tensor:
        (x,) = self.saved_tensors
        return g * _const(x, x.xp.sign(x.data))


class Sin(Function):
    """z = sin x.   dz/dx = cos x."""

    def forward(self, x: Any) -> Any:
        self.save_for_backward(x)
        return _xp(x).sin(x)

    def backward(self, g: Tensor) -> Tensor:
        (x,) = self.saved_tensors
        return g * cos(x)


class Cos(Function):
    """z = cos x.   dz/dx = -sin x."""

    def forward(self, x: Any) -> Any:
        self.save_for_backward(x)
        return _xp(x).cos(x)

    def backward(self, g: Tensor) -> Tensor:
        (x,) = self.saved_tensors
        return -g * sin(x)


class Tanh(Function):
    """z = tanh x.   dz/dx = 1 - z^2."""

    def forward(self, x: Any) -> Any:
        z = _xp(x).tanh(x)
        self.save_for_backward(z)
        return z

    def backward(self, g: Tensor) -> Tensor:
        (z,) = self.saved_tensors
        return TanhBackward.apply(g, z)


class TanhBackward(Function):
    """w = g (1 - z^2), the gradient through tanh from its output z (one node instead of three ops and a
    constant).   dw/dg = 1 - z^2,  dw/dz = -2 g z."""

    def forward(self, g: Any, z: Any) -> Any:
        self.save_for_backward(g, z)
        w = z * z
        w *= -1
        w += 1
        w *= g
        return w

    def backward(self, u: Tensor) -> tuple[Tensor | None, Tensor | None]:
        g, z = self.saved_tensors
        dg = u * (1 - z * z) if self.needs_input_grad[0] else None
        dz = u * g * z * -2 if self.needs_input_grad[1] else None
        return dg, dz


class Sigmoid(Function):
    """z = 1 / (1 + e^-x).   dz/dx = z (1 - z).  Computed as (1 + tanh(x/2)) / 2: no overflow for any x."""

    def forward(self, x: Any) -> Any:
        xp = _xp(x)
        z = xp.tanh(x * 0.5)
        z += 1
        z *= 0.5
        self.save_for_backward(z)
        return z

    def backward(self, g: Tensor) -> Tensor:
        (z,) = self.saved_tensors
        return SigmoidBackward.apply(g, z)


class SigmoidBackward(Function):
    """w = g z (1 - z), the gradient through the sigmoid from its output z.   dw/dg = z (1 - z),
    dw/dz = g (1 - 2z)."""

    def forward(self, g: Any, z: Any) -> Any:
        self.save_for_backward(g, z)
        w = 1 - z
        w *= z
        w *= g
        return w

    def backward(self, u: Tensor) -> tuple[Tensor | None, Tensor | None]:
        g, z = self.saved_tensors
        dg = u * z * (1 - z) if self.needs_input_grad[0] else None
        dz = u * g * (1 - z * 2) if self.needs_input_grad[1] else None
        return dg, dz


class Relu(Function):
    """z = max(x, 0).   dz/dx = 1 where x > 0, else 0."""

    def forward(self, x: Any) -> Any:
        z = _xp(x).maximum(x, 0)
        self.save_for_backward(z)
        return z

    def backward(self, g: Tensor) -> Tensor:
        (z,) = self.saved_tensors
        return g * _const(z, z.data > 0)


class Erf(Function):
    """z = erf x.   dz/dx = 2/sqrt(pi) * exp(-x^2)."""

    def forward(self, x: Any) -> Any:
        self.save_for_backward(x)
        return _erf(x, _xp(x))

    def backward(self, g: Tensor) -> Tensor:
        (x,) = self.saved_tensors
        return g * exp(-(x * x)) * (2 / math.sqrt(math.pi))


_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)


class Gelu(Function):
    """Exact: z = x Phi(x) = x/2 (1 + erf(x/sqrt 2)),   dz/dx = Phi(x) + x phi(x), phi the normal pdf.
    Tanh approximation: z = x/2 (1 + tanh(u)), u = sqrt(2/pi)(x + 0.044715 x^3),
    dz/dx = (1 + tanh u)/2 + x/2 (1 - tanh^2 u) sqrt(2/pi)(1 + 3 * 0.044715 x^2).
    Both directions are array code; backward is one ``GeluBackward`` node. Forward keeps Phi(x) (its tanh
    approximation) besides x, so that backward does not evaluate erf again."""

    def forward(self, x: Any, approximate: str) -> Any:
        self.approximate = approximate
        cdf = _gelu_cdf(x, approximate)
        self.save_for_backward(x, cdf)
        return x * cdf

    def backward(self, g: Tensor) -> Tensor:
        x, cdf = self.saved_tensors
        return GeluBackward.apply(g, x, approximate=self.approximate, cdf=cdf.data)


class GeluBackward(Function):
    """z = g * d(x), d = gelu' (see ``Gelu``).   dz/dg = d(x);  dz/dx = g d'(x), with d' = phi(x) (2 - x^2) for
    the exact GELU and (1 - t^2)(k - x t k^2 + 3 sqrt(2/pi) 0.044715 x^2), t = tanh u, k = du/dx, for the tanh one.
    ``cdf``: Phi(x) (or (1 + t)/2) as ``Gelu`` computed it; a constant here, rebuilt from x for the derivatives."""

    def forward(self, g: Any, x: Any, approximate: str, cdf: Any) -> Any:
        self.approximate = approximate
        self.save_for_backward(g, x)
        d = x * x
        if approximate == "tanh":  # d = (1 + t)/2 + x/2 (1 - t^2) k, and cdf = (1 + t)/2, so 1 - t^2 = 4 cdf (1 - cdf)
            d *= 3 * 0.044715 * _SQRT_2_OVER_PI
            d += _SQRT_2_OVER_PI
            d *= x
            d *= cdf
            d *= 1 - cdf
            d *= 2
        else:  # d = Phi + x phi
            d *= -0.5
            d = _xp(x).exp(d)
            d *= x
            d *= 1 / math.sqrt(2 * math.pi)
        d += cdf
        d *= g
        return d

    def backward(self, u: Tensor) -> tuple[Tensor | None, Tensor | None]:
        g, x = self.saved_tensors
        if self.approximate == "tanh":
            t = tanh((x + x * x * x * 0.044715) * _SQRT_2_OVER_PI)
            k = (x * x * (3 * 0.044715) + 1) * _SQRT_2_OVER_PI
            d = (t + 1) * 0.5 + x * 0.5 * (1 - t * t) * k
            slope = (1 - t * t) * (k - x * t * k * k + x * x * (3 * 0.044715 * _SQRT_2_OVER_PI))
        else:
            pdf = exp(x * x * -0.5) * (1 / math.sqrt(2 * math.pi))
            d = (erf(x * (1 / math.sqrt(2))) + 1) * 0.5 + x * pdf
            slope = pdf * (2 - x * x)
        dg = u * d if self.needs_input_grad[0] else None
        dx = u * g * slope if self.needs_input_grad[1] else None
        return dg, dx


def _gelu_cdf(x: Any, approximate: str) -> Any:
    """Phi(x) = (1 + erf(x / sqrt 2)) / 2, or its tanh approximation (1 + tanh u) / 2, as a new array.
    A float32 x gets erf in float32 (``erf_single``, within 4.2e-7), as PyTorch computes it."""
    xp = _xp(x)
    if approximate == "tanh":
        inner = x * x
        inner *= 0.044715
        inner += 1
        inner *= x
        inner *= _SQRT_2_OVER_PI
        inner = xp.tanh(inner)
    else:
        inner = _erf_single(x * (1 / math.sqrt(2)), xp)
    inner += 1
    inner *= 0.5
    return inner


# ---- comparisons that carry gradient ---------------------------------------------------------------------


class Maximum(Function):
    """z = max(x, y).   The gradient goes to the larger input; on ties it is split evenly."""

    def forward(self, x: Any, y: Any) -> Any:
        _binary_check("maximum", x, y)
        self.save_for_backward(x, y)
        return _xp(x).maximum(x, y)

    def backward(self, g: Tensor) -> tuple[Tensor | None, Tensor | None]:
        x, y = self.saved_tensors
        share_x = _const(g, (x.data > y.data) + 0.5 * (x.data == y.data))
        return _split_between(self, g, share_x, x.shape, y.shape)


class Minimum(Function):
    """z = min(x, y).   The gradient goes to the smaller input; on ties it is split evenly."""

    def forward(self, x: Any, y: Any) -> Any:
        _binary_check("minimum", x, y)
        self.save_for_backward(x, y)
        return _xp(x).minimum(x, y)

    def backward(self, g: Tensor) -> tuple[Tensor | None, Tensor | None]:
        x, y = self.saved_tensors
        share_x = _const(g, (x.data < y.data) + 0.5 * (x.data == y.data))
        return _split_between(self, g, share_x, x.shape, y.shape)


def _split_between(fn: Function, g: Tensor, share_x: Tensor, shape_x: tuple, shape_y: tuple) -> tuple:
    gx = sum_to(g * share_x, shape_x) if fn.needs_input_grad[0] else None
    gy = sum_to(g * (1 - share_x), shape_y) if fn.needs_input_grad[1] else None
    return gx, gy


class Where(Function):
    """z = x where cond else y.   dz/dx = cond, dz/dy = not cond (cond gets no gradient)."""

    def forward(self, cond: Any, x: Any, y: Any) -> Any:
        if cond.dtype.kind != "b":
            raise TypeError(f"where: the condition must be a boolean tensor, got {cond.dtype}")
        broadcast_shape(cond.shape, x.shape, y.shape, op="where")
        self.save_for_backward(cond)
        self.shapes = x.shape, y.shape
        return _xp(x).where(cond, x, y)

    def backward(self, g: Tensor) -> tuple[None, Tensor | None, Tensor | None]:
        (cond,) = self.saved_tensors
        zero = Tensor._make(g.xp.zeros((), dtype=g.dtype))
        gx = sum_to(where(cond, g, zero), self.shapes[0]) if self.needs_input_grad[1] else None
        gy = sum_to(where(cond, zero, g), self.shapes[1]) if self.needs_input_grad[2] else None
        return None, gx, gy


class Clamp(Function):
    """z = min(max(x, lo), hi).   dz/dx = 1 where lo <= x <= hi, else 0."""

    def forward(self, x: Any, lo: float | None, hi: float | None) -> Any:
        self.save_for_backward(x)
        self.lo, self.hi = lo, hi
        return _xp(x).clip(x, lo, hi)

    def backward(self, g: Tensor) -> Tensor:
        (x,) = self.saved_tensors
        inside = x.xp.ones(x.shape, dtype=bool)
        if self.lo is not None:
            inside &= x.data >= self.lo
        if self.hi is not None:
            inside &= x.data <= self.hi
        return g * _const(g, inside)


class Cast(Function):
    """z = x converted to another dtype.   dz/dx = 1 (the gradient is converted back)."""

    def forward(self, x: Any, dtype: Any) -> Any:
        self.in_dtype = x.dtype
        return x.astype(dtype)

    def backward(self, g: Tensor) -> Tensor:
        return cast(g, self.in_dtype)


class Clone(Function):
    """z = a copy of x.   dz/dx = 1."""

    def forward(self, x: Any) -> Any:
        return x.copy()

    def backward(self, g: Tensor) -> Tensor:
        return g


# ---- the functions users call ---------------------------------------------------------------------------


def add(x: Tensor, y: Any) -> Tensor:
    return Add.apply(*_operands(x, y))


def sub(x: Tensor, y: Any) -> Tensor:
    return Sub.apply(*_operands(x, y))


def mul(x: Tensor, y: Any) -> Tensor:
    return Mul.apply(*_operands(x, y))


def div(x: Tensor, y: Any) -> Tensor:
    if x.dtype.kind in "iub" and (not isinstance(y, Tensor) or y.dtype.kind in "iub"):
        x = cast(x, default_float)  # true division of integers gives floats, as in PyTorch
    return Div.apply(*_operands(x, y))


def neg(x: Tensor) -> Tensor:
    return Neg.apply(x)


def pow(x: Tensor, exponent: Any) -> Tensor:
    if isinstance(exponent, Tensor):
        return Pow.apply(*_promote(x, exponent))
    if isinstance(exponent, float) and x.dtype.kind != "f":
        x = cast(x, default_float)  # int ** float gives floats, as in PyTorch
    return PowScalar.apply(x, exponent=exponent)


def exp(x: Tensor) -> Tensor:
    return Exp.apply(_floating(x))


def log(x: Tensor) -> Tensor:
    return Log.apply(_floating(x))


def sqrt(x: Tensor) -> Tensor:
    return Sqrt.apply(_floating(x))


def abs(x: Tensor) -> Tensor:
    return Abs.apply(x)


def sin(x: Tensor) -> Tensor:
    return Sin.apply(_floating(x))


def cos(x: Tensor) -> Tensor:
    return Cos.apply(_floating(x))


def tanh(x: Tensor) -> Tensor:
    return Tanh.apply(_floating(x))


def sigmoid(x: Tensor) -> Tensor:
    return Sigmoid.apply(_floating(x))


def relu(x: Tensor) -> Tensor:
    return Relu.apply(x)


def erf(x: Tensor) -> Tensor:
    return Erf.apply(_floating(x))


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """GELU: x * Phi(x); ``approximate="tanh"`` uses the tanh formula of Hendrycks & Gimpel."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return Gelu.apply(_floating(x), approximate=approximate)


def maximum(x: Tensor, y: Any) -> Tensor:
    return Maximum.apply(*_operands(x, y))


def minimum(x: Tensor, y: Any) -> Tensor:
    return Minimum.apply(*_operands(x, y))


def where(cond: Tensor, x: Any, y: Any) -> Tensor:
    """Elements of x where ``cond`` is True, of y elsewhere (x, y may be Python numbers)."""
    if not isinstance(cond, Tensor):
        raise TypeError(f"where: condition must be a boolean Tensor, got {type(cond).__name__}")
    if isinstance(x, Tensor):
        y = _coerce(y, x)
    elif isinstance(y, Tensor):
        x = _coerce(x, y)
    else:
        raise TypeError("where: at least one of x and y must be a Tensor")
    return Where.apply(cond, *_promote(x, y))


def clamp(x: Tensor, min: float | None = None, max: float | None = None) -> Tensor:
    if min is None and max is None:
        raise ValueError("clamp: give at least one of min and max")
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        out = x if min is None else maximum(x, min)
        return out if max is None else minimum(out, max)
    return Clamp.apply(x, lo=min, hi=max)


def cast(x: Tensor, dtype: Any) -> Tensor:
    if x.dtype == dtype:
        return x
    return Cast.apply(x, dtype=dtype)


def clone(x: Tensor) -> Tensor:
    return Clone.apply(x)
