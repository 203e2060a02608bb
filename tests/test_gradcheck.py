"""gradcheck / gradgradcheck (tinygrad_attn/gradcheck.py) themselves: they pass correct derivatives at the default
tolerances, and fail a derivative that is off by a little, or nan where the finite differences are not."""

from __future__ import annotations

import numpy as np
import pytest

import tinygrad_attn as ta
from tinygrad_attn.autograd import Function
from tinygrad_attn.gradcheck import GradcheckError


class Cube(Function):
    """z = x^3, with dz/dx = 3 x^2 scaled by ``error`` (1: correct), written in Tensor ops (differentiable)."""

    def forward(self, x, error):
        self.error = error
        self.save_for_backward(x)
        return x**3

    def backward(self, g):
        (x,) = self.saved_tensors
        return g * x * x * (3 * self.error)


def _x() -> ta.Tensor:
    return ta.tensor(np.linspace(-2.0, 2.5, 12).reshape(3, 4), dtype=ta.float64, requires_grad=True)


def test_correct_first_and_second_derivatives_pass():
    assert ta.gradcheck(lambda x: Cube.apply(x, error=1.0), [_x()])
    assert ta.gradgradcheck(lambda x: Cube.apply(x, error=1.0), [_x()])


@pytest.mark.parametrize("error", [1 + 5e-4, 1 - 1e-5])
def test_a_gradient_off_by_a_little_fails(error):
    with pytest.raises(GradcheckError, match=r"gradient of input 0 \(shape \(3, 4\)\) disagrees"):
        ta.gradcheck(lambda x: Cube.apply(x, error=error), [_x()])
    assert not ta.gradcheck(lambda x: Cube.apply(x, error=error), [_x()], raise_exception=False)


def test_a_second_derivative_off_by_a_little_fails():
    class CubeWithBadSecondDerivative(Function):
        def forward(self, x):
            self.save_for_backward(x)
            return x**3

        def backward(self, g):
            (x,) = self.saved_tensors
            return g * x * x * 3 + (x - x.detach()) * 1e-4  # the right value, a derivative off by 1e-4

    assert ta.gradcheck(lambda x: CubeWithBadSecondDerivative.apply(x), [_x()])
    with pytest.raises(GradcheckError):
        ta.gradgradcheck(lambda x: CubeWithBadSecondDerivative.apply(x), [_x()])


def test_nan_on_one_side_only_fails():
    class NanGradient(Function):
        def forward(self, x):
            return x * 2

        def backward(self, g):
            return g * float("nan")

    with pytest.raises(GradcheckError, match="analytic nan"):
        ta.gradcheck(lambda x: NanGradient.apply(x), [_x()])


def test_large_outputs_that_do_not_move_add_no_rounding_error():
    # the first output is 1e8 times the first element; the gradient of the second element, 2 x_1 v_1, is checked
    # to 1e-6 while v . f is about 1e8: differencing v . f would lose ~1e-8 * 1e8 / eps of it to rounding
    def fn(x):
        return ta.stack([x[0] * 1e8, x[1] * x[1]])

    x = ta.tensor([1.2345, 0.75], dtype=ta.float64, requires_grad=True)
    assert ta.gradcheck(fn, [x])
