"""The autograd engine: accumulation, retain_graph, deep graphs, grad modes, ``ta.grad``, higher-order
gradients, hooks, retain_grad, and the errors users get when they misuse ``backward``.

Expected values come from hand-derived formulas, NumPy, or finite differences, never from the engine itself.
"""

import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_attn as ta
from tinygrad_attn.autograd import Function

floats = st.floats(-3, 3, allow_nan=False, width=64)
vectors = hnp.arrays(np.float64, st.integers(1, 6), elements=floats)


def leaf(values, dtype=ta.float64):
    return ta.tensor(np.asarray(values, dtype=np.float64), dtype=dtype, requires_grad=True)


# ---------------------------------------------------------------------------------------------------------
# Accumulation, retain_graph, graph shapes
# ---------------------------------------------------------------------------------------------------------


@given(vectors)
def test_gradients_accumulate_into_leaves_across_backward_calls(values):
    x = leaf(values)
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * values)
    (x * x * x).sum().backward()  # a second, different graph: its gradient is added
    np.testing.assert_allclose(x.grad.numpy(), 2 * values + 3 * values**2, rtol=1e-12)


def test_second_backward_through_freed_graph_raises_clear_error():
    x = leaf([1.0, 2.0])
    y = (x.exp() * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time.*retain_graph=True"):
        y.backward()


def test_second_backward_raises_even_for_ops_that_save_nothing():
    x = leaf([1.0, 2.0])
    y = (x + 1).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.backward()


def test_retain_graph_allows_second_backward_and_doubles_gradients():
    values = np.array([0.5, -1.0, 2.0])
    x = leaf(values)
    y = (x.sin() * x).sum()
    y.backward(retain_graph=True)
    once = x.grad.numpy().copy()
    np.testing.assert_allclose(once, np.cos(values) * values + np.sin(values))
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * once)


def _stack_depth() -> int:
    frame, depth = sys._getframe(), 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1
    return depth


def test_backward_through_100k_op_chain_does_not_recurse():
    x = leaf([1.0, -2.0], dtype=ta.float32)
    z = x
    for _ in range(100_000):
        z = -z
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(_stack_depth() + 60)  # far fewer frames than the graph has nodes
    try:
        z.sum().backward()
    finally:
        sys.setrecursionlimit(old)
    np.testing.assert_array_equal(x.grad.numpy(), [1.0, 1.0])  # an even number of negations


def test_dropping_a_100k_op_graph_without_backward_is_fine():
    x = leaf([1.0], dtype=ta.float32)
    z = x
    for _ in range(100_000):
        z = -z
    del z  # deallocating the chain must not overflow the C stack
    assert x.grad is None


@given(vectors)
def test_diamond_graph_sums_contributions(values):
    x = leaf(values)
    a = x * 2  # a feeds three ops
    y = (a.sin() * a.cos() + a * a).sum()
    y.backward()
    a_np = 2 * values
    dy_da = np.cos(a_np) ** 2 - np.sin(a_np) ** 2 + 2 * a_np
    np.testing.assert_allclose(x.grad.numpy(), 2 * dy_da, rtol=1e-10, atol=1e-12)


def test_wide_fan_out_sums_all_contributions():
    x = leaf([1.0, 2.0])
    y = sum((x * float(i) for i in range(1, 51)), start=ta.zeros(2, dtype=ta.float64))
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1275.0, 1275.0])  # 1 + 2 + ... + 50


def test_same_tensor_as_both_operands():
    x = leaf([3.0, -1.0])
    (x * x + x / x).sum().backward()  # d/dx (x^2 + x/x) = 2x + (1/x - x/x^2) = 2x
    np.testing.assert_allclose(x.grad.numpy(), [6.0, -2.0])


def test_backward_on_several_outputs_sums_them():
    x = leaf([1.0, 2.0])
    y1, y2 = (x * x).sum(), (x * 3).sum()
    ta.backward([y1, y2])
    np.testing.assert_allclose(x.grad.numpy(), [5.0, 7.0])
    x.grad = None
    z1, z2 = x * x, x * 3
    ta.backward([z1, z2], [ta.tensor([1.0, 0.0], dtype=ta.float64), ta.tensor([0.0, 2.0], dtype=ta.float64)])
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 6.0])


def test_branch_without_gradient_is_skipped():
    x = leaf([1.0, 2.0])
    c = ta.tensor([5.0, 6.0], dtype=ta.float64)  # a constant: no gradient goes to it
    y = (x * c + c.exp()).sum()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [5.0, 6.0])
    assert c.grad is None


def test_leaf_output_backward():
    x = leaf([1.0, 2.0])
    x.backward(ta.tensor([3.0, 4.0], dtype=ta.float64))
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 4.0])


# ---------------------------------------------------------------------------------------------------------
# Grad modes
# ---------------------------------------------------------------------------------------------------------


def test_no_grad_context_manager():
    x = leaf([1.0, 2.0])
    assert ta.is_grad_enabled()
    with ta.no_grad():
        assert not ta.is_grad_enabled()
        y = x * 2
        z = (y + x).exp()
    assert ta.is_grad_enabled()
    for t in (y, z):
        assert t.grad_fn is None and not t.requires_grad and t.is_leaf
    with pytest.raises(RuntimeError, match="does not require grad"):
        z.sum().backward()


def test_no_grad_and_enable_grad_as_decorators_and_nested():
    x = leaf([1.0, 2.0])

    @ta.no_grad()
    def frozen(t):
        return t * 2

    @ta.enable_grad()
    def tracked(t):
        return t * 2

    assert frozen(x).grad_fn is None
    with ta.no_grad():
        inner = tracked(x)
        assert not ta.is_grad_enabled()  # the decorator restored the mode on exit
        with ta.enable_grad():
            inner2 = x * 3
    assert inner.grad_fn is not None and inner2.grad_fn is not None
    (inner + inner2).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [5.0, 5.0])
    assert frozen.__name__ == "frozen"  # functools.wraps


def test_grad_mode_restored_after_exception():
    with pytest.raises(ValueError):
        with ta.no_grad():
            raise ValueError("boom")
    assert ta.is_grad_enabled()
    with ta.set_grad_enabled(False):
        assert not ta.is_grad_enabled()
    assert ta.is_grad_enabled()


def test_results_of_ops_without_grad_inputs_have_no_grad_fn():
    a = ta.tensor([1.0, 2.0])
    assert (a * 2).grad_fn is None and not (a * 2).requires_grad
    x = leaf([1.0, 2.0])
    assert (x > 1).grad_fn is None and not (x > 1).requires_grad  # comparisons carry no gradient
    assert x.argmax().grad_fn is None


# ---------------------------------------------------------------------------------------------------------
# ta.grad
# ---------------------------------------------------------------------------------------------------------


def test_grad_returns_gradients_without_touching_dot_grad():
    x, w = leaf([1.0, 2.0]), leaf([3.0, -1.0])
    w.grad = ta.tensor([100.0, 100.0], dtype=ta.float64)
    y = (x * w).sum()
    gx, gw = ta.grad(y, [x, w])
    np.testing.assert_allclose(gx.numpy(), [3.0, -1.0])
    np.testing.assert_allclose(gw.numpy(), [1.0, 2.0])
    assert x.grad is None
    np.testing.assert_allclose(w.grad.numpy(), [100.0, 100.0])


def test_grad_single_tensor_input_returns_tuple():
    x = leaf([2.0])
    result = ta.grad((x * x).sum(), x)
    assert isinstance(result, tuple) and len(result) == 1
    np.testing.assert_allclose(result[0].numpy(), [4.0])


def test_grad_with_respect_to_non_leaf_and_graph_below_it_untouched():
    x = leaf([1.0, 2.0])
    h = x.exp()  # not a leaf
    y = (h * h).sum()
    (gh,) = ta.grad(y, h)
    np.testing.assert_allclose(gh.numpy(), 2 * np.exp([1.0, 2.0]))
    assert x.grad is None and h.grad is None
    # the part of the graph below h was not needed, so it was not run (or freed): h is still usable
    (h * 3).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 3 * np.exp([1.0, 2.0]))


def test_grad_non_leaf_and_leaf_together():
    x = leaf([1.0, 2.0])
    h = x * 3
    y = (h * x).sum()  # = 3 x^2
    gx, gh = ta.grad(y, [x, h])
    np.testing.assert_allclose(gx.numpy(), 6 * np.array([1.0, 2.0]))  # total derivative through h too
    np.testing.assert_allclose(gh.numpy(), [1.0, 2.0])


def test_grad_allow_unused():
    x, unused = leaf([1.0, 2.0]), leaf([5.0])
    y = (x * x).sum()
    with pytest.raises(RuntimeError, match="allow_unused=True"):
        ta.grad(y, [x, unused], retain_graph=True)
    gx, gu = ta.grad(y, [x, unused], allow_unused=True)
    assert gu is None
    np.testing.assert_allclose(gx.numpy(), [2.0, 4.0])


def test_grad_retain_graph_defaults_to_create_graph():
    x = leaf([1.0, 2.0])
    y = (x.exp()).sum()
    ta.grad(y, x)
    with pytest.raises(RuntimeError, match="second time"):
        ta.grad(y, x)
    y = (x.exp()).sum()
    ta.grad(y, x, retain_graph=True)
    (g,) = ta.grad(y, x)
    np.testing.assert_allclose(g.numpy(), np.exp([1.0, 2.0]))


def test_grad_with_grad_outputs_for_non_scalar_output():
    x = leaf([1.0, 2.0, 3.0])
    y = x * x
    (g,) = ta.grad(y, x, grad_outputs=ta.tensor([1.0, 0.0, -1.0], dtype=ta.float64))
    np.testing.assert_allclose(g.numpy(), [2.0, 0.0, -6.0])
    with pytest.raises(RuntimeError, match=r"scalar.*\(3,\)"):
        ta.grad(x * x, x)


def test_grad_input_that_does_not_require_grad_raises():
    x, c = leaf([1.0]), ta.tensor([2.0])
    with pytest.raises(RuntimeError, match="does not require grad"):
        ta.grad((x * 2).sum(), [x, c])


def test_grad_repeated_input():
    x = leaf([1.0, 2.0])
    g1, g2 = ta.grad((x * x).sum(), [x, x])
    np.testing.assert_allclose(g1.numpy(), [2.0, 4.0])
    np.testing.assert_allclose(g2.numpy(), [2.0, 4.0])


# ---------------------------------------------------------------------------------------------------------
# Higher-order gradients, against finite differences of the first derivative
# ---------------------------------------------------------------------------------------------------------


def _first_derivative(f, values):
    """d f / d x at ``values``, with a fresh graph and no create_graph (the thing being differentiated)."""
    x = ta.tensor(values, dtype=ta.float64, requires_grad=True)
    f(x).backward()
    return x.grad.numpy()


def _fd_hvp(f, values, v, eps=1e-6):
    return (_first_derivative(f, values + eps * v) - _first_derivative(f, values - eps * v)) / (2 * eps)


CHAINS = {
    "cube": lambda x: (x**3).sum(),
    "sin_chain": lambda x: (x * x).sin().sin().sum(),
    "tanh_chain": lambda x: ((x * 2).tanh() * x).tanh().sum(),
    "mixed": lambda x: ((x**3).sin().tanh() * x.exp()).sum() + ((x * x).sum() + 1).sqrt(),
    "sigmoid_log": lambda x: (x.sigmoid() + 1).log().sum() * x.sum(),
}


@pytest.mark.parametrize("name", sorted(CHAINS))
@given(data=st.data())
def test_hessian_vector_product_matches_finite_differences(name, data):
    f = CHAINS[name]
    n = data.draw(st.integers(1, 5))
    values = data.draw(hnp.arrays(np.float64, n, elements=st.floats(-1.5, 1.5, width=64)))
    v = data.draw(hnp.arrays(np.float64, n, elements=st.floats(-1, 1, width=64)))
    x = ta.tensor(values, dtype=ta.float64, requires_grad=True)
    (g,) = ta.grad(f(x), x, create_graph=True)
    assert g.grad_fn is not None
    np.testing.assert_allclose(g.numpy(), _first_derivative(f, values), rtol=1e-10, atol=1e-12)
    (hv,) = ta.grad((g * ta.tensor(v, dtype=ta.float64)).sum(), x)
    np.testing.assert_allclose(hv.numpy(), _fd_hvp(f, values, v), rtol=1e-5, atol=1e-6)


def test_backward_create_graph_then_backward_of_grad():
    f = CHAINS["tanh_chain"]
    values, v = np.array([0.3, -0.8, 1.1]), np.array([1.0, -0.5, 2.0])
    x = ta.tensor(values, dtype=ta.float64, requires_grad=True)
    f(x).backward(create_graph=True)
    g = x.grad
    assert g.grad_fn is not None  # the gradient is itself part of a graph
    x.grad = None
    (g * ta.tensor(v, dtype=ta.float64)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), _fd_hvp(f, values, v), rtol=1e-5, atol=1e-6)


def _mlp(w1, b1, w2, x):
    return ((x @ w1 + b1).tanh() @ w2).sigmoid().sum()


def test_mlp_hessian_vector_product_in_all_parameters():
    rng = np.random.default_rng(0)
    shapes = [(3, 4), (4,), (4, 2)]
    params = [rng.normal(size=s) for s in shapes]
    vs = [rng.normal(size=s) for s in shapes]
    x = ta.tensor(rng.normal(size=(5, 3)))

    def grads_at(arrays):
        ps = [ta.tensor(a, requires_grad=True) for a in arrays]
        _mlp(*ps, x).backward()
        return [p.grad.numpy() for p in ps]

    ps = [ta.tensor(a, requires_grad=True) for a in params]
    gs = ta.grad(_mlp(*ps, x), ps, create_graph=True)
    dot = sum((g * ta.tensor(v)).sum() for g, v in zip(gs, vs))
    hvs = ta.grad(dot, ps)
    eps = 1e-6
    plus = grads_at([p + eps * v for p, v in zip(params, vs)])
    minus = grads_at([p - eps * v for p, v in zip(params, vs)])
    for hv, a, b in zip(hvs, plus, minus):
        np.testing.assert_allclose(hv.numpy(), (a - b) / (2 * eps), rtol=1e-5, atol=1e-7)


def test_third_derivative_of_cube_is_six():
    x = leaf([0.5, -2.0, 3.0])
    (g,) = ta.grad((x**3).sum(), x, create_graph=True)
    (h,) = ta.grad(g.sum(), x, create_graph=True)
    (t,) = ta.grad(h.sum(), x)
    np.testing.assert_allclose(g.numpy(), 3 * np.array([0.5, -2.0, 3.0]) ** 2)
    np.testing.assert_allclose(h.numpy(), 6 * np.array([0.5, -2.0, 3.0]))
    np.testing.assert_allclose(t.numpy(), [6.0, 6.0, 6.0])


def test_gradient_penalty_style_double_backward_accumulates_into_leaves():
    w = leaf([1.0, 2.0])
    x = leaf([3.0, 4.0])
    y = (w * x * x).sum()
    (gx,) = ta.grad(y, x, create_graph=True)  # 2 w x
    (gx * gx).sum().backward()  # d/dw sum(4 w^2 x^2) = 8 w x^2;  d/dx = 8 w^2 x
    np.testing.assert_allclose(w.grad.numpy(), 8 * np.array([1.0, 2.0]) * np.array([9.0, 16.0]))
    np.testing.assert_allclose(x.grad.numpy(), 8 * np.array([1.0, 4.0]) * np.array([3.0, 4.0]))


# ---------------------------------------------------------------------------------------------------------
# Hooks and retain_grad
# ---------------------------------------------------------------------------------------------------------


def test_leaf_hook_observes_the_total_gradient_once():
    x = leaf([1.0, 2.0])
    seen = []
    x.register_hook(lambda g: seen.append(g.numpy().copy()))
    (x * 2 + x * 3).sum().backward()
    assert len(seen) == 1
    np.testing.assert_allclose(seen[0], [5.0, 5.0])
    np.testing.assert_allclose(x.grad.numpy(), [5.0, 5.0])


def test_leaf_hook_can_replace_the_gradient():
    x = leaf([1.0, 2.0])
    x.register_hook(lambda g: g * 0 + 1)
    (x * 2 + x * 3).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0, 1.0])


def test_hooks_run_in_order_and_can_be_removed():
    x = leaf([1.0, 2.0])
    remove_double = x.register_hook(lambda g: g * 2)
    x.register_hook(lambda g: g + 1)
    (x * 1).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 3.0])  # (1 * 2) + 1
    remove_double()
    x.grad = None
    (x * 1).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 2.0])
    remove_double()  # removing twice is harmless


def test_non_leaf_hook_observes_and_modifies_upstream_gradient():
    x = leaf([1.0, 2.0])
    h = x * x
    seen = []
    h.register_hook(lambda g: seen.append(g.numpy().copy()))
    h.register_hook(lambda g: g * 10)
    (h * 3).sum().backward()
    np.testing.assert_allclose(seen[0], [3.0, 3.0])
    np.testing.assert_allclose(x.grad.numpy(), 10 * 3 * 2 * np.array([1.0, 2.0]))
    assert h.grad is None  # a non-leaf keeps no .grad unless asked


def test_hook_returning_wrong_shape_raises():
    x = leaf([1.0, 2.0])
    x.register_hook(lambda g: ta.ones(3, dtype=ta.float64))
    with pytest.raises(RuntimeError, match=r"hook returned shape \(3,\), expected \(2,\)"):
        (x * 1).sum().backward()


def test_register_hook_on_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        ta.tensor([1.0]).register_hook(lambda g: g)


def test_hooks_run_for_grad_too():
    x = leaf([1.0, 2.0])
    x.register_hook(lambda g: g * 2)
    (g,) = ta.grad((x * x).sum(), x)
    np.testing.assert_allclose(g.numpy(), [4.0, 8.0])
    assert x.grad is None


def test_retain_grad_keeps_non_leaf_gradient():
    x = leaf([1.0, 2.0])
    h = x * 2
    h.retain_grad()
    h.retain_grad()  # idempotent
    y = (h * h).sum()
    y.backward()
    np.testing.assert_allclose(h.grad.numpy(), 2 * np.array([2.0, 4.0]))
    np.testing.assert_allclose(x.grad.numpy(), 8 * np.array([1.0, 2.0]))
    assert h.grad.data.flags.writeable


def test_retain_grad_sees_gradient_after_hooks_and_accumulates():
    x = leaf([1.0, 2.0])
    h = x * 2
    h.retain_grad()
    h.register_hook(lambda g: g * 10)  # registered after retain_grad, still applies to h.grad (as PyTorch)
    y = h.sum()
    y.backward(retain_graph=True)
    np.testing.assert_allclose(h.grad.numpy(), [10.0, 10.0])
    y.backward()
    np.testing.assert_allclose(h.grad.numpy(), [20.0, 20.0])


def test_retain_grad_on_leaf_is_a_no_op():
    x = leaf([1.0])
    x.retain_grad()
    (x * 4).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [4.0])


def test_retain_grad_does_not_keep_the_tensor_alive():
    import weakref

    x = leaf([1.0])
    h = x * 2
    h.retain_grad()
    y = (h * 3).sum()
    ref = weakref.ref(h)
    del h
    y.backward()  # the retain hook finds its tensor gone and does nothing
    assert ref() is None
    np.testing.assert_allclose(x.grad.numpy(), [6.0])


# ---------------------------------------------------------------------------------------------------------
# Errors and the .grad arrays users get
# ---------------------------------------------------------------------------------------------------------


def test_backward_on_non_scalar_without_gradient_raises():
    x = leaf([1.0, 2.0])
    with pytest.raises(RuntimeError, match=r"only for scalar outputs.*\(2,\).*gradient="):
        (x * 2).backward()


def test_backward_with_gradient_of_wrong_shape_raises():
    x = leaf([1.0, 2.0])
    with pytest.raises(RuntimeError, match=r"gradient has shape \(3,\) but the output has shape \(2,\)"):
        (x * 2).backward(ta.ones(3, dtype=ta.float64))


def test_backward_accepts_gradient_as_array_or_list():
    x = leaf([1.0, 2.0])
    (x * 2).backward([1.0, -1.0])
    np.testing.assert_allclose(x.grad.numpy(), [2.0, -2.0])
    assert x.grad.dtype == ta.float64


def test_backward_of_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        ta.tensor([1.0, 2.0]).sum().backward()
    x = leaf([1.0, 2.0])
    with pytest.raises(RuntimeError, match="does not require grad"):
        (x > 0).sum().backward()  # integer result: no graph


@pytest.mark.parametrize("make", [
    lambda: ta.tensor([1, 2], requires_grad=True),
    lambda: ta.tensor([True], requires_grad=True),
    lambda: ta.zeros(3, dtype=ta.int64, requires_grad=True),
    lambda: ta.arange(4, requires_grad=True),
    lambda: ta.tensor([1, 2]).requires_grad_(),
    lambda: ta.ones(2, dtype=ta.int32).requires_grad_(True),
])
def test_integer_and_bool_tensors_cannot_require_grad(make):
    with pytest.raises(RuntimeError, match="floating-point.*(int|bool)"):
        make()


def test_requires_grad_false_on_integer_tensor_is_fine():
    t = ta.tensor([1, 2]).requires_grad_(False)
    assert not t.requires_grad


def test_leaf_grads_are_writable_and_not_aliased():
    x, w = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    user_gradient = ta.tensor([1.0, 1.0], dtype=ta.float64)
    (x + w).backward(user_gradient)  # Add passes the same gradient array to both inputs
    for t in (x, w):
        assert t.grad.data.flags.writeable
        assert not np.shares_memory(t.grad.data, user_gradient.data)
    assert not np.shares_memory(x.grad.data, w.grad.data)
    x.grad.data[0] = 100.0
    np.testing.assert_array_equal(w.grad.numpy(), [1.0, 1.0])
    np.testing.assert_array_equal(user_gradient.numpy(), [1.0, 1.0])


def test_leaf_grad_from_broadcast_is_writable_memory():
    x = leaf([1.0, 2.0, 3.0])
    x.sum().backward()  # Sum's backward is a broadcast view (stride 0)
    assert x.grad.data.flags.writeable and 0 not in x.grad.data.strides
    x.grad.data += 1
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0, 2.0])
    x.grad.zero_()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0, 0.0])


def test_leaf_grad_has_leaf_dtype_and_shape():
    x = ta.tensor([[1.0, 2.0]], requires_grad=True)
    (x * 0.5).sum().backward()
    assert x.grad.dtype == ta.float32 and x.grad.shape == (1, 2)
    assert x.grad.grad_fn is None and not x.grad.requires_grad


# ---------------------------------------------------------------------------------------------------------
# A custom Function, as users write them
# ---------------------------------------------------------------------------------------------------------


class Cube(Function):
    """z = x^3.   dz/dx = 3 x^2 (written with Tensor ops, so it is differentiable again)."""

    def forward(self, x):
        self.save_for_backward(x)
        return x**3

    def backward(self, g):
        (x,) = self.saved_tensors
        return g * x * x * 3


class BadShape(Function):
    def forward(self, x):
        return x * 2

    def backward(self, g):
        return g.sum()


class TwoGradsForOneInput(Function):
    def forward(self, x):
        return x * 2

    def backward(self, g):
        return g, g


def test_custom_function_first_and_second_derivative():
    x = leaf([1.0, -2.0])
    y = Cube.apply(x)
    assert y.grad_fn.name == "CubeBackward"
    (g,) = ta.grad(y.sum(), x, create_graph=True)
    np.testing.assert_allclose(g.numpy(), [3.0, 12.0])
    (h,) = ta.grad(g.sum(), x)
    np.testing.assert_allclose(h.numpy(), [6.0, -12.0])


def test_custom_function_needs_input_grad_and_tensor_inputs():
    class Probe(Function):
        def forward(self, x, y):
            return x * y

        def backward(self, g):
            seen.append(self.needs_input_grad)
            return (g if self.needs_input_grad[0] else None), (g if self.needs_input_grad[1] else None)

    seen = []
    Probe.apply(leaf([1.0]), ta.tensor([2.0], dtype=ta.float64)).sum().backward()
    assert seen == [(True, False)]
    with pytest.raises(TypeError, match="Probe expects Tensor inputs"):
        Probe.apply(leaf([1.0]), 2.0)


def test_custom_function_with_wrong_gradient_shape_is_named():
    with pytest.raises(RuntimeError, match=r"BadShapeBackward returned a gradient of shape \(\)"):
        BadShape.apply(leaf([1.0, 2.0])).sum().backward()
    with pytest.raises(RuntimeError, match="TwoGradsForOneInputBackward returned 2 gradients for 1 inputs"):
        TwoGradsForOneInput.apply(leaf([1.0])).sum().backward()


def test_gradients_come_back_in_each_leaf_dtype():
    x = ta.tensor([1.0, 2.0], requires_grad=True)  # float32
    w = ta.tensor([3.0, 4.0], dtype=ta.float64, requires_grad=True)
    (x * w).sum().backward()  # computed in float64
    assert x.grad.dtype == ta.float32 and w.grad.dtype == ta.float64
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 4.0])
    x.grad = None
    (x * 2).backward(ta.ones(2, dtype=ta.float64))  # an explicit gradient in another dtype
    assert x.grad.dtype == ta.float32
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 2.0])
