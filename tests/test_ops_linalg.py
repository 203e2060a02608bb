"""Matrix multiplication (tinygrad_attn/ops/linalg.py): 1-D, 2-D and batched operands with broadcast batch dims,
against NumPy and PyTorch, first and second derivatives (tests/op_checks.py builds those); then errors."""

from __future__ import annotations

import math
import operator

import numpy as np
import pytest
from hypothesis import strategies as st

import tinygrad_attn as ta
from tests.op_checks import Case, case, op_tests
from tests.strategies import EMPTY_ODDS, GRAD_ELEMS, arrays, broadcastable_shapes


@st.composite
def matmul_operands(draw: st.DrawFn) -> Case:
    """x @ y with x a vector (k,) or a (batch of) (n, k) matrices, y a vector (k,) or (batch of) (k, m); the two
    batch shapes broadcast together. Now and then one of n, k, m or a batch dim is 0 (k = 0: a sum of nothing, 0)."""
    sizes = [draw(st.integers(1, 3)) for _ in range(3)]
    if draw(st.integers(0, EMPTY_ODDS - 1)) == EMPTY_ODDS - 1:
        sizes[draw(st.integers(0, 2))] = 0
    n, k, m = sizes
    bx, by = draw(broadcastable_shapes(2, max_dims=2, max_side=2))
    sx = (k,) if draw(st.booleans()) else bx + (n, k)
    sy = (k,) if draw(st.booleans()) else by + (k, m)
    if math.prod(sx) > GRAD_ELEMS or math.prod(sy) > GRAD_ELEMS:
        sx, sy = sx[-2:], sy[-2:]
    return case(draw(arrays(sx)), draw(arrays(sy)))


TestMatmulOperator = op_tests(operator.matmul, np.matmul, matmul_operands(), torch_fn=operator.matmul)
TestMatmulFunction = op_tests(ta.matmul, np.matmul, matmul_operands(), torch_fn=lambda x, y: x.matmul(y))


@pytest.mark.parametrize("sx, sy", [((3,), (3,)), ((3,), (2, 3, 4)), ((2, 1, 2, 3), (3,)), ((5, 1, 2, 3), (4, 3, 2))])
def test_matmul_shapes_and_gradient_shapes(device, sx, sy):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(sx).astype(np.float32), rng.standard_normal(sy).astype(np.float32)
    x = ta.tensor(a, device=device, requires_grad=True)
    y = ta.tensor(b, device=device, requires_grad=True)
    z = x @ y
    assert z.shape == np.matmul(a, b).shape and z.dtype == ta.float32
    z.sum().backward()
    assert x.grad.shape == sx and y.grad.shape == sy
    assert x.grad.dtype == ta.float32 and y.grad.dtype == ta.float32


def test_rmatmul_with_an_array():
    y = ta.tensor([[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_array_equal((np.array([[1.0, 0.0]], dtype=np.float32) @ y).numpy(), [[1.0, 2.0]])


@pytest.mark.parametrize("x, y, pattern", [
    (ta.ones(2, 3), ta.ones(2, 3), r"matmul.*\(2, 3\).*\(2, 3\)"),
    (ta.ones(3), ta.ones(4), r"matmul.*\(3,\).*\(4,\)"),
    (ta.ones(()), ta.ones(3), r"matmul.*\(\).*\(3,\)"),
    (ta.ones(2, 2, 3), ta.ones(3, 3, 2), r"matmul \(batch dims\).*\(2,\).*\(3,\)"),
])
def test_matmul_shape_errors_name_the_op_and_shapes(x, y, pattern):
    with pytest.raises(ValueError, match=pattern):
        x @ y


def test_matmul_dtype_mismatch_and_non_tensor():
    with pytest.raises(TypeError, match="matmul.*float32.*float64"):
        ta.ones(2, 2) @ ta.ones(2, 2, dtype=ta.float64)
    with pytest.raises(TypeError, match="matmul"):
        ta.matmul(ta.ones(2, 2), [[1.0, 0.0], [0.0, 1.0]])
