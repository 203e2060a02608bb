"""clip_grad_norm_ / clip_grad_value_ against NumPy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_attn as ta
from tinygrad_attn import nn
from tinygrad_attn.nn.utils import clip_grad_norm_, clip_grad_value_


def _params(grads: list[np.ndarray], dtype=ta.float32) -> list[nn.Parameter]:
    params = []
    for g in grads:
        p = nn.Parameter(ta.zeros(g.shape, dtype=dtype))
        p.grad = ta.tensor(g, dtype=dtype)
        params.append(p)
    return params


def _numpy_norm(grads: list[np.ndarray], p: float) -> float:
    flat = np.concatenate([g.ravel() for g in grads]).astype(np.float64)
    return float(np.abs(flat).max()) if p == math.inf else float((np.abs(flat) ** p).sum() ** (1 / p))


grad_lists = st.lists(st.tuples(st.integers(1, 4), st.integers(1, 5)), min_size=1, max_size=4).flatmap(
    lambda shapes: st.tuples(*[st.builds(lambda seed, s=s: np.random.default_rng(seed).standard_normal(s) * 3,
                                         st.integers(0, 2**16)) for s in shapes]))


@given(grads=grad_lists, max_norm=st.floats(0.1, 20.0), norm_type=st.sampled_from([1.0, 2.0, 3.0, math.inf]))
def test_clip_grad_norm_matches_numpy(grads, max_norm, norm_type):
    grads = [g.astype(np.float32) for g in grads]
    params = _params(grads)
    handles = [p.grad for p in params]
    total = clip_grad_norm_(params, max_norm, norm_type=norm_type)
    expected = _numpy_norm(grads, norm_type)
    assert total.dtype == ta.float32 and total.shape == ()
    assert total.item() == pytest.approx(expected, rel=1e-5)
    coef = min(1.0, max_norm / (expected + 1e-6))
    for p, g, h in zip(params, grads, handles):
        assert p.grad is h  # in place
        np.testing.assert_allclose(p.grad.numpy(), g * coef, rtol=1e-5, atol=1e-7)
    if coef < 1:
        assert _numpy_norm([p.grad.numpy() for p in params], norm_type) == pytest.approx(max_norm, rel=1e-4)


def test_clip_grad_norm_module_parameters_and_string_inf():
    ta.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    (model(ta.randn(16, 4)) * 100).sum().backward()
    before = [p.grad.numpy().copy() for p in model.parameters()]
    total = ta.nn.utils.clip_grad_norm_(model.parameters(), 1.0, norm_type="inf")
    assert total.item() == pytest.approx(max(np.abs(b).max() for b in before), rel=1e-6)
    assert max(np.abs(p.grad.numpy()).max() for p in model.parameters()) == pytest.approx(1.0, rel=1e-5)


def test_no_clipping_below_max_norm_leaves_gradients_bit_identical():
    params = _params([np.array([0.3, -0.4], np.float32)])
    version = params[0].grad._version.value
    assert clip_grad_norm_(params, 1.0).item() == pytest.approx(0.5)
    np.testing.assert_array_equal(params[0].grad.numpy(), np.array([0.3, -0.4], np.float32))
    assert params[0].grad._version.value == version


def test_clip_grad_norm_skips_missing_grads_and_accepts_one_tensor():
    a, b = _params([np.array([3.0, 4.0])])[0], nn.Parameter(ta.ones(2))
    assert clip_grad_norm_([a, b], 1.0).item() == pytest.approx(5.0)
    np.testing.assert_allclose(a.grad.numpy(), [0.6, 0.8], rtol=1e-5)
    c = _params([np.array([6.0, 8.0])])[0]
    assert clip_grad_norm_(c, 5.0).item() == pytest.approx(10.0)
    np.testing.assert_allclose(c.grad.numpy(), [3.0, 4.0], rtol=1e-5)
    assert clip_grad_norm_([b], 1.0).item() == 0.0


def test_float64_stays_float64():
    params = _params([np.array([3.0, 4.0])], dtype=ta.float64)
    assert clip_grad_norm_(params, 1.0).dtype == ta.float64 and params[0].grad.dtype == ta.float64


@pytest.mark.filterwarnings("ignore:invalid value encountered")
def test_non_finite_norm():
    params = _params([np.array([1.0, np.inf], np.float32)])
    with pytest.raises(RuntimeError, match="non-finite"):
        clip_grad_norm_(params, 1.0, error_if_nonfinite=True)
    assert math.isinf(clip_grad_norm_(params, 1.0).item())  # without the check, scaled anyway (as PyTorch)
    with pytest.raises(ValueError, match="norm_type"):
        clip_grad_norm_(params, 1.0, norm_type=0)


def test_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal(s).astype(np.float32) for s in [(3, 4), (5,), (2, 2, 2)]]
    for norm_type in (2.0, 1.0, math.inf):
        params = _params(grads)
        tparams = [torch.zeros(g.shape, requires_grad=True) for g in grads]
        for tp, g in zip(tparams, grads):
            tp.grad = torch.tensor(g)
        ours = clip_grad_norm_(params, 0.5, norm_type)
        theirs = torch.nn.utils.clip_grad_norm_(tparams, 0.5, norm_type)
        assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)
        for p, tp in zip(params, tparams):
            np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), rtol=1e-6, atol=1e-7)


@given(grads=grad_lists, clip=st.floats(0.0, 5.0))
def test_clip_grad_value_matches_numpy(grads, clip):
    params = _params(grads)
    clip_grad_value_(params, clip)
    for p, g in zip(params, grads):
        np.testing.assert_array_equal(p.grad.numpy(), np.clip(g.astype(np.float32), -clip, clip))


def test_clip_grad_value_rejects_negative():
    with pytest.raises(ValueError, match="non-negative"):
        clip_grad_value_(_params([np.ones(2)]), -1.0)
