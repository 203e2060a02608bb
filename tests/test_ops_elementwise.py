"""Elementwise ops (tinygrad_attn/ops/elementwise.py): forward vs NumPy, first and second derivatives, no mutation,
PyTorch parity (tests/op_checks.py builds those), then ties, dtypes of Python scalars, gradient algebra and errors."""

from __future__ import annotations

import math
import operator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_attn as ta
from tests.op_checks import Case, case, examples, nary, op_tests, unary
from tests.strategies import (
    arrays,
    away_from,
    broadcastable_arrays,
    broadcastable_shapes,
    grid,
    masks,
    nonzero,
    positives,
    reals,
    shapes,
)


def _torch(name: str):
    """``torch.<name>`` looked up at call time, so the module imports without torch."""
    return lambda *xs, **kw: getattr(__import__("torch"), name)(*xs, **kw)


def binary(x: st.SearchStrategy[float] | None = None, y: st.SearchStrategy[float] | None = None
           ) -> st.SearchStrategy[Case]:
    """Two arrays of broadcastable shapes, elements from ``x`` and ``y`` (default ``reals()``)."""
    return broadcastable_arrays(x, y).map(lambda xy: case(*xy))


_erf = np.vectorize(math.erf, otypes=[np.float64])


def _gelu_ref(x: np.ndarray, approximate: str) -> np.ndarray:
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1 + _erf(x / math.sqrt(2)))


# ---- arithmetic -------------------------------------------------------------------------------------------------

TestAdd = op_tests(operator.add, np.add, binary(), torch_fn=operator.add)
TestSub = op_tests(operator.sub, np.subtract, binary(), torch_fn=operator.sub)
TestMul = op_tests(operator.mul, np.multiply, binary(), torch_fn=operator.mul)
TestDiv = op_tests(operator.truediv, np.divide, binary(y=nonzero()), torch_fn=operator.truediv)
TestNeg = op_tests(operator.neg, np.negative, unary(arrays(shapes())), torch_fn=operator.neg)
TestPowTensor = op_tests(operator.pow, np.power, binary(x=positives(0.5, 2.0), y=reals(-2.0, 2.0)),
                         torch_fn=operator.pow)


def _pow_scalar(x, exponent):
    return x**exponent


def _rpow_scalar(x, base):
    return base**x


# any exponent on positive bases; integer exponents on bases of either sign (away from 0)
TestPowScalar = op_tests(_pow_scalar, lambda x, exponent: np.power(x, exponent),
                         unary(arrays(shapes(), positives(0.5, 2.0)),
                               exponent=st.sampled_from([2, 3, 1, -1, 0.5, 1.5, -2.5])),
                         torch_fn=_pow_scalar)
TestPowScalarIntegerExponent = op_tests(_pow_scalar, lambda x, exponent: np.power(x, float(exponent)),
                                        unary(arrays(shapes(), nonzero()), exponent=st.sampled_from([2, 3, -1, -2])),
                                        torch_fn=_pow_scalar)
TestRpowScalar = op_tests(_rpow_scalar, lambda x, base: np.power(base, x),
                          unary(arrays(shapes()), base=st.sampled_from([2, 0.5, 3.0])), torch_fn=_rpow_scalar)

# ---- unary math ----------------------------------------------------------------------------------------------------

_x = arrays(shapes())
TestExp = op_tests(ta.exp, np.exp, unary(_x), torch_fn=_torch("exp"))
TestLog = op_tests(ta.log, np.log, unary(arrays(shapes(), positives())), torch_fn=_torch("log"))
TestSqrt = op_tests(ta.sqrt, np.sqrt, unary(arrays(shapes(), positives())), torch_fn=_torch("sqrt"))
TestAbs = op_tests(ta.abs, np.abs, unary(arrays(shapes(), away_from(0.0))), torch_fn=_torch("abs"))
TestSin = op_tests(ta.sin, np.sin, unary(_x), torch_fn=_torch("sin"))
TestCos = op_tests(ta.cos, np.cos, unary(_x), torch_fn=_torch("cos"))
TestTanh = op_tests(ta.tanh, np.tanh, unary(_x), torch_fn=_torch("tanh"))
TestSigmoid = op_tests(ta.sigmoid, lambda x: 1 / (1 + np.exp(-x)), unary(_x), torch_fn=_torch("sigmoid"))
TestRelu = op_tests(ta.relu, lambda x: np.maximum(x, 0), unary(arrays(shapes(), away_from(0.0))),
                    torch_fn=_torch("relu"))
TestErf = op_tests(ta.erf, _erf, unary(_x), torch_fn=_torch("erf"), tol64=(1e-13, 1e-15))


def _torch_gelu(x, approximate):
    import torch.nn.functional as F

    return F.gelu(x, approximate=approximate)


TestGelu = op_tests(ta.gelu, _gelu_ref, unary(_x, approximate=st.sampled_from(["none", "tanh"])),
                    torch_fn=_torch_gelu)

# ---- maximum, minimum, where, clamp -------------------------------------------------------------------------------

# x on even tenths, y on odd tenths: never tied, never closer than 0.1 (ties have their own tests below)
_untied = binary(x=grid(0.2, -10, 10), y=grid(0.2, -10, 10, offset=0.1))
TestMaximum = op_tests(ta.maximum, np.maximum, _untied, torch_fn=_torch("maximum"))
TestMinimum = op_tests(ta.minimum, np.minimum, _untied, torch_fn=_torch("minimum"))


@st.composite
def _where_inputs(draw: st.DrawFn) -> Case:
    sc, sx, sy = draw(broadcastable_shapes(3))
    return case(draw(masks(sc)), draw(arrays(sx)), draw(arrays(sy)))


TestWhere = op_tests(ta.where, np.where, _where_inputs(), torch_fn=_torch("where"))


@st.composite
def _clamp_inputs(draw: st.DrawFn) -> Case:
    lo = draw(st.none() | reals(-1.5, 0.0))
    hi = draw((st.none() if lo is not None else st.nothing()) | reals(0.5, 1.5))
    bounds = [b for b in (lo, hi) if b is not None]
    return case(draw(arrays(shapes(), away_from(*bounds, gap=1e-2, lo=-2.5, hi=2.5))), min=lo, max=hi)


TestClamp = op_tests(ta.clamp, lambda x, min, max: np.clip(x, min, max), _clamp_inputs(), torch_fn=_torch("clamp"))


def _clamp_tensors(x, lo, hi):
    return ta.clamp(x, lo, hi)


def _clamp_tensors_torch(x, lo, hi):
    import torch

    return torch.minimum(torch.maximum(x, lo), hi)  # torch.clamp's backward fails when lo/hi broadcast x


@st.composite
def _clamp_tensor_inputs(draw: st.DrawFn) -> Case:
    sx, slo, shi = draw(broadcastable_shapes(3))
    return case(draw(arrays(sx, grid(0.2, -10, 10))), draw(arrays(slo, grid(0.2, -10, -1, offset=0.1))),
                draw(arrays(shi, grid(0.2, 0, 10, offset=0.1))))


TestClampTensorBounds = op_tests(_clamp_tensors, lambda x, lo, hi: np.minimum(np.maximum(x, lo), hi),
                                 _clamp_tensor_inputs(), torch_fn=_clamp_tensors_torch)


# ---- Tensor methods built on these ops ---------------------------------------------------------------------------

def _methods(x):
    return x.rsqrt(), x.square(), x.reciprocal(), x.add(x, alpha=2), x.sub(1.5, alpha=2), x.mul(3), x.div(4)


TestTensorMethods = op_tests(_methods, lambda x: (x**-0.5, x * x, 1 / x, 3 * x, x - 3, 3 * x, x / 4),
                             nary(arrays(shapes(), positives())), torch_fn=_methods)


def test_masked_fill_and_where_with_scalars():
    x = ta.tensor([[1.0, -2.0], [3.0, -4.0]], requires_grad=True)
    mask = x < 0
    y = ta.where(mask, 0.0, x) + x.masked_fill(~mask, 7.0)
    np.testing.assert_array_equal(y.numpy(), [[1.0 + 7.0, 0.0 - 2.0], [3.0 + 7.0, 0.0 - 4.0]])
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[1.0, 1.0], [1.0, 1.0]])


# ---- ties: the gradient is split evenly ---------------------------------------------------------------------------

@pytest.mark.parametrize("op", [ta.maximum, ta.minimum])
def test_maximum_minimum_ties_split_the_gradient(device, op):
    x = ta.tensor([1.0, 2.0, 3.0], device=device, requires_grad=True)
    y = ta.tensor([1.0, 5.0, 0.0], device=device, requires_grad=True)
    op(x, y).backward(ta.tensor([10.0, 10.0, 10.0], device=device))
    bigger_x = op is ta.maximum
    np.testing.assert_array_equal(x.grad.numpy(), [5.0, 0.0 if bigger_x else 10.0, 10.0 if bigger_x else 0.0])
    np.testing.assert_array_equal(y.grad.numpy(), [5.0, 10.0 if bigger_x else 0.0, 0.0 if bigger_x else 10.0])


@settings(max_examples=examples(0.5))
@given(st.data())
def test_maximum_ties_match_central_differences(data):
    # at a tie, the central difference of max(x, y) in x is exactly 1/2: the even split is the symmetric derivative
    shape = data.draw(shapes())
    x = data.draw(arrays(shape, grid(0.5, -4, 4)))
    y = data.draw(arrays(shape, grid(0.5, -4, 4)))
    ta.gradcheck(ta.maximum, [ta.tensor(x, requires_grad=True), ta.tensor(y, requires_grad=True)])
    ta.gradcheck(ta.minimum, [ta.tensor(x, requires_grad=True), ta.tensor(y, requires_grad=True)])


def test_pow_zero_exponent_has_zero_gradient_even_at_zero(device):
    # (not in TestPowScalar: gradgradcheck refuses a first derivative that is a constant)
    x = ta.tensor([0.0, 2.0, -1.5], dtype=ta.float64, device=device, requires_grad=True)
    y = x**0
    np.testing.assert_array_equal(y.numpy(), [1.0, 1.0, 1.0])
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0, 0.0])


def test_abs_and_relu_gradient_at_zero_is_zero():
    x = ta.tensor([0.0, 0.0], requires_grad=True)
    (x.abs() + x.relu()).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0])


def test_clamp_gradient_passes_at_the_bounds():
    x = ta.tensor([-1.0, 0.0, 1.0, 2.0], requires_grad=True)
    x.clamp(0.0, 1.0).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 1.0, 1.0, 0.0])  # as PyTorch: 1 on the bounds


# ---- cast -----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("src, dst", [(ta.float32, ta.float64), (ta.float64, ta.float32), (ta.float32, ta.float16)])
def test_cast_forward_and_gradient_dtype(device, src, dst):
    data = np.array([[0.5, -1.25], [2.0, 3.5]])
    x = ta.tensor(data, dtype=src, device=device, requires_grad=True)
    y = x.to(dst)
    assert y.dtype == dst and y.device == device
    np.testing.assert_array_equal(y.numpy(), data.astype(dst))
    (y * ta.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=dst, device=device)).sum().backward()
    assert x.grad.dtype == src  # the gradient is converted back
    np.testing.assert_array_equal(x.grad.numpy(), [[1.0, 2.0], [3.0, 4.0]])


def test_cast_second_derivative():
    x = ta.tensor([0.5, -1.5, 2.0], dtype=ta.float64, requires_grad=True)
    # float32 rounding in the middle: a wide step keeps the finite differences above the rounding noise
    ta.gradgradcheck(lambda t: (t.to(ta.float32) ** 3).to(ta.float64), [x], eps=1e-2, atol=1e-3, rtol=1e-3)


def test_cast_to_int_has_no_gradient():
    x = ta.tensor([1.5, -2.5], requires_grad=True)
    y = x.long()
    assert y.dtype == ta.int64 and not y.requires_grad
    np.testing.assert_array_equal(y.numpy(), [1, -2])


def test_cast_to_same_dtype_is_identity():
    x = ta.tensor([1.0])
    assert x.to(ta.float32) is x and x.float() is x


# ---- Python scalars never upcast float32 -----------------------------------------------------------------------------

SCALAR_EXPRESSIONS = {
    "x*0.5": lambda x: x * 0.5,
    "0.5*x": lambda x: 0.5 * x,
    "x/3": lambda x: x / 3,
    "3/x": lambda x: 3 / x,
    "x+1": lambda x: x + 1,
    "1.5-x": lambda x: 1.5 - x,
    "x-2.0": lambda x: x - 2.0,
    "2**x": lambda x: 2**x,
    "0.5**x": lambda x: 0.5**x,
    "x**2": lambda x: x**2,
    "x**0.5": lambda x: x**0.5,
    "x**-1.5": lambda x: x**-1.5,
    "x.pow(2.5)": lambda x: x.pow(2.5),
    "maximum(x, 0.5)": lambda x: ta.maximum(x, 0.5),
    "minimum(x, 1)": lambda x: ta.minimum(x, 1),
    "where(x>1, x, 0.0)": lambda x: ta.where(x > 1, x, 0.0),
    "masked_fill(x>1, 2.5)": lambda x: x.masked_fill(x > 1, 2.5),
    "clamp(0.1, 2.0)": lambda x: x.clamp(0.1, 2.0),
    "sigmoid": lambda x: x.sigmoid(),
    "gelu": lambda x: ta.gelu(x),
    "gelu tanh": lambda x: ta.gelu(x, approximate="tanh"),
    "erf": lambda x: ta.erf(x),
}


@pytest.mark.parametrize("dtype", [ta.float32, ta.float16], ids=["float32", "float16"])
@pytest.mark.parametrize("expr", list(SCALAR_EXPRESSIONS))
def test_python_scalars_keep_the_dtype(device, dtype, expr):
    x = ta.tensor([0.5, 1.0, 2.0], dtype=dtype, device=device, requires_grad=True)
    y = SCALAR_EXPRESSIONS[expr](x)
    assert y.dtype == dtype, f"{expr} gave {y.dtype}"
    y.sum().backward()
    assert x.grad.dtype == dtype, f"the gradient of {expr} is {x.grad.dtype}"


def test_python_float_with_integer_tensor_gives_the_default_float():
    x = ta.tensor([1, 2, 3])
    assert (x * 0.5).dtype == ta.float32
    assert (x / 2).dtype == ta.float32
    assert (x**0.5).dtype == ta.float32
    assert (2.5**x).dtype == ta.float32
    assert ta.where(x > 1, x, 0.5).dtype == ta.float32
    assert (x + 1).dtype == ta.int64
    assert (x * ta.tensor([0.5], dtype=ta.float64)).dtype == ta.float64  # an int tensor takes the float's dtype
    np.testing.assert_allclose((x**0.5).numpy(), np.sqrt([1, 2, 3]), rtol=1e-6)


@pytest.mark.parametrize("fn", [ta.exp, ta.log, ta.sqrt, ta.sin, ta.cos, ta.tanh, ta.sigmoid, ta.erf, ta.gelu])
def test_float_math_on_integers_gives_the_default_float(fn):
    x = ta.tensor([1, 2, 3])
    y = fn(x)
    assert y.dtype == ta.float32
    np.testing.assert_allclose(y.numpy(), fn(ta.tensor([1.0, 2.0, 3.0])).numpy())


def test_integer_math_stays_integer():
    x = ta.tensor([-1, 2, 3])
    for y in (x.abs(), x.relu(), -x, x.clamp(0, 2), x * 2, x**2, ta.maximum(x, 0)):
        assert y.dtype == ta.int64


# ---- gradient algebra ----------------------------------------------------------------------------------------------

UNARY_OPS = [ta.exp, ta.sin, ta.tanh, ta.sigmoid, ta.erf, lambda t: t * t, lambda t: ta.gelu(t, approximate="tanh")]


@settings(max_examples=examples(0.5))
@given(x=arrays(shapes()), a=reals(-2, 2), b=reals(-2, 2), fg=st.permutations(UNARY_OPS).map(lambda p: p[:2]))
def test_gradient_is_linear(x, a, b, fg):
    f, g = fg
    t = ta.tensor(x, requires_grad=True)
    (combined,) = ta.grad((f(t) * a + g(t) * b).sum(), t)
    (df,) = ta.grad(f(t).sum(), t)
    (dg,) = ta.grad(g(t).sum(), t)
    np.testing.assert_allclose(combined.numpy(), a * df.numpy() + b * dg.numpy(), rtol=1e-10, atol=1e-12)


@settings(max_examples=examples(0.5))
@given(shape=shapes())
def test_gradient_of_sum_of_product_is_the_other_factor(shape):
    rng = np.random.default_rng(0)
    x = ta.tensor(rng.standard_normal(shape), requires_grad=True)
    y = ta.tensor(rng.standard_normal(shape), requires_grad=True)
    (x * y).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), y.numpy())
    np.testing.assert_array_equal(y.grad.numpy(), x.numpy())


@settings(max_examples=examples(0.5))
@given(shapes_=broadcastable_shapes(2))
def test_broadcast_gradient_is_summed_back(shapes_):
    sx, sy = shapes_
    x = ta.ones(sx, dtype=ta.float64, requires_grad=True)
    y = ta.ones(sy, dtype=ta.float64, requires_grad=True)
    (x + y).sum().backward()
    out = np.broadcast_shapes(sx, sy)
    # each element of x was copied (size of the broadcast result / size of x) times
    np.testing.assert_array_equal(x.grad.numpy(), np.full(sx, math.prod(out) / math.prod(sx)))
    np.testing.assert_array_equal(y.grad.numpy(), np.full(sy, math.prod(out) / math.prod(sy)))


# ---- errors ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [lambda: ta.tensor([1, 2], requires_grad=True),
                                  lambda: ta.zeros(2, dtype=ta.int64, requires_grad=True),
                                  lambda: ta.tensor([True], requires_grad=True),
                                  lambda: ta.tensor([1, 2]).requires_grad_()])
def test_integer_tensors_cannot_require_grad(make):
    with pytest.raises(RuntimeError, match="floating"):
        make()


@pytest.mark.parametrize("name, fn", [("add", operator.add), ("sub", operator.sub), ("mul", operator.mul),
                                      ("div", operator.truediv), ("pow", operator.pow),
                                      ("maximum", ta.maximum), ("minimum", ta.minimum)])
def test_shape_mismatch_names_the_op_and_both_shapes(name, fn):
    with pytest.raises(ValueError, match=rf"{name}.*\(2, 3\).*\(4,\)"):
        fn(ta.ones(2, 3), ta.ones(4))


def test_where_shape_mismatch_and_non_boolean_condition():
    with pytest.raises(ValueError, match=r"where.*\(2,\).*\(3,\)"):
        ta.where(ta.tensor([True, False]), ta.ones(3), ta.ones(3))
    with pytest.raises(TypeError, match="where.*bool"):
        ta.where(ta.tensor([1, 0]), ta.ones(2), ta.zeros(2))


def test_bad_options():
    with pytest.raises(ValueError, match="gelu"):
        ta.gelu(ta.ones(2), approximate="fast")
    with pytest.raises(ValueError, match="clamp"):
        ta.clamp(ta.ones(2))
