"""In-place ops and version counters.

Every in-place op must (1) change the tensor's memory, (2) give the right gradients when the tensor is a
non-leaf (checked against the same computation written out of place, and against hand-derived formulas),
and (3) make any backward that needs the overwritten values fail loudly, naming the op, instead of
returning a silently wrong gradient.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_attn as ta


def leaf(values):
    return ta.tensor(np.asarray(values, dtype=np.float64), requires_grad=True)


def const(values):
    return ta.tensor(np.asarray(values, dtype=np.float64))


X = np.array([1.5, -2.0, 3.0, 0.25])
Z = np.array([0.5, 4.0, -1.0, 2.0])
MASK = np.array([True, False, True, False])

# name: (in-place version, out-of-place version), both on (y, x, z) where y = x * 2 is a non-leaf
INPLACE_VS_OUT_OF_PLACE = {
    "add_": (lambda y, x, z: y.add_(z), lambda y, x, z: y + z),
    "add_alpha": (lambda y, x, z: y.add_(z, alpha=3), lambda y, x, z: y + z * 3),
    "sub_": (lambda y, x, z: y.sub_(z), lambda y, x, z: y - z),
    "sub_alpha": (lambda y, x, z: y.sub_(x, alpha=0.5), lambda y, x, z: y - x * 0.5),
    "mul_": (lambda y, x, z: y.mul_(z), lambda y, x, z: y * z),
    "mul_self_input": (lambda y, x, z: y.mul_(x), lambda y, x, z: y * x),
    "div_": (lambda y, x, z: y.div_(z), lambda y, x, z: y / z),
    "pow_": (lambda y, x, z: y.pow_(3), lambda y, x, z: y**3),
    "clamp_": (lambda y, x, z: y.clamp_(-1.0, 4.0), lambda y, x, z: y.clamp(-1.0, 4.0)),
    "clamp_min_only": (lambda y, x, z: y.clamp_(min=0.0), lambda y, x, z: y.clamp(min=0.0)),
    "masked_fill_": (lambda y, x, z: y.masked_fill_(ta.tensor(MASK), 7.0),
                     lambda y, x, z: y.masked_fill(ta.tensor(MASK), 7.0)),
    "copy_": (lambda y, x, z: y.copy_(z * x), lambda y, x, z: z * x),
    "fill_": (lambda y, x, z: y.fill_(2.5), lambda y, x, z: y * 0 + 2.5),
    "zero_": (lambda y, x, z: y.zero_(), lambda y, x, z: y * 0),
    "iadd": (lambda y, x, z: _iop(y, "__iadd__", z), lambda y, x, z: y + z),
    "isub": (lambda y, x, z: _iop(y, "__isub__", z), lambda y, x, z: y - z),
    "imul": (lambda y, x, z: _iop(y, "__imul__", z), lambda y, x, z: y * z),
    "itruediv": (lambda y, x, z: _iop(y, "__itruediv__", 4.0), lambda y, x, z: y / 4.0),
    "setitem_int": (lambda y, x, z: _setitem(y, 1, z[0]), None),
    "setitem_slice": (lambda y, x, z: _setitem(y, slice(1, 3), z[:2] * 3), None),
    "setitem_mask": (lambda y, x, z: _setitem(y, ta.tensor(MASK), 0.0), lambda y, x, z: y.masked_fill(
        ta.tensor(MASK), 0.0)),
}


def _iop(y, name, other):
    out = getattr(y, name)(other)
    assert out is y  # augmented assignment keeps the same tensor object
    return out


def _setitem(y, index, value):
    y[index] = value
    return y


def _setitem_reference(name, y, x, z):
    """Out-of-place equivalent of the setitem cases, built from cat (a different code path)."""
    if name == "setitem_int":
        return ta.cat([y[0:1], z[0:1], y[2:]])
    return ta.cat([y[0:1], z[:2] * 3, y[3:]])


@pytest.mark.parametrize("name", sorted(INPLACE_VS_OUT_OF_PLACE))
def test_inplace_on_non_leaf_matches_out_of_place(name):
    inplace, out_of_place = INPLACE_VS_OUT_OF_PLACE[name]
    weights = const([1.0, -2.0, 0.5, 3.0])

    x1, z1 = leaf(X), leaf(Z)
    y1 = x1 * 2
    r1 = inplace(y1, x1, z1)
    assert r1 is y1
    (y1 * y1 * weights).sum().backward()

    x2, z2 = leaf(X), leaf(Z)
    y2 = x2 * 2
    r2 = out_of_place(y2, x2, z2) if out_of_place is not None else _setitem_reference(name, y2, x2, z2)
    (r2 * r2 * weights).sum().backward()

    np.testing.assert_allclose(y1.numpy(), r2.numpy(), rtol=1e-12)
    for a, b in ((x1, x2), (z1, z2)):  # no gradient (None) and a zero gradient are the same here
        ga = a.grad.numpy() if a.grad is not None else np.zeros_like(a.numpy())
        gb = b.grad.numpy() if b.grad is not None else np.zeros_like(b.numpy())
        np.testing.assert_allclose(ga, gb, rtol=1e-12, atol=1e-12)


def test_chain_of_inplace_ops_gradient_by_hand():
    x, z = leaf(X), leaf(Z)
    y = x * 2
    y.add_(1)
    y.mul_(z)  # y = (2x + 1) z
    assert y.grad_fn is not None and not y.is_leaf
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * Z)
    np.testing.assert_allclose(z.grad.numpy(), 2 * X + 1)


@given(hnp.arrays(np.float64, st.integers(1, 5), elements=st.floats(0.5, 2, width=64)),
       st.lists(st.sampled_from(["add", "sub", "mul", "div"]), min_size=1, max_size=6))
def test_random_sequences_of_inplace_ops(values, ops):
    """y = x; then y op= x repeatedly, in place and out of place: same values and gradients."""
    x1, x2 = leaf(values), leaf(values)
    y1, y2 = x1 * 1, x2 * 1
    for op in ops:
        getattr(y1, op + "_")(x1)
        y2 = getattr(y2, op)(x2)
    y1.sum().backward()
    y2.sum().backward()
    np.testing.assert_allclose(y1.numpy(), y2.numpy(), rtol=1e-12)
    np.testing.assert_allclose(x1.grad.numpy(), x2.grad.numpy(), rtol=1e-10)


def test_inplace_ops_change_memory_and_return_self():
    t = ta.tensor([1.0, 2.0, 3.0])
    data = t.data
    t.add_(1).mul_(2).sub_(1).div_(3)
    assert t.data is data
    np.testing.assert_allclose(t.numpy(), ((np.array([1.0, 2.0, 3.0]) + 1) * 2 - 1) / 3, rtol=1e-6)
    t.clamp_(max=1.5)
    np.testing.assert_allclose(t.numpy(), [1.0, 1.5, 1.5])
    t.fill_(4)
    np.testing.assert_array_equal(t.numpy(), [4.0, 4.0, 4.0])
    t.copy_(ta.tensor([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(t.numpy(), [1.0, 2.0, 3.0])
    t.masked_fill_(ta.tensor([False, True, False]), -1.0)
    np.testing.assert_array_equal(t.numpy(), [1.0, -1.0, 3.0])
    t[0] = 9
    t[1:] = ta.tensor([7.0, 8.0])
    np.testing.assert_array_equal(t.numpy(), [9.0, 7.0, 8.0])
    t.zero_()
    np.testing.assert_array_equal(t.numpy(), [0.0, 0.0, 0.0])
    assert t.data is data and t.dtype == ta.float32


def test_copy_broadcasts_and_casts_to_destination():
    t = ta.zeros(2, 3)
    t.copy_(ta.tensor([1.0, 2.0, 3.0], dtype=ta.float64))
    assert t.dtype == ta.float32
    np.testing.assert_array_equal(t.numpy(), [[1, 2, 3], [1, 2, 3]])


def test_copy_gradient_flows_to_source_only():
    x, s = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    y = x * 1
    y.copy_(s)
    (y * const([2.0, 5.0])).sum().backward()
    np.testing.assert_allclose(s.grad.numpy(), [2.0, 5.0])
    assert x.grad is None or not x.grad.numpy().any()


def test_setitem_gradients_by_hand():
    x, v = leaf([1.0, -2.0, 3.0]), leaf([10.0, 20.0])
    y = x * 2
    y[1] = v[0]
    y[ta.tensor([True, False, True])] = v * 3
    np.testing.assert_allclose(y.numpy(), [30.0, 10.0, 60.0])
    (y * y).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [0.0, 0.0, 0.0])  # every element was overwritten
    np.testing.assert_allclose(v.grad.numpy(), [2 * 10.0 + 3 * 2 * 30.0, 3 * 2 * 60.0])


def test_setitem_into_constant_buffer_makes_it_require_grad():
    x = leaf([1.0, 2.0])
    buf = ta.zeros(4, dtype=ta.float64)
    buf[1:3] = x * x
    assert buf.requires_grad and buf.grad_fn is not None
    (buf * const([1.0, 2.0, 3.0, 4.0])).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2 * 1.0 * 2.0, 2 * 2.0 * 3.0])


# ---------------------------------------------------------------------------------------------------------
# Version counters: changing what backward needs is caught
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("modify", [
    lambda t: t.add_(1),
    lambda t: t.mul_(2),
    lambda t: t.zero_(),
    lambda t: t.fill_(3.0),
    lambda t: t.copy_(ta.ones(3, dtype=ta.float64)),
    lambda t: t.clamp_(0, 1),
    lambda t: t.masked_fill_(ta.tensor([True, False, False]), 0.0),
    lambda t: t.__setitem__(0, 5.0),
    lambda t: t.__iadd__(1),
    lambda t: t.__isub__(1),
    lambda t: t.__imul__(2),
    lambda t: t.__itruediv__(2),
])
def test_modifying_a_saved_input_raises_at_backward_naming_the_op(modify):
    x = leaf([1.0, 2.0, 3.0])
    h = x * 1
    y = h.sin()  # Sin saves its input h
    modify(h)
    with pytest.raises(RuntimeError, match="SinBackward.*modified by an in-place operation"):
        y.sum().backward()


def test_modifying_a_saved_output_raises():
    x = leaf([1.0, 2.0])
    e = x.exp()  # Exp saves its output
    e.add_(1)
    with pytest.raises(RuntimeError, match="ExpBackward.*in-place.*version 1.*version 0"):
        e.sum().backward()


def test_modifying_an_unsaved_tensor_is_fine():
    x = leaf([1.0, 2.0])
    h = x * 1
    y = h + 1  # Add saves nothing
    h.mul_(100)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0, 1.0])


def test_modifying_a_constant_saved_by_an_op_raises():
    x, c = leaf([1.0, 2.0]), ta.tensor([3.0, 4.0], dtype=ta.float64)
    y = x * c  # Mul saves c to compute dy/dx
    c.add_(1)  # c does not require grad: in place is allowed, but the saved value is gone
    with pytest.raises(RuntimeError, match="MulBackward"):
        y.sum().backward()


def test_optimizer_style_update_between_forward_and_backward_is_caught():
    w, x = leaf([1.0, 2.0]), const([3.0, 4.0])
    y = (w * x).sum() * w.sum()
    with ta.no_grad():
        w.sub_(0.1)
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        y.backward()


def test_inplace_after_backward_does_not_affect_computed_gradients():
    x = leaf([1.0, 2.0])
    h = x * 1
    (h * h).sum().backward()
    h.add_(5)  # the graph is already used
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 4.0])


def test_inplace_result_used_after_its_old_value_was_saved():
    """y.mul_(x) where Mul saved the old y: the old value must survive in a private copy."""
    x = leaf([1.0, 2.0])
    y = x * 3
    y.mul_(y)  # y_new = y_old^2 = 9 x^2
    y.sum().backward()
    np.testing.assert_allclose(y.numpy(), [9.0, 36.0])
    np.testing.assert_allclose(x.grad.numpy(), [18.0, 36.0])


# ---------------------------------------------------------------------------------------------------------
# Leaves
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("modify", [
    lambda t: t.add_(1),
    lambda t: t.zero_(),
    lambda t: t.__setitem__(0, 1.0),
    lambda t: t.__imul__(2),
    lambda t: t.copy_(ta.zeros(2, dtype=ta.float64)),
])
def test_inplace_on_leaf_requiring_grad_raises(modify):
    x = leaf([1.0, 2.0])
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad.*in place.*no_grad"):
        modify(x)
    np.testing.assert_array_equal(x.numpy(), [1.0, 2.0])  # nothing was written


def test_inplace_on_leaf_works_under_no_grad():
    x = leaf([1.0, 2.0])
    with ta.no_grad():
        x.sub_(ta.tensor([0.5, 0.5], dtype=ta.float64), alpha=2)
        x[0] = 10.0
        x *= 2
    np.testing.assert_allclose(x.numpy(), [20.0, 2.0])
    assert x.is_leaf and x.requires_grad and x.grad_fn is None
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [40.0, 4.0])


def test_leaf_without_grad_becomes_non_leaf_when_written_with_grad_operand():
    x = leaf([1.0, 2.0])
    t = ta.zeros(2, dtype=ta.float64)
    t.add_(x)
    assert t.requires_grad and not t.is_leaf
    (t * 3).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 3.0])


def test_detached_tensor_shares_memory_and_version():
    x = leaf([1.0, 2.0])
    y = x * x  # saves x
    d = x.detach()
    d.add_(1)  # allowed: d does not require grad
    np.testing.assert_array_equal(x.numpy(), [2.0, 3.0])
    with pytest.raises(RuntimeError, match="MulBackward"):
        y.sum().backward()


def test_integer_inplace_with_float_result_raises_clearly():
    t = ta.tensor([1, 2])
    with pytest.raises(TypeError, match="float32.*int64"):
        t += 1.5
    t += 2
    np.testing.assert_array_equal(t.numpy(), [3, 4])
    assert t.dtype == ta.int64


def test_inplace_shape_change_raises():
    t = ta.zeros(2, 3)
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(3, 3\)"):
        t.add_(ta.ones(3, 3))


# ---------------------------------------------------------------------------------------------------------
# Views share the version counter
# ---------------------------------------------------------------------------------------------------------

VIEWS = {
    "slice": lambda t: t[1:],
    "int": lambda t: t[0],
    "reshape": lambda t: t.reshape(2, 2),
    "view": lambda t: t.view(4, 1),
    "transpose": lambda t: t.reshape(2, 2).T,
    "unsqueeze": lambda t: t.unsqueeze(0),
    "expand": lambda t: t[:1].expand(3),
    "ellipsis_none": lambda t: t[None, ...],
}


@pytest.mark.parametrize("name", sorted(VIEWS))
def test_modifying_base_invalidates_saved_view(name):
    x = leaf([1.0, 2.0, 3.0, 4.0])
    c = ta.tensor([1.0, 2.0, 3.0, 4.0], dtype=ta.float64)
    v = VIEWS[name](c)
    y = v * x.sum()  # Mul saves v
    c.add_(1)  # changes v's memory too
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        y.sum().backward()


@pytest.mark.parametrize("name", ["slice", "int", "reshape", "view", "transpose", "unsqueeze", "ellipsis_none"])
def test_modifying_view_invalidates_saved_base(name):
    x = leaf([1.0, 2.0, 3.0, 4.0])
    c = ta.tensor([1.0, 2.0, 3.0, 4.0], dtype=ta.float64)
    y = x * c  # Mul saves c
    VIEWS[name](c).mul_(10)
    assert c.numpy().max() >= 10  # the write went through to the base's memory
    with pytest.raises(RuntimeError, match="MulBackward"):
        y.sum().backward()


def test_copy_from_reshape_of_non_contiguous_is_not_a_view():
    x = leaf([1.0, 2.0, 3.0, 4.0])
    c = ta.tensor(np.arange(6.0).reshape(2, 3))
    r = c.T.reshape(6)  # a copy (not expressible as a view)
    y = (x.sum() * c).sum()  # Mul saves c
    r.add_(1)
    np.testing.assert_array_equal(c.numpy(), np.arange(6.0).reshape(2, 3))
    y.backward()  # c was not touched
    np.testing.assert_allclose(x.grad.numpy(), [15.0] * 4)


@pytest.mark.parametrize("name", sorted(set(VIEWS) - {"expand"}))  # an expanded view is read-only memory
def test_inplace_on_view_of_tensor_requiring_grad_raises(name):
    x = leaf([1.0, 2.0, 3.0, 4.0])
    for base in (x, x * 1):  # a leaf and a non-leaf
        v = VIEWS[name](base)
        with pytest.raises(RuntimeError, match="view of a tensor that requires grad"):
            v.add_(1)


def test_inplace_on_view_with_grad_operand_of_plain_base_raises():
    x = leaf([1.0, 2.0])
    buf = ta.zeros(4, dtype=ta.float64)
    with pytest.raises(RuntimeError, match="view.*base tensor would miss the gradient"):
        buf[1:3].add_(x)
    np.testing.assert_array_equal(buf.numpy(), [0.0, 0.0, 0.0, 0.0])


def test_inplace_on_view_without_grad_anywhere_writes_through():
    buf = ta.zeros(2, 3)
    buf[0].add_(1)
    buf.T[2].fill_(5)
    np.testing.assert_array_equal(buf.numpy(), [[1, 1, 5], [0, 0, 5]])


def test_using_a_view_whose_base_changed_in_place_raises():
    x = leaf([1.0, 2.0, 3.0])
    h = x * 1
    v = h[:2]  # its graph points at h's graph before the change below
    h.mul_(3)
    with pytest.raises(RuntimeError, match="view of a tensor that was changed in place"):
        v.sum()
    v2 = h[:2]  # taking the view again is fine
    v2.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 3.0, 0.0])


def test_view_of_parameter_stays_valid_after_no_grad_update():
    w = leaf([1.0, 2.0, 3.0])
    wt = w.reshape(3, 1)
    with ta.no_grad():
        w.sub_(1)
    (wt * wt).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), [0.0, 2.0, 4.0])
