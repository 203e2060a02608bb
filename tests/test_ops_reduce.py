"""Reductions (tinygrad_attn/ops/reduce.py) and softmax/log_softmax (softmax.py): forward vs NumPy, first and
second derivatives, no mutation, PyTorch parity, on shapes that include 0-d tensors (dim 0 or -1) and empty dims;
then ties, numerical stability, softmax identities and errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_attn as ta
from tests.op_checks import Case, case, examples, op_tests
from tests.strategies import arrays, dim, dims, distinct_arrays, reals, shapes


def method(name: str):
    """``x.<name>(**options)``: the same call works on our tensors and on PyTorch's."""
    return lambda x, **kw: getattr(x, name)(**kw)


@st.composite
def reduction(draw: st.DrawFn, values=arrays, single_dim: bool = False, allow_none: bool = True,
              min_dims: int = 0, **options: st.SearchStrategy) -> Case:
    """An array (``values(shape)``), a ``dim`` valid for it, ``keepdim``, and any other options drawn."""
    x = draw(values(shapes(min_dims=min_dims)))
    d = draw(dim(x.ndim) if single_dim else dims(x.ndim, allow_none=allow_none))
    return case(x, dim=d, keepdim=draw(st.booleans()), **{k: draw(s) for k, s in options.items()})


def _axis(x, dim):
    """NumPy's ``axis`` for a PyTorch ``dim``: a 0-d tensor's dim 0 / -1 reduces over nothing."""
    return () if x.ndim == 0 and dim is not None else dim


def _np(fn):
    """A NumPy reduction called with PyTorch's keywords (``dim``, ``keepdim``, ``correction``)."""
    def ref(x, dim, keepdim, **kw):
        if "correction" in kw:
            kw["ddof"] = kw.pop("correction")
        with warnings.catch_warnings():  # the mean of nothing and a variance of one value are nan: no warning
            warnings.simplefilter("ignore", RuntimeWarning)
            return fn(x, axis=_axis(x, dim), keepdims=keepdim, **kw)
    return ref


def _logsumexp(x, dim, keepdim):
    axis = _axis(x, dim)
    m = np.max(x, axis=axis, keepdims=True, initial=-np.inf)  # an empty dim: m = -inf, and the result -inf
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        out = m + np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))
    return out if keepdim else np.squeeze(out, axis=axis)


def _softmax(x, dim):
    if x.ndim == 0:  # a row of one
        return _softmax(x[None], 0)[0]
    e = np.exp(x - np.max(x, axis=dim, keepdims=True, initial=-np.inf))
    return e / e.sum(axis=dim, keepdims=True)


def _log_softmax(x, dim):
    return x - _logsumexp(x, dim, keepdim=True)


def _reduces_an_empty_dim(c: Case) -> bool:
    """Whether the case reduces over a dim of size 0 (a max or min of nothing: an error, tested below)."""
    x, dim = c.arrays[0], c.kwargs["dim"]
    if x.ndim == 0:
        return False
    dims = range(x.ndim) if dim is None else [dim] if isinstance(dim, int) else dim
    return any(x.shape[d] == 0 for d in dims)


# ---- sum, mean, var, std -----------------------------------------------------------------------------------------

TestSum = op_tests(method("sum"), _np(np.sum), reduction(), torch_fn=method("sum"))
TestMean = op_tests(method("mean"), _np(np.mean), reduction(), torch_fn=method("mean"))


# distinct values: two or more of them have a positive variance, so std is differentiable there; one value (a 0-d
# tensor too) has variance 0 (nan with correction=1) and none nan, as in PyTorch
_var_inputs = reduction(distinct_arrays, correction=st.sampled_from([0, 1]))
TestVar = op_tests(method("var"), _np(np.var), _var_inputs, torch_fn=method("var"), tol32=(1e-4, 1e-5))
TestStd = op_tests(method("std"), _np(np.std), _var_inputs, torch_fn=method("std"), tol32=(1e-4, 1e-5))


@pytest.mark.parametrize("name", ["var", "std"])
def test_var_std_unbiased_flag_and_defaults(name):
    x = np.array([[1.0, 2.0, 4.0], [0.5, -1.0, 3.0]])
    t = ta.tensor(x)
    ref = getattr(np, name)
    np.testing.assert_allclose(getattr(t, name)().numpy(), ref(x, ddof=1), rtol=1e-6)  # unbiased by default
    np.testing.assert_allclose(getattr(t, name)(1, unbiased=False).numpy(), ref(x, axis=1, ddof=0), rtol=1e-6)
    np.testing.assert_allclose(getattr(t, name)(dim=0, correction=0).numpy(), ref(x, axis=0), rtol=1e-6)
    np.testing.assert_allclose(getattr(ta, name)(t, 1, 0, True).numpy(), ref(x, axis=1, keepdims=True), rtol=1e-6)


def test_std_of_constant_values_has_zero_gradient(device):
    x = ta.tensor([[2.0, 2.0, 2.0], [1.0, 2.0, 4.0]], device=device, requires_grad=True)
    y = x.std(1)
    y.backward(ta.tensor([1.0, 0.0], device=device))
    np.testing.assert_array_equal(y.numpy()[0], 0.0)
    np.testing.assert_array_equal(x.grad.numpy(), np.zeros((2, 3)))  # as PyTorch: a subgradient, not nan
    ta.gradgradcheck(lambda t: t.std(1), [ta.tensor([[1.0, 2.0, 4.0]], requires_grad=True)])


def test_var_of_too_few_elements_is_nan():
    assert np.isnan(ta.tensor([3.0]).var().item())  # one element, unbiased: 0 / 0, as in PyTorch
    assert np.isnan(ta.tensor([3.0]).std().item())


# ---- max, min, amax, amin, argmax, argmin --------------------------------------------------------------------------

def _np_arg(fn):
    """``np.argmax``/``np.argmin`` with PyTorch's keywords: a 0-d tensor's only element has index 0."""
    def ref(x, dim, keepdim):
        return np.int64(0) if x.ndim == 0 else fn(x, axis=dim, keepdims=keepdim)
    return ref


def _max_dim(x, dim, keepdim):
    return _np(np.max)(x, dim, keepdim), _np_arg(np.argmax)(x, dim, keepdim)


def _min_dim(x, dim, keepdim):
    return _np(np.min)(x, dim, keepdim), _np_arg(np.argmin)(x, dim, keepdim)


_one_dim = reduction(distinct_arrays, single_dim=True).filter(lambda c: not _reduces_an_empty_dim(c))
TestMaxDim = op_tests(method("max"), _max_dim, _one_dim, torch_fn=method("max"))
TestMinDim = op_tests(method("min"), _min_dim, _one_dim, torch_fn=method("min"))
_nonempty = distinct_arrays(shapes(empty=False))
TestMaxAll = op_tests(method("max"), np.max, st.builds(case, _nonempty), torch_fn=method("max"))
TestMinAll = op_tests(method("min"), np.min, st.builds(case, _nonempty), torch_fn=method("min"))


def _torch_amax(name):
    return lambda x, dim, keepdim: getattr(x, name)(dim=() if dim is None else dim, keepdim=keepdim)


_amax_inputs = reduction(distinct_arrays).filter(lambda c: not _reduces_an_empty_dim(c))
TestAmax = op_tests(method("amax"), _np(np.max), _amax_inputs, torch_fn=_torch_amax("amax"))
TestAmin = op_tests(method("amin"), _np(np.min), _amax_inputs, torch_fn=_torch_amax("amin"))

# one dim, or None: the index into the flattened tensor
_arg_inputs = reduction(distinct_arrays, single_dim=True).flatmap(
    lambda c: st.sampled_from([c, case(c.arrays[0], dim=None, keepdim=c.kwargs["keepdim"])])).filter(
    lambda c: not _reduces_an_empty_dim(c))
TestArgmax = op_tests(method("argmax"), _np_arg(np.argmax), _arg_inputs, grad=False, torch_fn=method("argmax"))
TestArgmin = op_tests(method("argmin"), _np_arg(np.argmin), _arg_inputs, grad=False, torch_fn=method("argmin"))


def test_argmax_has_no_gradient_and_is_int64():
    x = ta.tensor([[1.0, 3.0], [4.0, 2.0]], requires_grad=True)
    i = x.argmax(1)
    assert i.dtype == ta.int64 and not i.requires_grad and i.grad_fn is None
    np.testing.assert_array_equal(i.numpy(), [1, 0])


def test_functions_match_methods():
    x = ta.tensor([[1.0, 3.0, -2.0], [4.0, 2.0, 0.5]])
    for fn in ("sum", "mean", "var", "std", "amax", "amin", "logsumexp"):
        np.testing.assert_array_equal(getattr(ta, fn)(x, 1).numpy(), getattr(x, fn)(1).numpy())
    np.testing.assert_array_equal(ta.max(x, 0).values.numpy(), x.max(0)[0].numpy())
    np.testing.assert_array_equal(ta.min(x, 0).indices.numpy(), x.min(0)[1].numpy())
    np.testing.assert_array_equal(ta.argmax(x).numpy(), 3)
    np.testing.assert_array_equal(x.sum(axis=1, keepdims=True).numpy(), x.sum(1, True).numpy())  # NumPy spellings


# ties: the gradient is split evenly between the elements that attain the max (amax, and max/min without dim,
# exactly as PyTorch). max(dim)/min(dim) split it too, where PyTorch sends it all to the returned index.

@pytest.mark.parametrize("reduce_", [lambda x: x.amax(), lambda x: x.max(), lambda x: x.amax(dim=(0, 1)),
                                     lambda x: x.max(dim=1).values.sum(), lambda x: -x.neg().amin(1).sum(),
                                     lambda x: -(-x).min(dim=1)[0].sum()])
def test_max_ties_split_the_gradient_evenly(device, reduce_):
    x = ta.tensor([[3.0, 1.0, 3.0, 3.0]], device=device, requires_grad=True)
    reduce_(x).backward()
    np.testing.assert_allclose(x.grad.numpy(), [[1 / 3, 0.0, 1 / 3, 1 / 3]], rtol=1e-6)


@settings(max_examples=examples(0.5))
@given(x=arrays(shapes(min_dims=1, empty=False), st.integers(-2, 2).map(float)), keepdim=st.booleans())
def test_amax_ties_match_torch(x, keepdim):
    torch = pytest.importorskip("torch")
    ours = ta.tensor(x, requires_grad=True)
    theirs = torch.tensor(x, requires_grad=True)
    ours.amax(-1, keepdim).sum().backward()
    theirs.amax(-1, keepdim).sum().backward()
    np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-12)
    ours.grad, theirs.grad = None, None
    ours.max().backward()
    theirs.max().backward()
    np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-12)


# ---- logsumexp, softmax, log_softmax ---------------------------------------------------------------------------------

TestLogsumexp = op_tests(method("logsumexp"), _logsumexp, reduction(allow_none=False), torch_fn=method("logsumexp"))


@st.composite
def _softmax_inputs(draw: st.DrawFn) -> Case:
    x = draw(arrays(shapes(), reals(-5, 5)))
    return case(x, dim=draw(dim(x.ndim)))


TestSoftmax = op_tests(method("softmax"), _softmax, _softmax_inputs(), torch_fn=method("softmax"))
TestLogSoftmax = op_tests(method("log_softmax"), _log_softmax, _softmax_inputs(), torch_fn=method("log_softmax"))


def test_functional_softmax_is_the_method():
    x = ta.tensor([[1.0, 2.0, 3.0]])
    np.testing.assert_array_equal(ta.functional.softmax(x, dim=-1).numpy(), x.softmax(-1).numpy())
    np.testing.assert_array_equal(ta.F.log_softmax(x, 1).numpy(), x.log_softmax().numpy())  # default dim -1


@settings(max_examples=examples())
@given(data=st.data())
def test_softmax_identities(data):
    x = data.draw(arrays(shapes(min_dims=1, empty=False), reals(-20, 20)))
    d = data.draw(dim(x.ndim))
    shift = data.draw(reals(-50, 50))
    t = ta.tensor(x)
    p = t.softmax(d).numpy()
    np.testing.assert_allclose(p.sum(axis=d), 1.0, rtol=1e-12)  # a distribution along dim
    assert (p >= 0).all()
    np.testing.assert_allclose(t.log_softmax(d).numpy(), np.log(p), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose((t + shift).softmax(d).numpy(), p, rtol=1e-9, atol=1e-15)  # shift invariant
    np.testing.assert_allclose((t + shift).log_softmax(d).numpy(), np.log(p), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("dtype", [ta.float32, ta.float64], ids=["float32", "float64"])
def test_log_softmax_and_softmax_are_stable_for_huge_logits(device, dtype):
    x = ta.tensor([[1e4, 0.0, -1e4], [1e4, 1e4 - 1.0, 1e4 - 2.0]], dtype=dtype, device=device, requires_grad=True)
    out = x.log_softmax(-1)
    expected = np.array([[0.0, -1e4, -2e4], [0.0, -1.0, -2.0]]) - np.log([[1.0], [1 + np.exp(-1) + np.exp(-2)]])
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6)
    p = x.softmax(-1)
    assert np.isfinite(p.numpy()).all() and p.dtype == dtype
    np.testing.assert_allclose(p.numpy(), np.exp(expected), rtol=1e-6, atol=1e-30)
    (out[:, 0].sum() + p[:, 1].sum()).backward()
    assert np.isfinite(x.grad.numpy()).all()


@pytest.mark.parametrize("dtype", [ta.float32, ta.float64], ids=["float32", "float64"])
def test_logsumexp_of_huge_values_is_finite(device, dtype):
    big = float(np.finfo(dtype).max) / 2
    x = ta.tensor([[big, big], [-big, -big], [big, -big]], dtype=dtype, device=device, requires_grad=True)
    out = x.logsumexp(1)
    assert out.dtype == dtype
    np.testing.assert_allclose(out.numpy(), [big, -big, big], rtol=1e-6)  # + log 2 is below the rounding there
    out.sum().backward()
    assert np.isfinite(x.grad.numpy()).all()


@pytest.mark.parametrize("dtype", [ta.float32, ta.float64], ids=["float32", "float64"])
def test_logsumexp_of_large_values_and_its_gradient(device, dtype):
    x = ta.tensor([[1e4, 1e4], [-1e4, -1e4], [1e4, -1e4]], dtype=dtype, device=device, requires_grad=True)
    out = x.logsumexp(1)
    np.testing.assert_allclose(out.numpy(), [1e4 + np.log(2), -1e4 + np.log(2), 1e4], rtol=1e-6)
    out.sum().backward()
    rtol = 1e-12 if dtype == ta.float64 else 2e-3  # float32 keeps 1e4 + log 2 to about 1e-3
    np.testing.assert_allclose(x.grad.numpy(), [[0.5, 0.5], [0.5, 0.5], [1.0, 0.0]], rtol=rtol)


@pytest.mark.filterwarnings("ignore:divide by zero encountered in log")
def test_logsumexp_of_a_row_of_minus_infinity_is_minus_infinity():
    out = ta.tensor([[-np.inf, -np.inf], [0.0, -np.inf]]).logsumexp(1)
    np.testing.assert_array_equal(out.numpy(), [-np.inf, 0.0])


@pytest.mark.parametrize("name", ["sum", "mean", "var", "std", "amax", "logsumexp", "softmax", "log_softmax"])
def test_reductions_keep_float32(device, name):
    x = ta.tensor([[0.5, 1.0, 2.0], [3.0, -1.0, 0.25]], device=device, requires_grad=True)
    y = getattr(x, name)(1)
    assert y.dtype == ta.float32
    y.sum().backward()
    assert x.grad.dtype == ta.float32


def test_sum_of_booleans_counts():
    out = ta.tensor([[True, False, True], [True, True, True]]).sum(1)
    assert out.dtype == ta.int64
    np.testing.assert_array_equal(out.numpy(), [2, 3])


# ---- errors ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["sum", "mean", "var", "std", "amax", "amin", "logsumexp", "softmax", "log_softmax",
                                  "argmax", "argmin", "max", "min"])
def test_dim_out_of_range_names_the_op(name):
    with pytest.raises(IndexError, match=rf"{name}.*dim 2 is out of range.*2 dimensions"):
        getattr(ta.ones(2, 3), name)(2)


def test_repeated_dim_and_bad_inputs():
    with pytest.raises(ValueError, match="sum: dim .* twice"):
        ta.ones(2, 3).sum((1, -1))
    with pytest.raises(TypeError, match="mean.*int64"):
        ta.tensor([1, 2]).mean()
    with pytest.raises(RuntimeError, match=r"amax.*empty.*\(0, 3\)"):
        ta.ones(0, 3).amax()
    with pytest.raises(IndexError, match="argmax.*empty"):
        ta.ones(0).argmax()


# ---- 0-d tensors and empty dims, written out by hand (the generated tests above draw them too) ----------------------

@pytest.mark.parametrize("name", ["sum", "mean", "amax", "amin", "logsumexp"])
@pytest.mark.parametrize("d", [0, -1, (0,), (-1,)])
def test_reducing_a_0d_tensor_over_dim_0_returns_the_value(device, name, d):
    x = ta.tensor(2.5, dtype=ta.float64, device=device, requires_grad=True)
    for keepdim in (False, True):
        out = getattr(x, name)(d, keepdim=keepdim)
        assert out.shape == () and out.item() == 2.5
    out.backward()
    assert x.grad.item() == 1.0


@pytest.mark.parametrize("d", [0, -1])
def test_max_min_argmax_var_std_softmax_of_a_0d_tensor(d):
    x = ta.tensor(2.5, dtype=ta.float64)
    values, indices = x.max(d)
    assert (values.item(), indices.item(), indices.dtype) == (2.5, 0, ta.int64)
    assert x.min(d, keepdim=True).indices.item() == 0 and x.argmax(d).shape == () and x.argmin(d).item() == 0
    assert np.isnan(x.var(d).item()) and x.var(d, correction=0).item() == 0.0 and x.std(d, correction=0).item() == 0.0
    assert x.softmax(d).item() == 1.0 and x.log_softmax(d).item() == 0.0
    with pytest.raises(IndexError, match="sum: dim 1 is out of range"):
        x.sum(1)


def test_reductions_over_empty_dims_match_pytorch_by_hand():
    x = ta.zeros(2, 0, dtype=ta.float64, requires_grad=True)
    np.testing.assert_array_equal(x.sum(1).numpy(), [0.0, 0.0])  # a sum of nothing is 0
    assert x.sum(0).shape == (0,) and x.sum().item() == 0.0
    assert np.isnan(x.mean(1).numpy()).all() and np.isnan(x.var(1).numpy()).all()
    np.testing.assert_array_equal(x.logsumexp(1).numpy(), [-np.inf, -np.inf])  # log of a sum of nothing
    assert x.logsumexp(0).shape == (0,) and x.logsumexp((0, 1)).item() == -np.inf
    assert x.amax(0).shape == (0,) and x.argmax(0).shape == (0,) and x.max(0).indices.shape == (0,)
    assert x.softmax(1).shape == (2, 0) and x.log_softmax(0).shape == (2, 0)
    (x.sum(1).sum() + x.logsumexp(1).sum()).backward()
    assert x.grad.shape == (2, 0)


@pytest.mark.parametrize("name", ["sum", "mean", "var", "std", "amax", "amin", "logsumexp"])
def test_an_empty_tuple_of_dims_reduces_every_dim(name):
    data = np.array([[1.0, 3.0, -2.0], [4.0, 2.0, 0.5]])
    out = getattr(ta.tensor(data), name)(())
    assert out.shape == ()
    np.testing.assert_allclose(out.item(), getattr(ta.tensor(data.reshape(-1)), name)(0).item(), rtol=1e-6)
    if name != "logsumexp":  # PyTorch's logsumexp fails on dim=()
        torch = pytest.importorskip("torch")
        np.testing.assert_allclose(out.item(), getattr(torch.tensor(data), name)(()).item(), rtol=1e-12)


_EMPTY_MAX = [(name, d) for name in ("amax", "amin", "max", "min", "argmax", "argmin") for d in (1, -1, None)]


@pytest.mark.parametrize("name, d", _EMPTY_MAX)
def test_max_over_an_empty_dim_is_a_clear_error(name, d):
    error = RuntimeError if d is None and name in ("amax", "amin", "max", "min") else IndexError  # PyTorch's types
    call = (lambda t: getattr(t, name)()) if d is None else (lambda t: getattr(t, name)(d))
    with pytest.raises(error, match=rf"{name}: .*empty.*\(2, 0\).*no maximum or minimum"):
        call(ta.zeros(2, 0))


@pytest.mark.parametrize("name, d", _EMPTY_MAX)
def test_max_over_an_empty_dim_raises_as_pytorch(name, d):
    torch = pytest.importorskip("torch")
    call = (lambda t: getattr(t, name)()) if d is None else (lambda t: getattr(t, name)(d))
    with pytest.raises(Exception) as theirs:
        call(torch.zeros(2, 0))
    with pytest.raises(Exception) as ours:
        call(ta.zeros(2, 0))
    assert ours.type is theirs.type
