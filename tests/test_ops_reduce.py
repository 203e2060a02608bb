"""Reductions (tinygrad_attn/ops/reduce.py) and softmax/log_softmax (functional.py): forward vs NumPy, first and
second derivatives, no mutation, PyTorch parity; then ties, numerical stability, softmax identities and errors."""

from __future__ import annotations

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


def _logsumexp(x, dim, keepdim):
    m = np.max(x, axis=dim, keepdims=True)
    out = m + np.log(np.sum(np.exp(x - m), axis=dim, keepdims=True))
    return out if keepdim else np.squeeze(out, axis=dim)


def _softmax(x, dim):
    e = np.exp(x - x.max(axis=dim, keepdims=True))
    return e / e.sum(axis=dim, keepdims=True)


# ---- sum, mean, var, std -----------------------------------------------------------------------------------------

TestSum = op_tests(method("sum"), lambda x, dim, keepdim: np.sum(x, axis=dim, keepdims=keepdim), reduction(),
                   torch_fn=method("sum"))
TestMean = op_tests(method("mean"), lambda x, dim, keepdim: np.mean(x, axis=dim, keepdims=keepdim), reduction(),
                    torch_fn=method("mean"))


def _count(shape, dim):
    d = range(len(shape)) if dim is None else [dim] if isinstance(dim, int) else dim
    return int(np.prod([shape[i] for i in d]))


# at least two distinct values: the variance is positive, so std is differentiable (zero variance: see below)
_var_inputs = reduction(distinct_arrays, correction=st.sampled_from([0, 1])).filter(
    lambda c: _count(c.arrays[0].shape, c.kwargs["dim"]) >= 2)
TestVar = op_tests(method("var"), lambda x, dim, keepdim, correction: np.var(x, axis=dim, ddof=correction,
                                                                            keepdims=keepdim),
                   _var_inputs, torch_fn=method("var"), tol32=(1e-4, 1e-5))
TestStd = op_tests(method("std"), lambda x, dim, keepdim, correction: np.std(x, axis=dim, ddof=correction,
                                                                            keepdims=keepdim),
                   _var_inputs, torch_fn=method("std"), tol32=(1e-4, 1e-5))


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

def _max_dim(x, dim, keepdim):
    return np.max(x, axis=dim, keepdims=keepdim), np.argmax(x, axis=dim, keepdims=keepdim)


def _min_dim(x, dim, keepdim):
    return np.min(x, axis=dim, keepdims=keepdim), np.argmin(x, axis=dim, keepdims=keepdim)


_one_dim = reduction(distinct_arrays, single_dim=True, min_dims=1)
TestMaxDim = op_tests(method("max"), _max_dim, _one_dim, torch_fn=method("max"))
TestMinDim = op_tests(method("min"), _min_dim, _one_dim, torch_fn=method("min"))
TestMaxAll = op_tests(method("max"), np.max, st.builds(case, distinct_arrays(shapes())), torch_fn=method("max"))
TestMinAll = op_tests(method("min"), np.min, st.builds(case, distinct_arrays(shapes())), torch_fn=method("min"))


def _torch_amax(name):
    return lambda x, dim, keepdim: getattr(x, name)(dim=() if dim is None else dim, keepdim=keepdim)


TestAmax = op_tests(method("amax"), lambda x, dim, keepdim: np.max(x, axis=dim, keepdims=keepdim),
                    reduction(distinct_arrays), torch_fn=_torch_amax("amax"))
TestAmin = op_tests(method("amin"), lambda x, dim, keepdim: np.min(x, axis=dim, keepdims=keepdim),
                    reduction(distinct_arrays), torch_fn=_torch_amax("amin"))

# one dim, or None: the index into the flattened tensor
_arg_inputs = reduction(distinct_arrays, single_dim=True, min_dims=1).flatmap(
    lambda c: st.sampled_from([c, case(c.arrays[0], dim=None, keepdim=c.kwargs["keepdim"])]))
TestArgmax = op_tests(method("argmax"), lambda x, dim, keepdim: np.argmax(x, axis=dim, keepdims=keepdim),
                      _arg_inputs, grad=False, torch_fn=method("argmax"))
TestArgmin = op_tests(method("argmin"), lambda x, dim, keepdim: np.argmin(x, axis=dim, keepdims=keepdim),
                      _arg_inputs, grad=False, torch_fn=method("argmin"))


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
@given(x=arrays(shapes(min_dims=1), st.integers(-2, 2).map(float)), keepdim=st.booleans())
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

TestLogsumexp = op_tests(method("logsumexp"), _logsumexp, reduction(allow_none=False, min_dims=1),
                         torch_fn=method("logsumexp"))

@st.composite
def _softmax_inputs(draw: st.DrawFn) -> Case:
    x = draw(arrays(shapes(min_dims=1), reals(-5, 5)))
    return case(x, dim=draw(dim(x.ndim)))


TestSoftmax = op_tests(method("softmax"), _softmax, _softmax_inputs(), torch_fn=method("softmax"))
TestLogSoftmax = op_tests(method("log_softmax"), lambda x, dim: np.log(_softmax(x, dim)), _softmax_inputs(),
                          torch_fn=method("log_softmax"))


def test_functional_softmax_is_the_method():
    x = ta.tensor([[1.0, 2.0, 3.0]])
    np.testing.assert_array_equal(ta.functional.softmax(x, dim=-1).numpy(), x.softmax(-1).numpy())
    np.testing.assert_array_equal(ta.F.log_softmax(x, 1).numpy(), x.log_softmax().numpy())  # default dim -1


@settings(max_examples=examples())
@given(data=st.data())
def test_softmax_identities(data):
    x = data.draw(arrays(shapes(min_dims=1), reals(-20, 20)))
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
    with pytest.raises(RuntimeError, match="argmax.*empty"):
        ta.ones(0).argmax()
