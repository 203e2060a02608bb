"""The Tensor API users touch first: making tensors, dtype rules, factories, attributes, conversions, repr,
Python operators, and PyTorch-style argument names (with NumPy's aliases).

Expected values come from NumPy (or the PyTorch CPU build, where one is installed) on the same data.
"""

import operator

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_attn as ta

# ---------------------------------------------------------------------------------------------------------
# ta.tensor and dtype rules
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("data, dtype", [
    (1.5, ta.float32),
    ([1.0, 2.0], ta.float32),
    ([[1, 2], [3, 4]], ta.int64),
    (3, ta.int64),
    (True, ta.bool),
    ([True, False], ta.bool),
    ([1, 2.5], ta.float32),  # mixed ints and floats: a float tensor, in the default float dtype
    ([], ta.float32),
    (np.arange(3, dtype=np.int32), ta.int32),  # arrays keep their dtype
    (np.ones(2, dtype=np.float64), ta.float64),
    (np.ones(2, dtype=np.float16), ta.float16),
    (np.array([1, 0], dtype=np.uint8), ta.uint8),
    (np.array([True]), ta.bool),
])
def test_tensor_default_dtypes(data, dtype):
    t = ta.tensor(data)
    assert t.dtype == dtype
    np.testing.assert_array_equal(t.numpy(), np.asarray(data))
    assert t.is_leaf and not t.requires_grad and t.grad is None and t.grad_fn is None


@pytest.mark.parametrize("spec", [ta.float64, np.float64, "float64", "double", ta.double, np.dtype("float64")])
def test_tensor_dtype_argument_accepts_constants_numpy_types_and_names(spec):
    assert ta.tensor([1, 2], dtype=spec).dtype == ta.float64
    assert ta.zeros(2, dtype=spec).dtype == ta.float64
    assert ta.tensor([1.0]).to(spec).dtype == ta.float64


def test_dtype_constants_are_numpy_dtypes():
    assert ta.float32 == np.float32 and ta.float32 == "float32"
    assert ta.long == ta.int64 and ta.half == ta.float16 and ta.bool == np.bool_
    assert ta.tensor([1.0]).dtype == "float32"


def test_bad_dtype_and_bad_data_give_clear_errors():
    with pytest.raises(TypeError, match="not a dtype: 'floaty'"):
        ta.tensor([1.0], dtype="floaty")
    with pytest.raises(TypeError, match="cannot make a tensor from data of type"):
        ta.tensor(["a", "b"])


def test_tensor_copies_its_input_and_from_numpy_shares():
    a = np.array([1.0, 2.0], dtype=np.float32)
    t = ta.tensor(a)
    a[0] = 100.0
    assert t.numpy()[0] == 1.0
    u = ta.tensor(t)  # from a Tensor: a new leaf with its own memory
    u.data[1] = 50.0
    assert t.numpy()[1] == 2.0
    shared = ta.from_numpy(a)
    a[1] = 7.0
    assert shared.numpy()[1] == 7.0


def test_tensor_with_requires_grad_and_the_tensor_class_constructor():
    t = ta.tensor([1.0, 2.0], requires_grad=True)
    assert t.requires_grad and t.is_leaf
    c = ta.Tensor([1.0, 2.0], requires_grad=True)
    assert isinstance(c, ta.Tensor) and c.requires_grad and c.dtype == ta.float32
    assert ta.Tensor([1, 2]).dtype == ta.int64


@pytest.mark.parametrize("scalar", [2.5, 2, True, np.float64(2.5), np.float32(0.5), np.int64(3)])
@pytest.mark.parametrize("op", [operator.add, operator.sub, operator.mul, operator.truediv, operator.pow])
def test_python_scalars_never_upcast_float32(op, scalar):
    x = ta.tensor([1.0, 2.0])
    assert op(x, scalar).dtype == ta.float32
    if op is not operator.pow:
        assert op(scalar, x).dtype == ta.float32
    h = ta.tensor([1.0, 2.0], dtype=ta.float16)
    assert op(h, scalar).dtype == ta.float16


def test_integer_tensor_promotion_rules():
    i = ta.tensor([1, 2])
    assert (i + 1).dtype == ta.int64 and (i * i).dtype == ta.int64
    assert (ta.tensor([1, 2], dtype=ta.int32) + 1).dtype == ta.int32
    assert (i * 2.5).dtype == ta.float32  # an int tensor with a float scalar: the default float
    assert (i / 2).dtype == ta.float32  # true division of integers gives floats
    np.testing.assert_allclose((i / 2).numpy(), [0.5, 1.0])


# ---------------------------------------------------------------------------------------------------------
# Factories
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("factory, fill", [(ta.zeros, 0.0), (ta.ones, 1.0)])
def test_zeros_ones(factory, fill):
    for shape_args in [(2, 3), ((2, 3),), ([2, 3],)]:
        t = factory(*shape_args)
        assert t.shape == (2, 3) and t.dtype == ta.float32
        np.testing.assert_array_equal(t.numpy(), np.full((2, 3), fill))
    assert factory(4, dtype=ta.int64).dtype == ta.int64
    assert factory(2, device="cpu").device == "cpu"
    g = factory(3, requires_grad=True)
    assert g.requires_grad and g.is_leaf
    assert factory(()).shape == ()


def test_full_infers_dtype_from_fill_value():
    assert ta.full((2,), 1.5).dtype == ta.float32
    assert ta.full((2,), 3).dtype == ta.int64
    assert ta.full((2,), True).dtype == ta.bool
    assert ta.full(3, 2.0, dtype=ta.float64).dtype == ta.float64
    np.testing.assert_array_equal(ta.full([2, 2], 7).numpy(), np.full((2, 2), 7))
    assert ta.full((2,), 0.5, requires_grad=True).requires_grad


def test_empty_shape_and_dtype():
    t = ta.empty(3, 2, dtype=ta.float64)
    assert t.shape == (3, 2) and t.dtype == ta.float64


@pytest.mark.parametrize("args, kwargs, expected", [
    ((5,), {}, np.arange(5)),
    ((2, 7), {}, np.arange(2, 7)),
    ((1, 10, 3), {}, np.arange(1, 10, 3)),
    ((0, 1, 0.25), {}, np.arange(0, 1, 0.25)),
    ((3.0,), {}, np.arange(3.0)),
    ((5,), {"dtype": ta.float64}, np.arange(5.0)),
])
def test_arange(args, kwargs, expected):
    t = ta.arange(*args, **kwargs)
    np.testing.assert_allclose(t.numpy(), expected)
    if "dtype" in kwargs:
        assert t.dtype == kwargs["dtype"]
    else:
        assert t.dtype == (ta.int64 if all(isinstance(a, int) for a in args) else ta.float32)


def test_eye():
    np.testing.assert_array_equal(ta.eye(3).numpy(), np.eye(3))
    np.testing.assert_array_equal(ta.eye(2, 4).numpy(), np.eye(2, 4))
    assert ta.eye(2).dtype == ta.float32 and ta.eye(2, dtype=ta.int64).dtype == ta.int64


@pytest.mark.parametrize("fn", [ta.rand, ta.randn])
def test_rand_randn(fn):
    t = fn(200, 3)
    assert t.shape == (200, 3) and t.dtype == ta.float32
    assert fn(2, dtype=ta.float64).dtype == ta.float64
    assert fn((4,)).shape == (4,)
    assert fn(3, requires_grad=True).requires_grad
    if fn is ta.rand:
        assert 0 <= t.numpy().min() and t.numpy().max() < 1
    else:
        assert abs(t.numpy().mean()) < 0.3 and 0.7 < t.numpy().std() < 1.3
    with pytest.raises(TypeError, match="floating-point"):
        fn(2, dtype=ta.int64)


def test_randint():
    t = ta.randint(3, 7, (500,))
    assert t.dtype == ta.int64 and t.shape == (500,)
    assert set(np.unique(t.numpy())) == {3, 4, 5, 6}
    assert ta.randint(5, size=(2, 2)).numpy().max() < 5
    assert ta.randint(0, 2, (3,), dtype=ta.int32).dtype == ta.int32


def test_manual_seed_makes_random_factories_reproducible():
    def draw():
        return [ta.rand(3).numpy(), ta.randn(2, 2).numpy(), ta.randint(0, 100, (4,)).numpy(),
                ta.randn_like(ta.zeros(3)).numpy(), ta.rand_like(ta.zeros(2)).numpy()]

    ta.manual_seed(1234)
    first = draw()
    ta.manual_seed(1234)
    second = draw()
    ta.manual_seed(4321)
    other = draw()
    for a, b, c in zip(first, second, other):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)
    ta.manual_seed(1234)
    assert not np.array_equal(ta.rand(3).numpy(), ta.rand(3).numpy())  # successive draws differ


def test_like_factories_follow_the_template():
    t = ta.tensor([[1, 2, 3]], dtype=ta.int32)
    for fn in (ta.zeros_like, ta.ones_like, ta.empty_like):
        r = fn(t)
        assert r.shape == (1, 3) and r.dtype == ta.int32 and r.device == t.device
        assert fn(t, dtype=ta.float64).dtype == ta.float64
    np.testing.assert_array_equal(ta.ones_like(t).numpy(), [[1, 1, 1]])
    np.testing.assert_array_equal(ta.full_like(t, 4).numpy(), [[4, 4, 4]])
    f = ta.randn(2, 2, requires_grad=True)
    assert not ta.zeros_like(f).requires_grad  # as PyTorch: requires_grad is not copied
    assert ta.zeros_like(f, requires_grad=True).requires_grad
    assert ta.rand_like(f).shape == (2, 2) and ta.randn_like(f, dtype=ta.float64).dtype == ta.float64


# ---------------------------------------------------------------------------------------------------------
# Attributes and conversions
# ---------------------------------------------------------------------------------------------------------


def test_attributes():
    x = ta.tensor(np.arange(24.0).reshape(2, 3, 4), dtype=ta.float32, requires_grad=True)
    assert x.shape == (2, 3, 4) and x.ndim == 3 and x.dim() == 3
    assert x.size() == (2, 3, 4) and x.size(1) == 3 and x.size(-1) == 4
    assert x.numel() == 24 and len(x) == 2
    assert x.dtype == ta.float32 and x.device == "cpu" and x.device == ta.device("cpu")
    assert x.requires_grad and x.is_leaf and x.grad is None and x.grad_fn is None
    np.testing.assert_array_equal(x.T.numpy(), np.arange(24.0).reshape(2, 3, 4).T)
    np.testing.assert_array_equal(x.mT.numpy(), np.swapaxes(np.arange(24.0).reshape(2, 3, 4), -1, -2))
    y = x * 2
    assert not y.is_leaf and y.grad_fn is not None and y.requires_grad
    s = ta.tensor(5.0)
    assert s.shape == () and s.ndim == 0 and s.numel() == 1 and s.size() == ()


def test_matrix_transpose_gradient():
    x = ta.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
    (x.T * ta.tensor([[1.0], [2.0], [3.0]])).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[1.0, 2.0, 3.0]])


def test_leaving_the_framework():
    x = ta.tensor([[1.5, 2.0], [3.0, 4.0]])
    assert isinstance(x.numpy(), np.ndarray) and x.numpy().dtype == np.float32
    assert x.tolist() == [[1.5, 2.0], [3.0, 4.0]]
    v = x.sum().item()
    assert v == 10.5 and type(v) is float
    assert type(ta.tensor(3).item()) is int and type(ta.tensor(True).item()) is bool
    assert ta.tensor([[7.0]]).item() == 7.0  # any one-element tensor
    assert float(ta.tensor(2.5)) == 2.5 and int(ta.tensor(3)) == 3 and bool(ta.tensor([1.0]))
    assert [10, 20, 30][ta.tensor(1)] == 20  # __index__
    np.testing.assert_array_equal(np.asarray(x), x.numpy())
    with pytest.raises(ValueError, match=r"one element.*\(2, 2\)"):
        x.item()
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(x)
    with pytest.raises(TypeError, match="0-d"):
        len(ta.tensor(1.0))


def test_to_cpu_float_double():
    x = ta.tensor([1.0, 2.0], requires_grad=True)
    assert x.to("cpu") is x and x.cpu() is x and x.to(ta.float32) is x  # no-op moves return self
    d = x.double()
    assert d.dtype == ta.float64 and d.grad_fn is not None
    assert d.float().dtype == ta.float32
    assert x.to("cpu", ta.float64).dtype == ta.float64
    assert x.to(dtype=ta.float16).dtype == ta.float16 and x.half().dtype == ta.float16
    assert x.to("float64").dtype == ta.float64  # a dtype name is not mistaken for a device
    assert ta.tensor([1.5]).long().dtype == ta.int64 and ta.tensor([1.5]).int().dtype == ta.int32
    assert ta.tensor([0.0, 2.0]).bool().tolist() == [False, True]
    assert x.type_as(ta.zeros(1, dtype=ta.float64)).dtype == ta.float64
    (d * d).sum().backward()  # the gradient comes back through the cast, in the leaf's dtype
    assert x.grad.dtype == ta.float32
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 4.0])


def test_detach_clone_requires_grad_():
    x = ta.tensor([1.0, 2.0], requires_grad=True)
    d = x.detach()
    assert not d.requires_grad and d.grad_fn is None and np.shares_memory(d.data, x.data)
    c = x.clone()
    assert c.grad_fn is not None and not np.shares_memory(c.data, x.data)
    (c * 3).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 3.0])
    n = ta.tensor([1.0])
    assert n.requires_grad_() is n and n.requires_grad
    n.requires_grad_(False)
    assert not n.requires_grad
    with pytest.raises(RuntimeError, match="leaf"):
        (x * 2).requires_grad_(False)
    fresh = (x * 2).detach().requires_grad_()
    assert fresh.is_leaf and fresh.requires_grad


def test_repr_shows_data_dtype_grad_fn_and_requires_grad():
    r = repr(ta.tensor([1.5, 2.0]))
    assert r.startswith("tensor(") and "1.5" in r and "2." in r
    assert "dtype=float64" in repr(ta.tensor([1.0], dtype=ta.float64))
    assert "dtype=int32" in repr(ta.tensor([1], dtype=ta.int32))
    x = ta.tensor([1.0], requires_grad=True)
    assert "requires_grad=True" in repr(x)
    assert "grad_fn=<MulBackward>" in repr(x * 2)
    assert "grad_fn=<SumBackward>" in repr((x * 2).sum())
    assert "dtype=float32" in repr(x) and "device='cpu'" in repr(x)  # always shown (issue #2)
    big = repr(ta.zeros(1000))
    assert "..." in big and len(big) < 1000


# ---------------------------------------------------------------------------------------------------------
# Python operators
# ---------------------------------------------------------------------------------------------------------

A = np.array([[1.5, -2.0, 3.0], [0.5, 4.0, -1.0]], dtype=np.float32)
B = np.array([[2.0, 0.5, -1.5], [3.0, -2.0, 2.5]], dtype=np.float32)

BINARY = [operator.add, operator.sub, operator.mul, operator.truediv]


@pytest.mark.parametrize("op", BINARY + [operator.pow])
def test_binary_operators_match_numpy(op):
    a, b = ta.tensor(A), ta.tensor(B)
    base = np.abs(A) if op is operator.pow else A
    np.testing.assert_allclose(op(ta.tensor(base), b).numpy(), op(base, B), rtol=1e-6)
    np.testing.assert_allclose(op(a, 2.0).numpy(), op(A, np.float32(2.0)), rtol=1e-6)
    np.testing.assert_allclose(op(ta.tensor(base), b[0]).numpy(), op(base, B[0]), rtol=1e-6)  # broadcasting


@pytest.mark.parametrize("op", BINARY + [operator.pow])
def test_reflected_operators(op):
    a = ta.tensor(np.abs(A) + 0.5)
    expected = op(np.float32(3.0), np.abs(A) + 0.5)
    np.testing.assert_allclose(op(3.0, a).numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(op(3, a).numpy(), expected, rtol=1e-6)
    r = op(np.full_like(A, 3.0), a)  # a NumPy array on the left defers to the Tensor
    assert isinstance(r, ta.Tensor)
    np.testing.assert_allclose(r.numpy(), expected, rtol=1e-6)


def test_reflected_operator_gradients():
    x = ta.tensor([0.5, 2.0], dtype=ta.float64, requires_grad=True)
    xs = np.array([0.5, 2.0])
    for fn, dfn in [
        (lambda t: 2 - t, lambda v: -np.ones_like(v)),
        (lambda t: 2 / t, lambda v: -2 / v**2),
        (lambda t: 2**t, lambda v: 2**v * np.log(2)),
        (lambda t: 3 * t + 1, lambda v: 3 * np.ones_like(v)),
        (lambda t: -t, lambda v: -np.ones_like(v)),
        (lambda t: abs(-t), lambda v: np.ones_like(v)),
    ]:
        x.grad = None
        fn(x).sum().backward()
        np.testing.assert_allclose(x.grad.numpy(), dfn(xs), rtol=1e-12)


def test_matmul_operator_and_unary():
    a, b = ta.tensor(A), ta.tensor(B)
    np.testing.assert_allclose((a @ b.T).numpy(), A @ B.T, rtol=1e-6)
    np.testing.assert_allclose((A.tolist() @ b.T).numpy(), A @ B.T, rtol=1e-6)  # __rmatmul__
    np.testing.assert_allclose(a[0] @ b[1], A[0] @ B[1], rtol=1e-6)
    np.testing.assert_array_equal((-a).numpy(), -A)
    np.testing.assert_array_equal((+a).numpy(), A)
    np.testing.assert_array_equal(abs(a).numpy(), np.abs(A))


@pytest.mark.parametrize("op", [operator.eq, operator.ne, operator.lt, operator.le, operator.gt, operator.ge])
def test_comparisons_return_bool_tensors_without_grad(op):
    a = ta.tensor(A, requires_grad=True)
    b = ta.tensor(np.where(np.arange(6).reshape(2, 3) % 2 == 0, A, B))  # some ties
    for other, other_np in [(b, b.numpy()), (1.5, 1.5), (0, 0)]:
        r = op(a, other)
        assert r.dtype == ta.bool and not r.requires_grad and r.grad_fn is None
        np.testing.assert_array_equal(r.numpy(), op(A, other_np))
    np.testing.assert_array_equal(op(1.5, a).numpy(), op(1.5, A))  # reflected (Python swaps the operator)
    name = {operator.eq: "eq", operator.ne: "ne", operator.lt: "lt", operator.le: "le", operator.gt: "gt",
            operator.ge: "ge"}[op]
    np.testing.assert_array_equal(getattr(a, name)(b).numpy(), op(A, b.numpy()))


def test_boolean_operators():
    p, q = ta.tensor([True, True, False]), ta.tensor([True, False, False])
    assert (p & q).tolist() == [True, False, False]
    assert (p | q).tolist() == [True, True, False]
    assert (~p).tolist() == [False, False, True]
    assert p.logical_not().tolist() == [False, False, True]
    assert p.any().item() and not q.all().item()
    assert ta.tensor([np.nan, 1.0]).isnan().tolist() == [True, False]


@pytest.mark.parametrize("index", [
    0, -1, (1, 2), slice(1, None), (slice(None), 1), (Ellipsis, 0), (None, 0), ([0, 1, 1],), (1, [2, 0]),
])
def test_getitem_matches_numpy(index):
    a = np.arange(24.0, dtype=np.float32).reshape(2, 3, 4)
    np.testing.assert_array_equal(ta.tensor(a)[index].numpy(), a[index])


def test_getitem_with_tensor_indices_and_masks():
    a = np.arange(12.0, dtype=np.float32).reshape(3, 4)
    t = ta.tensor(a)
    np.testing.assert_array_equal(t[ta.tensor([2, 0])].numpy(), a[[2, 0]])
    np.testing.assert_array_equal(t[t > 5].numpy(), a[a > 5])
    with pytest.raises(IndexError, match=r"shape \(3, 4\)"):
        t[5]


# ---------------------------------------------------------------------------------------------------------
# PyTorch argument names, NumPy aliases, reductions' return conventions
# ---------------------------------------------------------------------------------------------------------

X3 = np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32)


@pytest.mark.parametrize("name", ["sum", "mean", "var", "std", "amax", "amin"])
@pytest.mark.parametrize("dim", [None, 0, -1, (0, 2)])
@pytest.mark.parametrize("keepdim", [False, True])
def test_reductions_dim_keepdim_and_numpy_aliases(name, dim, keepdim):
    np_fn = {"sum": np.sum, "mean": np.mean, "var": lambda a, **k: np.var(a, ddof=1, **k),
             "std": lambda a, **k: np.std(a, ddof=1, **k), "amax": np.max, "amin": np.min}[name]
    expected = np_fn(X3.astype(np.float64), axis=dim, keepdims=keepdim)
    t = ta.tensor(X3)
    method = getattr(t, name)
    outs = [method(dim, keepdim) if name != "var" and name != "std" else method(dim, keepdim=keepdim),
            method(dim=dim, keepdim=keepdim)]
    if name not in ("amax", "amin"):
        outs.append(method(axis=dim, keepdims=keepdim))
    outs.append(getattr(ta, name)(t, dim=dim, keepdim=keepdim))
    for out in outs:
        assert out.shape == np.shape(expected)
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_var_std_unbiased_default_and_corrections():
    t = ta.tensor(X3)
    flat = X3.astype(np.float64).ravel()
    np.testing.assert_allclose(t.var().item(), flat.var(ddof=1), rtol=1e-5)
    np.testing.assert_allclose(t.var(unbiased=False).item(), flat.var(), rtol=1e-5)
    np.testing.assert_allclose(t.var(correction=0).item(), flat.var(), rtol=1e-5)
    np.testing.assert_allclose(t.std(unbiased=True).item(), flat.std(ddof=1), rtol=1e-5)
    np.testing.assert_allclose(t.std(1, unbiased=False).numpy(), X3.std(axis=1), rtol=1e-5)
    np.testing.assert_allclose(t.std(dim=-1, correction=2).numpy(),
                               np.sqrt(((X3 - X3.mean(-1, keepdims=True)) ** 2).sum(-1) / 2), rtol=1e-5)


@pytest.mark.parametrize("name, np_fn, np_arg", [("max", np.max, np.argmax), ("min", np.min, np.argmin)])
def test_max_min_with_dim_return_values_and_indices(name, np_fn, np_arg):
    t = ta.tensor(X3, requires_grad=True)
    whole = getattr(t, name)()
    assert isinstance(whole, ta.Tensor) and whole.shape == ()
    np.testing.assert_allclose(whole.item(), np_fn(X3))
    for kwargs in [{"dim": 1}, {"dim": -1, "keepdim": True}, {"axis": 0}]:
        d = kwargs.get("dim", kwargs.get("axis"))
        result = getattr(t, name)(**kwargs)
        values, indices = result
        assert result.values is values and result.indices is indices
        keep = kwargs.get("keepdim", False)
        np.testing.assert_allclose(values.numpy(), np_fn(X3, axis=d, keepdims=keep))
        np.testing.assert_array_equal(indices.numpy(), np.expand_dims(np_arg(X3, axis=d), d) if keep
                                      else np_arg(X3, axis=d))
        assert indices.dtype == ta.int64 and not indices.requires_grad
    values, _ = getattr(ta, name)(t, dim=2)
    values.sum().backward()  # gradient goes to the arg-max/arg-min positions
    expected = np.zeros_like(X3)
    np.put_along_axis(expected, np.expand_dims(np_arg(X3, axis=2), 2), 1.0, axis=2)
    np.testing.assert_array_equal(t.grad.numpy(), expected)


def test_argmax_argmin_and_softmax_dims():
    t = ta.tensor(X3)
    np.testing.assert_array_equal(t.argmax().item(), X3.argmax())
    np.testing.assert_array_equal(t.argmin(dim=1).numpy(), X3.argmin(axis=1))
    assert t.argmax(dim=1, keepdim=True).shape == (2, 1, 4)
    e = np.exp(X3 - X3.max(1, keepdims=True))
    np.testing.assert_allclose(t.softmax(dim=1).numpy(), e / e.sum(1, keepdims=True), rtol=1e-5)
    np.testing.assert_allclose(t.log_softmax(1).numpy(), np.log(e / e.sum(1, keepdims=True)), rtol=1e-4, atol=1e-6)


@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 7), st.integers(1, 3)),
                  elements=st.floats(-10, 10, width=32)),
       st.integers(1, 8))
def test_split_with_int_size(a, size):
    parts = ta.tensor(a).split(size)
    expected = [a[i:i + size] for i in range(0, len(a), size)]
    assert [p.shape for p in parts] == [e.shape for e in expected]
    for p, e in zip(parts, expected):
        np.testing.assert_array_equal(p.numpy(), e)


def test_split_with_list_and_dim_and_errors():
    t = ta.tensor(X3)
    parts = t.split([1, 3], dim=2)
    assert [p.shape for p in parts] == [(2, 3, 1), (2, 3, 3)]
    np.testing.assert_array_equal(parts[1].numpy(), X3[:, :, 1:])
    assert [p.shape for p in ta.split(t, 2, dim=-1)] == [(2, 3, 2), (2, 3, 2)]
    assert [p.shape for p in t.chunk(3, dim=1)] == [(2, 1, 4)] * 3
    with pytest.raises(ValueError, match=r"split: sizes \[1, 2\] sum to 3, but dim 2 has size 4"):
        t.split([1, 2], dim=2)


# ---------------------------------------------------------------------------------------------------------
# Module-level functions mirror the methods and NumPy
# ---------------------------------------------------------------------------------------------------------

P = np.abs(X3) + 0.1

MODULE_FUNCTIONS = [
    ("exp", lambda: ta.exp(ta.tensor(X3)), np.exp(X3)),
    ("log", lambda: ta.log(ta.tensor(P)), np.log(P)),
    ("sqrt", lambda: ta.sqrt(ta.tensor(P)), np.sqrt(P)),
    ("abs", lambda: ta.abs(ta.tensor(X3)), np.abs(X3)),
    ("sin", lambda: ta.sin(ta.tensor(X3)), np.sin(X3)),
    ("cos", lambda: ta.cos(ta.tensor(X3)), np.cos(X3)),
    ("tanh", lambda: ta.tanh(ta.tensor(X3)), np.tanh(X3)),
    ("sigmoid", lambda: ta.sigmoid(ta.tensor(X3)), 1 / (1 + np.exp(-X3))),
    ("relu", lambda: ta.relu(ta.tensor(X3)), np.maximum(X3, 0)),
    ("clamp", lambda: ta.clamp(ta.tensor(X3), -0.5, 0.5), np.clip(X3, -0.5, 0.5)),
    ("clip", lambda: ta.clip(ta.tensor(X3), min=0.0), np.clip(X3, 0.0, None)),
    ("maximum", lambda: ta.maximum(ta.tensor(X3), ta.tensor(P - 1)), np.maximum(X3, P - 1)),
    ("minimum", lambda: ta.minimum(ta.tensor(X3), ta.tensor(P - 1)), np.minimum(X3, P - 1)),
    ("where", lambda: ta.where(ta.tensor(X3) > 0, ta.tensor(X3), 0.0), np.where(X3 > 0, X3, 0)),
    ("matmul", lambda: ta.matmul(ta.tensor(X3), ta.tensor(X3).mT), X3 @ np.swapaxes(X3, -1, -2)),
    ("cat", lambda: ta.cat([ta.tensor(X3), ta.tensor(P)], dim=1), np.concatenate([X3, P], axis=1)),
    ("concat", lambda: ta.concat([ta.tensor(X3), ta.tensor(P)]), np.concatenate([X3, P])),
    ("stack", lambda: ta.stack([ta.tensor(X3), ta.tensor(P)], dim=-1), np.stack([X3, P], axis=-1)),
    ("reshape", lambda: ta.reshape(ta.tensor(X3), (4, 6)), X3.reshape(4, 6)),
    ("flatten", lambda: ta.flatten(ta.tensor(X3), 1), X3.reshape(2, 12)),
    ("transpose", lambda: ta.transpose(ta.tensor(X3), 0, 2), np.swapaxes(X3, 0, 2)),
    ("permute", lambda: ta.permute(ta.tensor(X3), (1, 2, 0)), X3.transpose(1, 2, 0)),
    ("squeeze", lambda: ta.squeeze(ta.tensor(X3[:, :1]), 1), X3[:, 0]),
    ("unsqueeze", lambda: ta.unsqueeze(ta.tensor(X3), -1), X3[..., None]),
    ("gather", lambda: ta.gather(ta.tensor(X3), 2, ta.tensor(np.zeros((2, 3, 1), dtype=np.int64))), X3[..., :1]),
    ("pad", lambda: ta.pad(ta.tensor(X3), (1, 2)), np.pad(X3, [(0, 0), (0, 0), (1, 2)])),
    ("triu", lambda: ta.triu(ta.tensor(X3), 1), np.triu(X3, 1)),
    ("tril", lambda: ta.tril(ta.tensor(X3)), np.tril(X3)),
    ("logsumexp", lambda: ta.logsumexp(ta.tensor(X3), dim=1),
     np.log(np.exp(X3.astype(np.float64)).sum(1))),
    ("argmax", lambda: ta.argmax(ta.tensor(X3), dim=0), X3.argmax(0)),
    ("argmin", lambda: ta.argmin(ta.tensor(X3)), X3.argmin()),
    ("chunk", lambda: ta.chunk(ta.tensor(X3), 2, dim=2)[1], X3[..., 2:]),
    ("gelu", lambda: ta.gelu(ta.tensor(X3), approximate="tanh"),
     0.5 * X3 * (1 + np.tanh(np.sqrt(2 / np.pi) * (X3 + 0.044715 * X3**3)))),
]


@pytest.mark.parametrize("name, compute, expected", MODULE_FUNCTIONS, ids=[m[0] for m in MODULE_FUNCTIONS])
def test_module_level_functions(name, compute, expected):
    out = compute()
    assert isinstance(out, ta.Tensor)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_methods_mirror_module_functions():
    t = ta.tensor(X3)
    pairs = [
        (t.exp(), ta.exp(t)), (t.clamp(min=0.0), ta.clamp(t, min=0.0)), (t.maximum(t * 2), ta.maximum(t, t * 2)),
        (t.reshape(6, 4), ta.reshape(t, (6, 4))), (t.view(-1), t.reshape(24)), (t.flatten(), ta.flatten(t)),
        (t.permute(2, 0, 1), ta.permute(t, (2, 0, 1))), (t.transpose(0, 1), ta.transpose(t, 0, 1)),
        (t.unsqueeze(1), ta.unsqueeze(t, 1)), (t.sum(-1), ta.sum(t, -1)), (t.matmul(t.mT), t @ t.mT),
        (t.masked_fill(t > 0, 1.0), ta.where(t > 0, 1.0, t)), (t.square(), t * t),
    ]
    for a, b in pairs:
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)
    with pytest.raises(TypeError, match="where: the condition must be a boolean tensor"):
        ta.where(t, t, 0.0)
