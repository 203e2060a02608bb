"""Tests of the fused functions in ``tinygrad_attn.functional`` (softmax, linear, losses, layer_norm, dropout,
embedding, scaled_dot_product_attention).

For each: first and second derivatives against finite differences (float64, tiny shapes drawn by
hypothesis, every option), properties that hold whatever the implementation, PyTorch parity for values and
gradients (skipped without torch), float32 kept float32, and clear errors. Second derivatives are checked
on the squared output, so that backward's dependence on its incoming gradient is exercised too.
"""

from __future__ import annotations

import math
import warnings

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_attn as ta
from tests.op_checks import examples
from tests.strategies import shapes_broadcastable_to
from tinygrad_attn import backend
from tinygrad_attn import functional as F

# ---- helpers -------------------------------------------------------------------------------------------------


def leaf(a: np.ndarray, device: str = "cpu", dtype: object = np.float64) -> ta.Tensor:
    return ta.tensor(np.asarray(a, dtype=dtype), device=device, requires_grad=True)


def const(a: object, device: str = "cpu") -> ta.Tensor:
    return ta.tensor(np.asarray(a), device=device)


def check_grads(fn, inputs: list) -> None:  # noqa: ANN001
    """gradcheck of fn, and gradgradcheck of fn squared (each float output squared)."""
    ta.gradcheck(fn, inputs)

    def squared(*xs: ta.Tensor) -> ta.Tensor:
        out = fn(*xs)
        return out * out

    ta.gradgradcheck(squared, inputs)


def seeded(fn, seed: int = 0):  # noqa: ANN001, ANN201
    """fn with the generator reseeded before each call: dropout draws the same mask every time."""

    def call(*xs: ta.Tensor) -> ta.Tensor:
        ta.manual_seed(seed)
        return fn(*xs)

    return call


def torch_or_skip():  # noqa: ANN201
    return pytest.importorskip("torch")


def grads_of(out: ta.Tensor, inputs: list[ta.Tensor], upstream: np.ndarray) -> list[np.ndarray]:
    out.backward(ta.tensor(upstream.astype(out.dtype)))
    return [t.grad.numpy() for t in inputs]


def torch_grads_of(out, inputs: list, upstream: np.ndarray) -> list[np.ndarray]:  # noqa: ANN001
    torch = torch_or_skip()
    out.backward(torch.tensor(upstream, dtype=out.dtype))
    return [t.grad.numpy() for t in inputs]


# ---- softmax and log_softmax -------------------------------------------------------------------------------------


@st.composite
def softmax_case(draw: st.DrawFn) -> tuple[np.ndarray, int]:
    """An array of 0 to 3 dims, sides 0 to 3 (empty dims included), and a dim of it (0 or -1 for a 0-d one)."""
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3))
    dim = draw(st.integers(-max(len(shape), 1), max(len(shape), 1) - 1))
    return np.random.default_rng(draw(st.integers(0, 2**16))).standard_normal(shape) * 2, dim


def reference_log_softmax(x: np.ndarray, dim: int) -> np.ndarray:
    if x.ndim == 0:
        return np.zeros(())
    if x.size == 0:
        return x.copy()
    shifted = x - x.max(dim, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(dim, keepdims=True))


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@settings(max_examples=examples())
@given(c=softmax_case())
def test_softmax_gradients_and_values(device: str, op: str, c: tuple[np.ndarray, int]) -> None:
    x, dim = c
    fn = getattr(F, op)
    got = fn(const(x, device), dim)
    want = reference_log_softmax(x, dim)
    np.testing.assert_allclose(got.numpy(), want if op == "log_softmax" else np.exp(want), rtol=1e-12, atol=1e-14)
    assert got.shape == x.shape
    check_grads(lambda t: fn(t, dim), [leaf(x, device)])


@pytest.mark.parametrize("dim", [0, -1])
def test_softmax_of_a_0d_tensor_is_one_and_log_softmax_zero(dim: int) -> None:
    """As PyTorch: a 0-d tensor is a row of one element."""
    for op, value in ((F.softmax, 1.0), (F.log_softmax, 0.0)):
        x = leaf(np.array(3.5))
        y = op(x, dim)
        assert y.shape == () and y.item() == value
        y.backward()
        assert x.grad.shape == () and x.grad.item() == 0.0
    with pytest.raises(IndexError, match="softmax: dim 1 is out of range"):
        F.softmax(ta.tensor(1.0), 1)


@pytest.mark.parametrize("shape", [(2, 0), (0, 3), (2, 0, 3)])
def test_softmax_of_empty_tensors_is_empty(shape: tuple[int, ...]) -> None:
    for op in (F.softmax, F.log_softmax):
        for dim in range(-len(shape), len(shape)):
            x = leaf(np.zeros(shape), dtype=np.float32)
            y = op(x, dim)
            assert y.shape == shape and y.dtype == np.float32
            y.sum().backward()
            assert x.grad.shape == shape


@pytest.mark.parametrize("shape, dim", [((), 0), ((), -1), ((2, 0), -1), ((2, 0), 0), ((0, 3), 1), ((2, 3), 0)])
def test_softmax_edge_cases_match_torch(shape: tuple[int, ...], dim: int) -> None:
    torch = torch_or_skip()
    x = np.random.default_rng(0).standard_normal(shape)
    for name in ("softmax", "log_softmax"):
        ours, theirs = leaf(x), torch.tensor(x, requires_grad=True)
        got, want = getattr(F, name)(ours, dim), getattr(torch.nn.functional, name)(theirs, dim)
        np.testing.assert_allclose(got.numpy(), want.detach().numpy(), rtol=1e-12, atol=1e-15)
        g = np.random.default_rng(1).standard_normal(shape)
        np.testing.assert_allclose(grads_of(got, [ours], g)[0], torch_grads_of(want, [theirs], g)[0],
                                   rtol=1e-12, atol=1e-15)


# ---- linear --------------------------------------------------------------------------------------------------


@settings(max_examples=examples())
@given(lead=st.lists(st.integers(1, 3), max_size=2), n_in=st.integers(1, 3), n_out=st.integers(1, 3),
       bias=st.booleans(), seed=st.integers(0, 2**16))
def test_linear_gradients(device: str, lead: list[int], n_in: int, n_out: int, bias: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x, w = leaf(rng.standard_normal((*lead, n_in)), device), leaf(rng.standard_normal((n_out, n_in)), device)
    inputs = [x, w] + ([leaf(rng.standard_normal(n_out), device)] if bias else [])
    check_grads(lambda *t: F.linear(*t), inputs)


def test_linear_matches_reference_and_torch() -> None:
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((5, 4)), rng.standard_normal(5)
    out = F.linear(const(x.astype(np.float32)), const(w.astype(np.float32)), const(b.astype(np.float32)))
    assert out.dtype == np.float32 and out.shape == (2, 3, 5)
    np.testing.assert_allclose(out.numpy(), x @ w.T + b, rtol=1e-5, atol=1e-5)
    torch = torch_or_skip()
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ax, aw, ab = leaf(x), leaf(w), leaf(b)
    g = rng.standard_normal((2, 3, 5))
    for got, want in zip(grads_of(F.linear(ax, aw, ab), [ax, aw, ab], g),
                         torch_grads_of(torch.nn.functional.linear(tx, tw, tb), [tx, tw, tb], g)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_linear_errors() -> None:
    with pytest.raises(ValueError, match=r"linear: input of shape \(2, 3\).*in_features=4"):
        F.linear(ta.zeros(2, 3), ta.zeros(5, 4))
    with pytest.raises(ValueError, match="bias must have shape"):
        F.linear(ta.zeros(2, 4), ta.zeros(5, 4), ta.zeros(4))
    with pytest.raises(TypeError, match="linear: input, weight and bias must share one dtype, got float32, float64"):
        F.linear(ta.zeros(2, 4), ta.zeros(5, 4, dtype=ta.float64))


def test_linear_weight_gradient_is_laid_out_like_the_weight() -> None:
    """dL/dW = G^T x comes out (out, in) and contiguous, so Adam works on contiguous arrays."""
    w = leaf(np.random.default_rng(0).standard_normal((5, 4)), dtype=np.float32)
    F.linear(ta.ones(3, 4), w).sum().backward()
    assert w.grad.shape == (5, 4) and w.grad.numpy().flags.c_contiguous
    np.testing.assert_allclose(w.grad.numpy(), np.full((5, 4), 3.0))


# ---- cross_entropy and nll_loss --------------------------------------------------------------------------------


@st.composite
def classification(draw: st.DrawFn, max_rows: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores (..., C), class indices (...) with some ignored (-100), and positive class weights (C,)."""
    lead = tuple(draw(st.lists(st.integers(1, 3), max_size=2).filter(lambda s: math.prod(s) <= max_rows)))
    n_classes = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    target = rng.integers(0, n_classes, lead)
    target[rng.random(lead) < 0.25] = -100
    target.flat[0] = rng.integers(0, n_classes)  # one target counts: "mean" of none is nan (tested on its own)
    return rng.standard_normal(lead + (n_classes,)) * 2, target, rng.random(n_classes) + 0.5


REDUCTIONS = ["mean", "sum", "none"]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@settings(max_examples=examples(0.5))
@given(data=classification())
def test_cross_entropy_gradients(device: str, reduction: str, label_smoothing: float, weighted: bool,
                                 data: tuple) -> None:
    x, t, w = data
    target, weight = const(t, device), const(w, device) if weighted else None
    check_grads(lambda x: F.cross_entropy(x, target, weight, reduction=reduction, label_smoothing=label_smoothing),
                [leaf(x, device)])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@settings(max_examples=examples(0.5))
@given(data=classification())
def test_nll_loss_gradients(device: str, reduction: str, weighted: bool, data: tuple) -> None:
    x, t, w = data
    target, weight = const(t, device), const(w, device) if weighted else None
    check_grads(lambda x: F.nll_loss(x, target, weight, reduction=reduction), [leaf(x, device)])


@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
def test_cross_entropy_double_backward_sees_the_upstream_gradient(label_smoothing: float) -> None:
    """The upstream gradient depends on x here, so double backward must differentiate backward's use of it."""
    rng = np.random.default_rng(1)
    target = const([0, 2, -100, 1])
    x = leaf(rng.standard_normal((4, 3)))
    ta.gradgradcheck(lambda x: F.cross_entropy(x, target, reduction="none", label_smoothing=label_smoothing)
                     * x.sum(-1), [x])
    ta.gradgradcheck(lambda x: F.nll_loss(x, target, reduction="none") * x.sum(-1), [x])


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_fast_and_differentiable_backward_agree(label_smoothing: float, reduction: str) -> None:
    """Backward applied as arrays (no create_graph) and recorded as a graph (create_graph): same numbers."""
    rng = np.random.default_rng(2)
    x = leaf(rng.standard_normal((6, 5)))
    t, w = const([0, 4, -100, 2, 2, 1]), const(rng.random(5) + 0.5)
    loss = F.cross_entropy(x, t, w, reduction=reduction, label_smoothing=label_smoothing)
    g = ta.tensor(rng.standard_normal(loss.shape))
    (fast,) = ta.grad(loss, x, g, retain_graph=True)
    (recorded,) = ta.grad(loss, x, g, create_graph=True)
    assert recorded.requires_grad
    np.testing.assert_allclose(fast.numpy(), recorded.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_cross_entropy_row_blocks_do_not_show(monkeypatch: pytest.MonkeyPatch, label_smoothing: float,
                                              weighted: bool) -> None:
    """On the CPU the rows go through in cache-sized blocks (backend.row_blocks): cut 50 rows into blocks of
    9 and the loss and both backward paths (the blocked one and the Tensor-op one) must not change."""
    rng = np.random.default_rng(4)
    x_np, t = rng.standard_normal((50, 7)) * 3, rng.integers(0, 7, 50)
    t[::6] = -100
    target, weight = const(t), const(rng.random(7) + 0.5) if weighted else None

    def loss_and_grads() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = leaf(x_np)
        loss = F.cross_entropy(x, target, weight, reduction="sum", label_smoothing=label_smoothing)
        (fast,) = ta.grad(loss, x, retain_graph=True)
        (recorded,) = ta.grad(loss, x, create_graph=True)
        return loss.numpy(), fast.numpy(), recorded.numpy()

    whole = loss_and_grads()
    monkeypatch.setattr(backend, "CPU_BLOCK_BYTES", 9 * 7 * 8)
    assert len(backend.row_blocks(50, 7 * 8, x_np)) == 6
    blocked = loss_and_grads()
    np.testing.assert_allclose(blocked[0], whole[0], rtol=1e-14)
    for got in blocked[1:]:
        np.testing.assert_allclose(got, whole[2], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@settings(max_examples=examples())
@given(data=classification(max_rows=12))
def test_cross_entropy_is_nll_of_log_softmax(reduction: str, data: tuple) -> None:
    x, t, w = data
    for weight in (None, const(w)):
        a, b = leaf(x), leaf(x)
        fused = F.cross_entropy(a, const(t), weight, reduction=reduction)
        composite = F.nll_loss(F.log_softmax(b, -1), const(t), weight, reduction=reduction)
        np.testing.assert_allclose(fused.numpy(), composite.numpy(), rtol=1e-12, atol=1e-12)
        if np.isfinite(fused.numpy()).all():
            g = np.ones(fused.shape)
            np.testing.assert_allclose(grads_of(fused, [a], g)[0], grads_of(composite, [b], g)[0], atol=1e-12)


def test_cross_entropy_reference_values() -> None:
    """Label smoothing mixes the one-hot target with the uniform distribution: -sum q log p, q = (1-e) onehot + e/C."""
    rng = np.random.default_rng(3)
    x, t, e = rng.standard_normal((4, 5)), np.array([1, 0, 4, 4]), 0.2
    logp = x - np.log(np.exp(x).sum(-1, keepdims=True))
    q = np.full((4, 5), e / 5)
    q[np.arange(4), t] += 1 - e
    got = F.cross_entropy(const(x), const(t), reduction="none", label_smoothing=e)
    np.testing.assert_allclose(got.numpy(), -(q * logp).sum(-1), rtol=1e-12)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_cross_entropy_is_stable_for_huge_logits(label_smoothing: float) -> None:
    x = leaf(np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 5e3]]), dtype=np.float32)
    loss = F.cross_entropy(x, const([0, 2]), reduction="none", label_smoothing=label_smoothing)
    assert loss.dtype == np.float32
    assert np.isfinite(loss.numpy()).all()
    loss.sum().backward()
    assert np.isfinite(x.grad.numpy()).all()
    if label_smoothing == 0:
        np.testing.assert_allclose(loss.numpy(), [0.0, 5e3], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(x.grad.numpy(), [[0, 0, 0], [0, 1, -1]], atol=1e-6)


def test_loss_of_an_all_ignored_batch_is_nan_for_mean_with_zero_gradient() -> None:
    """As PyTorch 2.x: nothing to average gives nan, but backward gives zeros (not nan)."""
    t = const([-100, -100])
    for fn in (lambda x: F.cross_entropy(x, t), lambda x: F.cross_entropy(x, t, label_smoothing=0.2),
               lambda x: F.nll_loss(x, t)):
        x = leaf(np.ones((2, 3)))
        loss = fn(x)
        assert np.isnan(loss.item())
        loss.backward()
        np.testing.assert_array_equal(x.grad.numpy(), np.zeros((2, 3)))
    assert F.cross_entropy(leaf(np.ones((2, 3))), t, reduction="sum").item() == 0


def test_ignore_index_rows_count_for_nothing() -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 3))
    t = np.array([0, 7, 2, 7, 1])
    a = leaf(x)
    loss = F.cross_entropy(a, const(t), ignore_index=7, label_smoothing=0.1)
    b = leaf(x[t != 7])
    want = F.cross_entropy(b, const(t[t != 7]), label_smoothing=0.1)
    np.testing.assert_allclose(loss.item(), want.item(), rtol=1e-12)
    loss.backward()
    want.backward()
    np.testing.assert_array_equal(a.grad.numpy()[t == 7], 0)
    np.testing.assert_allclose(a.grad.numpy()[t != 7], b.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.25])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_cross_entropy_and_nll_loss_match_torch(dtype: object, reduction: str, label_smoothing: float,
                                                weighted: bool) -> None:
    torch = torch_or_skip()
    tf = torch.nn.functional
    rng = np.random.default_rng(5)
    x, t, w = rng.standard_normal((7, 5)).astype(dtype) * 3, rng.integers(0, 5, 7), (rng.random(5) + 0.5).astype(dtype)
    t[[1, 4]] = -1
    g = rng.standard_normal(7 if reduction == "none" else ())
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)
    for ours, theirs, kw in ((F.cross_entropy, tf.cross_entropy, {"label_smoothing": label_smoothing}),
                             (F.nll_loss, tf.nll_loss, {})):
        a, tx = leaf(x, dtype=dtype), torch.tensor(x, requires_grad=True)
        got = ours(a, const(t), const(w) if weighted else None, ignore_index=-1, reduction=reduction, **kw)
        want = theirs(tx, torch.tensor(t), torch.tensor(w) if weighted else None, ignore_index=-1,
                      reduction=reduction, **kw)
        assert got.dtype == dtype
        np.testing.assert_allclose(got.numpy(), want.detach().numpy(), **tol)
        np.testing.assert_allclose(grads_of(got, [a], g)[0], torch_grads_of(want, [tx], g)[0], **tol)
        assert a.grad.dtype == dtype


def test_cross_entropy_classes_last_matches_torch_classes_in_dim_1() -> None:
    torch = torch_or_skip()
    rng = np.random.default_rng(6)
    x, t = rng.standard_normal((2, 3, 4)), rng.integers(0, 4, (2, 3))
    a = leaf(x)
    got = F.cross_entropy(a, const(t), reduction="none", label_smoothing=0.1)
    tx = torch.tensor(x, requires_grad=True)
    want = torch.nn.functional.cross_entropy(tx.permute(0, 2, 1), torch.tensor(t), reduction="none",
                                             label_smoothing=0.1)
    assert got.shape == (2, 3)
    np.testing.assert_allclose(got.numpy(), want.detach().numpy(), rtol=1e-12)
    g = rng.standard_normal((2, 3))
    np.testing.assert_allclose(grads_of(got, [a], g)[0], torch_grads_of(want, [tx], g)[0], rtol=1e-10, atol=1e-12)


def test_cross_entropy_errors() -> None:
    x = ta.zeros(2, 3, 4)
    with pytest.raises(ValueError, match=r"PyTorch's \(N, C, d1, ...\) layout.*permute\(0, 2, 1\)"):
        F.cross_entropy(x, ta.zeros(2, 4, dtype=ta.int64))
    with pytest.raises(ValueError, match=r"needs a target of shape \(2, 3\)"):
        F.cross_entropy(x, ta.zeros(5, dtype=ta.int64))
    with pytest.raises(IndexError, match="target 4 is out of bounds for 4 classes"):
        F.cross_entropy(x, const([[0, 1, 4], [0, 0, 0]]))
    with pytest.raises(IndexError, match="target -3 is out of bounds"):
        F.nll_loss(x, const([[0, 1, -3], [0, 0, 0]]))
    with pytest.raises(TypeError, match="class indices"):
        F.nll_loss(x, ta.zeros(2, 3))
    with pytest.raises(ValueError, match="reduction must be one of"):
        F.cross_entropy(x, ta.zeros(2, 3, dtype=ta.int64), reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        F.cross_entropy(x, ta.zeros(2, 3, dtype=ta.int64), label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"weight must be a tensor of shape \(4,\)"):
        F.cross_entropy(x, ta.zeros(2, 3, dtype=ta.int64), ta.ones(3))


# ---- cross_entropy with class-probability targets ----------------------------------------------------------------


def probabilities(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    q = rng.random(shape) + 0.1
    return q / q.sum(-1, keepdims=True)


def reference_soft_cross_entropy(x: np.ndarray, q: np.ndarray, w: np.ndarray | None, reduction: str,
                                 e: float) -> np.ndarray:
    """-sum_c w_c q_c log p_c per row, q smoothed towards the uniform; "mean" averages over the rows."""
    n_classes = x.shape[-1]
    logp = x - x.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    q = q * (1 - e) + e / n_classes
    loss = -(q * (1 if w is None else w) * logp).sum(-1)
    return loss if reduction == "none" else loss.sum() if reduction == "sum" else loss.mean()


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_cross_entropy_probability_targets_against_numpy(reduction: str, label_smoothing: float,
                                                         weighted: bool) -> None:
    rng = np.random.default_rng(20)
    x, q, w = rng.standard_normal((2, 3, 4)) * 2, probabilities(rng, (2, 3, 4)), rng.random(4) + 0.5
    weight = const(w) if weighted else None
    got = F.cross_entropy(const(x), const(q), weight, reduction=reduction, label_smoothing=label_smoothing)
    want = reference_soft_cross_entropy(x, q, w if weighted else None, reduction, label_smoothing)
    assert got.shape == want.shape
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)
    # differentiable in the input and in the target, first and second derivatives
    check_grads(lambda a, b: F.cross_entropy(a, b, weight, reduction=reduction, label_smoothing=label_smoothing),
                [leaf(x[0]), leaf(q[0])])


def test_cross_entropy_one_hot_probabilities_equal_class_indices() -> None:
    rng = np.random.default_rng(21)
    x, t, w = rng.standard_normal((6, 5)), rng.integers(0, 5, 6), rng.random(5) + 0.5
    one_hot = np.eye(5)[t]
    for reduction in ("none", "sum"):  # "mean" differs by design: the total class weight vs the row count
        a, b = leaf(x), leaf(x)
        by_index = F.cross_entropy(a, const(t), const(w), reduction=reduction, label_smoothing=0.2)
        by_probability = F.cross_entropy(b, const(one_hot), const(w), reduction=reduction, label_smoothing=0.2)
        np.testing.assert_allclose(by_probability.numpy(), by_index.numpy(), rtol=1e-12)
        g = np.ones(by_index.shape)
        np.testing.assert_allclose(grads_of(by_probability, [b], g)[0], grads_of(by_index, [a], g)[0], rtol=1e-12,
                                   atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.25])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_cross_entropy_probability_targets_match_torch(dtype: object, reduction: str, label_smoothing: float,
                                                       weighted: bool) -> None:
    """PyTorch puts the classes in dim 1 of a (N, C, d1) input; ours go last, (N, d1, C)."""
    torch = torch_or_skip()
    rng = np.random.default_rng(22)
    x, q = (rng.standard_normal((3, 2, 5)) * 3).astype(dtype), probabilities(rng, (3, 2, 5)).astype(dtype)
    w = (rng.random(5) + 0.5).astype(dtype)
    a, b = leaf(x, dtype=dtype), leaf(q, dtype=dtype)
    got = F.cross_entropy(a, b, const(w) if weighted else None, reduction=reduction, label_smoothing=label_smoothing)
    tx, tq = torch.tensor(x, requires_grad=True), torch.tensor(q, requires_grad=True)
    want = torch.nn.functional.cross_entropy(tx.permute(0, 2, 1), tq.permute(0, 2, 1),
                                             torch.tensor(w) if weighted else None, reduction=reduction,
                                             label_smoothing=label_smoothing)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)
    assert got.dtype == dtype and got.shape == tuple(want.shape)
    np.testing.assert_allclose(got.numpy(), want.detach().numpy(), **tol)
    g = rng.standard_normal(got.shape)
    for ours, theirs in zip(grads_of(got, [a, b], g), torch_grads_of(want, [tx, tq], g)):
        assert ours.dtype == dtype
        np.testing.assert_allclose(ours, theirs, **tol)


def test_cross_entropy_probability_target_errors() -> None:
    x = ta.zeros(2, 3)
    with pytest.raises(ValueError, match=r"class-probability target .* must have the input's shape \(2, 3\)"):
        F.cross_entropy(x, ta.zeros(2))
    with pytest.raises(TypeError, match="target is float64 but the input is float32"):
        F.cross_entropy(x, ta.zeros(2, 3, dtype=ta.float64))
    with pytest.raises(ValueError, match=r"weight must be a tensor of shape \(3,\)"):
        F.cross_entropy(x, ta.zeros(2, 3), ta.ones(2))
    with pytest.raises(TypeError, match="class indices .* or class probabilities"):
        F.cross_entropy(x, ta.zeros(2, dtype=ta.bool))


# ---- mse_loss ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@settings(max_examples=examples(0.5))
@given(shape=st.lists(st.integers(1, 3), max_size=3), seed=st.integers(0, 2**16))
def test_mse_loss_gradients_and_torch(device: str, reduction: str, shape: list[int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal(shape), rng.standard_normal(shape)
    check_grads(lambda a, b: F.mse_loss(a, b, reduction=reduction), [leaf(x, device), leaf(y, device)])
    want = (x - y) ** 2
    want = want if reduction == "none" else want.sum() if reduction == "sum" else want.mean()
    np.testing.assert_allclose(F.mse_loss(const(x, device), const(y, device), reduction=reduction).numpy(), want,
                               rtol=1e-12)


def test_mse_loss_matches_torch_and_warns_on_broadcast() -> None:
    torch = torch_or_skip()
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal((3, 4)).astype(np.float32)
    a, tx = leaf(x, dtype=np.float32), torch.tensor(x, requires_grad=True)
    got, want = F.mse_loss(a, const(y)), torch.nn.functional.mse_loss(tx, torch.tensor(y))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got.numpy(), want.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(grads_of(got, [a], np.ones(()))[0], torch_grads_of(want, [tx], np.ones(()))[0],
                               rtol=1e-6)
    with pytest.warns(UserWarning, match="broadcast"):
        F.mse_loss(ta.zeros(3, 4), ta.zeros(4))


# ---- layer_norm -------------------------------------------------------------------------------------------------


@settings(max_examples=examples())
@given(lead=st.lists(st.integers(1, 3), max_size=2), norm=st.lists(st.integers(2, 3), min_size=1, max_size=2),
       affine=st.sampled_from(["none", "weight", "bias", "both"]), seed=st.integers(0, 2**16))
def test_layer_norm_gradients(device: str, lead: list[int], norm: list[int], affine: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = leaf(rng.standard_normal((*lead, *norm)), device)
    w = leaf(rng.standard_normal(norm), device) if affine in ("weight", "both") else None
    b = leaf(rng.standard_normal(norm), device) if affine in ("bias", "both") else None
    params = [t for t in (w, b) if t is not None]

    def fn(x: ta.Tensor, *p: ta.Tensor) -> ta.Tensor:
        it = iter(p)
        return F.layer_norm(x, norm, next(it) if w is not None else None, next(it) if b is not None else None)

    check_grads(fn, [x, *params])


@settings(max_examples=examples())
@given(shape=st.tuples(st.integers(1, 4), st.integers(2, 16)), seed=st.integers(0, 2**16),
       scale=st.floats(0.1, 100), shift=st.floats(-100, 100))
def test_layer_norm_rows_have_mean_0_and_variance_1(shape: tuple[int, int], seed: int, scale: float,
                                                    shift: float) -> None:
    x = np.random.default_rng(seed).standard_normal(shape) * scale + shift
    y = F.layer_norm(const(x), shape[-1], eps=0.0).numpy()
    np.testing.assert_allclose(y.mean(-1), 0, atol=1e-9)
    np.testing.assert_allclose(y.var(-1), 1, rtol=1e-9)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_layer_norm_matches_torch(dtype: object) -> None:
    torch = torch_or_skip()
    rng = np.random.default_rng(8)
    x, w, b = (rng.standard_normal(s).astype(dtype) for s in ((2, 3, 4, 5), (4, 5), (4, 5)))
    ours = [leaf(a, dtype=dtype) for a in (x, w, b)]
    theirs = [torch.tensor(a, requires_grad=True) for a in (x, w, b)]
    got = F.layer_norm(ours[0], (4, 5), ours[1], ours[2], eps=1e-3)
    want = torch.nn.functional.layer_norm(theirs[0], (4, 5), theirs[1], theirs[2], eps=1e-3)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5)
    assert got.dtype == dtype
    np.testing.assert_allclose(got.numpy(), want.detach().numpy(), **tol)
    g = rng.standard_normal(x.shape)
    for a, t in zip(grads_of(got, ours, g), torch_grads_of(want, theirs, g)):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, t, **tol)


def test_layer_norm_errors() -> None:
    with pytest.raises(ValueError, match=r"normalized_shape \(3,\) must match the last dims.*\(2, 4\)"):
        F.layer_norm(ta.zeros(2, 4), 3)
    with pytest.raises(ValueError, match=r"weight must have shape \(4,\)"):
        F.layer_norm(ta.zeros(2, 4), 4, ta.ones(3))


# ---- dropout ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.2, 0.5, 0.9])
@settings(max_examples=examples(0.5))
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=2), seed=st.integers(0, 2**16))
def test_dropout_gradients(device: str, p: float, shape: list[int], seed: int) -> None:
    x = leaf(np.random.default_rng(seed).standard_normal(shape), device)
    check_grads(seeded(lambda x: F.dropout(x, p), seed), [x])


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_keeps_the_expectation_and_drops_a_share_p(p: float) -> None:
    ta.manual_seed(0)
    n = 200_000
    y = F.dropout(ta.ones(n), p).numpy()
    dropped = (y == 0).mean()
    assert abs(dropped - p) < 5 * math.sqrt(p * (1 - p) / n)
    assert abs(y.mean() - 1) < 5 * math.sqrt(p / (1 - p) / n)
    np.testing.assert_allclose(y[y != 0], 1 / (1 - p), rtol=1e-6)


def test_dropout_gradient_is_the_mask_scaled() -> None:
    ta.manual_seed(1)
    x = leaf(np.ones((50, 40)), dtype=np.float32)
    y = F.dropout(x, 0.3)
    y.sum().backward()
    assert x.grad.dtype == y.dtype == np.float32
    np.testing.assert_allclose(x.grad.numpy(), y.numpy(), rtol=1e-6)  # x = 1, so y is the scaled mask


def test_dropout_is_seeded() -> None:
    x = ta.ones(100)
    ta.manual_seed(42)
    a = F.dropout(x, 0.5).numpy()
    b = F.dropout(x, 0.5).numpy()
    ta.manual_seed(42)
    c = F.dropout(x, 0.5).numpy()
    np.testing.assert_array_equal(a, c)
    assert not np.array_equal(a, b)


def test_dropout_off_in_eval_and_for_p_0_all_off_for_p_1() -> None:
    x = leaf(np.random.default_rng(0).standard_normal((3, 4)), dtype=np.float32)
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0) is x
    y = F.dropout(x, 1.0)
    np.testing.assert_array_equal(y.numpy(), 0)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), 0)
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.dropout(x, 1.5)


# ---- embedding --------------------------------------------------------------------------------------------------


@settings(max_examples=examples())
@given(ids_shape=st.lists(st.integers(1, 3), min_size=1, max_size=2), rows=st.integers(1, 4), dim=st.integers(1, 3),
       padding=st.booleans(), seed=st.integers(0, 2**16))
def test_embedding_gradients(device: str, ids_shape: list[int], rows: int, dim: int, padding: bool,
                             seed: int) -> None:
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, rows, ids_shape)
    pad = int(ids.flat[0]) if padding else None
    # the padding row gets no gradient by definition, so hide its lookups from the finite differences
    visible = const((ids != pad)[..., None].astype(np.float64), device)
    check_grads(lambda w: F.embedding(const(ids, device), w, padding_idx=pad) * visible,
                [leaf(rng.standard_normal((rows, dim)), device)])


def test_embedding_accumulates_repeated_ids_and_skips_padding() -> None:
    rng = np.random.default_rng(9)
    ids = np.minimum(rng.zipf(1.3, (40, 100)), 500) - 1  # many repeats
    w = leaf(rng.standard_normal((500, 16)), dtype=np.float32)
    y = F.embedding(const(ids), w, padding_idx=-500)  # -500 is row 0
    np.testing.assert_array_equal(y.numpy(), w.numpy()[ids])
    g = rng.standard_normal((40, 100, 16)).astype(np.float32)
    y.backward(ta.tensor(g))
    want = np.zeros((500, 16))
    np.add.at(want, ids, g.astype(np.float64))
    want[0] = 0
    assert w.grad.dtype == np.float32
    np.testing.assert_allclose(w.grad.numpy(), want, rtol=1e-4, atol=1e-4)


def test_embedding_matches_torch() -> None:
    torch = torch_or_skip()
    rng = np.random.default_rng(10)
    ids, table = rng.integers(0, 6, (3, 4)), rng.standard_normal((6, 5))
    w, tw = leaf(table), torch.tensor(table, requires_grad=True)
    got = F.embedding(const(ids), w, padding_idx=2)
    want = torch.nn.functional.embedding(torch.tensor(ids), tw, padding_idx=2)
    np.testing.assert_array_equal(got.numpy(), want.detach().numpy())
    g = rng.standard_normal((3, 4, 5))
    np.testing.assert_allclose(grads_of(got, [w], g)[0], torch_grads_of(want, [tw], g)[0], rtol=1e-12, atol=1e-12)


def test_embedding_errors() -> None:
    w = ta.zeros(5, 2)
    with pytest.raises(IndexError, match=r"id 5 is out of range for a table of 5 rows"):
        F.embedding(const([1, 5]), w)
    with pytest.raises(IndexError, match=r"id -1 is out of range"):
        F.embedding(const([-1, 2]), w)
    with pytest.raises(TypeError, match="integer tensor"):
        F.embedding(ta.zeros(3), w)
    with pytest.raises(ValueError, match="padding_idx 7 is out of range"):
        F.embedding(const([1]), w, padding_idx=7)


# ---- scaled_dot_product_attention ----------------------------------------------------------------------------------


@st.composite
def attention_case(draw: st.DrawFn) -> dict:
    """q, k, v with broadcastable batch dims, and one masking option: none, bool, float (learnable), causal."""
    batch_q = tuple(draw(st.lists(st.integers(1, 2), max_size=2)))
    batch_kv = draw(shapes_broadcastable_to(batch_q))
    n_q, n_k, e, ev = (draw(st.integers(1, 3)) for _ in range(4))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    kind = draw(st.sampled_from(["none", "bool", "float", "causal"]))
    mask_shape = draw(shapes_broadcastable_to(np.broadcast_shapes(batch_q, batch_kv) + (n_q, n_k)))
    mask = None
    if kind == "bool":
        mask = rng.random(mask_shape) < 0.7
    elif kind == "float":
        mask = rng.standard_normal(mask_shape)
    return dict(q=rng.standard_normal(batch_q + (n_q, e)), k=rng.standard_normal(batch_kv + (n_k, e)),
                v=rng.standard_normal(batch_kv + (n_k, ev)), mask=mask, causal=kind == "causal",
                dropout_p=draw(st.sampled_from([0.0, 0.0, 0.4])), scale=draw(st.sampled_from([None, 0.7])))


@settings(max_examples=examples(2))
@given(c=attention_case())
def test_attention_gradients(device: str, c: dict) -> None:
    tensors = [leaf(c[n], device) for n in ("q", "k", "v")]
    if c["mask"] is not None and c["mask"].dtype == bool:
        bool_mask = const(c["mask"], device)
        fn = seeded(lambda q, k, v: F.scaled_dot_product_attention(
            q, k, v, attn_mask=bool_mask, dropout_p=c["dropout_p"], scale=c["scale"]))
    else:
        if c["mask"] is not None:  # a float mask is an additive bias: it gets a gradient too
            tensors.append(leaf(c["mask"], device))
        fn = seeded(lambda q, k, v, *m: F.scaled_dot_product_attention(
            q, k, v, attn_mask=m[0] if m else None, dropout_p=c["dropout_p"], is_causal=c["causal"], scale=c["scale"]))
    check_grads(fn, tensors)


@settings(max_examples=examples())
@given(c=attention_case())
def test_attention_weights_path_gradients_and_values(device: str, c: dict) -> None:
    """need_weights=True goes through attention_weights + matmul: same output, differentiable weights."""
    mask = None if c["mask"] is None else const(c["mask"], device)
    options = dict(attn_mask=mask, dropout_p=c["dropout_p"], is_causal=c["causal"], scale=c["scale"])
    q, k, v = (leaf(c[n], device) for n in ("q", "k", "v"))
    ta.manual_seed(0)
    fused = F.scaled_dot_product_attention(q, k, v, **options)
    ta.manual_seed(0)
    out, weights = F.scaled_dot_product_attention(q, k, v, need_weights=True, **options)
    np.testing.assert_allclose(out.numpy(), fused.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose((weights @ v).numpy(), out.numpy(), rtol=1e-12, atol=1e-12)
    check_grads(seeded(lambda q, k: F.attention_weights(q, k, **options)), [q, k])


def reference_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, allowed: np.ndarray | None = None,
                        bias: np.ndarray | None = None, scale: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """NumPy attention; rows that may attend nowhere give zeros."""
    s = q @ np.swapaxes(k, -1, -2) * (1 / math.sqrt(q.shape[-1]) if scale is None else scale)
    if bias is not None:
        s = s + bias
    if allowed is not None:
        s = np.where(allowed, s, -np.inf)
    m = s.max(-1, keepdims=True)
    p = np.exp(s - np.where(np.isfinite(m), m, 0))
    total = p.sum(-1, keepdims=True)
    p = p / np.where(total == 0, 1, total)
    return p @ v, p


def equation_1(q: ta.Tensor, k: ta.Tensor, v: ta.Tensor, allowed: ta.Tensor | None = None) -> ta.Tensor:
    """Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V, equation (1) of the paper, in plain Tensor ops (the
    softmax spelled out, so that it shares no code with the fused op); ``allowed`` masks scores to -inf."""
    scores = q @ k.mT / math.sqrt(k.shape[-1])
    if allowed is not None:
        scores = scores.masked_fill(allowed.logical_not(), float("-inf"))
    e = (scores - scores.max(-1, keepdim=True).values.detach()).exp()
    return e / e.sum(-1, keepdim=True) @ v


@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
def test_fused_attention_is_equation_1(masked: bool) -> None:
    """The fused op that training runs equals the paper's formula written out: outputs, gradients of Q, K and V,
    and (recorded backward) their second derivatives."""
    rng = np.random.default_rng(16)
    arrays = [rng.standard_normal(s) for s in ((2, 3, 4, 8), (2, 3, 6, 8), (2, 3, 6, 5))]
    allowed = const(np.tril(np.ones((4, 6), dtype=bool), 1)) if masked else None
    fused_in, formula_in = [leaf(a) for a in arrays], [leaf(a) for a in arrays]
    fused = F.scaled_dot_product_attention(*fused_in, attn_mask=allowed)
    formula = equation_1(*formula_in, allowed)
    np.testing.assert_allclose(fused.numpy(), formula.numpy(), rtol=1e-12, atol=1e-14)
    g = ta.tensor(rng.standard_normal(fused.shape))
    fused_grads = ta.grad(fused, fused_in, g, create_graph=True)
    formula_grads = ta.grad(formula, formula_in, g, create_graph=True)
    for a, b in zip(fused_grads, formula_grads):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=1e-14)
    second_fused = ta.grad(sum((d * d).sum() for d in fused_grads), fused_in)
    second_formula = ta.grad(sum((d * d).sum() for d in formula_grads), formula_in)
    for a, b in zip(second_fused, second_formula):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-12)


def test_attention_matches_reference_with_masks_and_broadcasting() -> None:
    rng = np.random.default_rng(11)
    q, k, v = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((1, 3, 6, 5)), rng.standard_normal((2, 1, 6, 2))
    allowed = rng.random((2, 1, 4, 6)) < 0.6
    got = F.scaled_dot_product_attention(const(q), const(k), const(v), attn_mask=const(allowed))
    np.testing.assert_allclose(got.numpy(), reference_attention(q, k, v, allowed)[0], rtol=1e-12, atol=1e-12)
    bias = rng.standard_normal((4, 6))
    got = F.scaled_dot_product_attention(const(q), const(k), const(v), attn_mask=const(bias), scale=0.3)
    np.testing.assert_allclose(got.numpy(), reference_attention(q, k, v, bias=bias, scale=0.3)[0], rtol=1e-12)
    causal = np.tril(np.ones((4, 6), dtype=bool))
    got = F.scaled_dot_product_attention(const(q), const(k), const(v), is_causal=True)
    np.testing.assert_allclose(got.numpy(), reference_attention(q, k, v, causal)[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["bool", "float", "causal"])
@settings(max_examples=examples())
@given(seed=st.integers(0, 2**16))
def test_masked_keys_and_values_cannot_change_the_output(kind: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    q, k, v = rng.standard_normal((2, 4, 3)), rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 5, 2))
    allowed = np.tril(np.ones((4, 5), dtype=bool)) if kind == "causal" else rng.random((2, 4, 5)) < 0.5
    allowed[..., 0] = True  # every query may attend somewhere
    kwargs = {"causal": dict(is_causal=True), "bool": dict(attn_mask=const(allowed)),
              "float": dict(attn_mask=const(np.where(allowed, rng.standard_normal(allowed.shape), -np.inf)))}[kind]
    before = F.scaled_dot_product_attention(const(q), const(k), const(v), **kwargs).numpy()
    # for each query: change the keys and values it may not see (by a lot); its output row must not move
    k2, v2 = k + rng.standard_normal(k.shape) * 10, v + rng.standard_normal(v.shape) * 10
    for b in range(2):
        for i in range(4):
            seen = np.broadcast_to(allowed, (2, 4, 5))[b, i]
            k3, v3 = k.copy(), v.copy()
            k3[b, ~seen], v3[b, ~seen] = k2[b, ~seen], v2[b, ~seen]
            after = F.scaled_dot_product_attention(const(q), const(k3), const(v3), **kwargs).numpy()
            np.testing.assert_allclose(after[b, i], before[b, i], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["bool", "float"])
def test_fully_masked_rows_give_zeros_not_nan(kind: str) -> None:
    rng = np.random.default_rng(12)
    q, k, v = (leaf(rng.standard_normal(s)) for s in ((3, 4), (5, 4), (5, 2)))
    allowed = rng.random((3, 5)) < 0.6
    allowed[1] = False
    allowed[[0, 2], 0] = True
    mask = const(allowed) if kind == "bool" else leaf(np.where(allowed, 0.0, -np.inf))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    np.testing.assert_array_equal(out.numpy()[1], 0)
    np.testing.assert_allclose(out.numpy(), reference_attention(*(t.numpy() for t in (q, k, v)), allowed)[0],
                               rtol=1e-12, atol=1e-12)
    out.backward(ta.tensor(rng.standard_normal((3, 2))))
    for t in (q, k, v) + ((mask,) if kind == "float" else ()):
        assert np.isfinite(t.grad.numpy()).all()
    np.testing.assert_array_equal(q.grad.numpy()[1], 0)
    weights = F.attention_weights(q, k, attn_mask=const(allowed))
    np.testing.assert_array_equal(weights.numpy()[1], 0)
    np.testing.assert_allclose(weights.numpy()[[0, 2]].sum(-1), 1, rtol=1e-12)
    allowed_t = const(allowed)  # and the second derivatives stay finite and right
    check_grads(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=allowed_t),
                [leaf(t.numpy()) for t in (q, k, v)])


@pytest.mark.parametrize("n_queries, n_keys", [(3, 0), (0, 3), (0, 0)])
def test_attention_with_no_queries_or_no_keys(n_queries: int, n_keys: int) -> None:
    """Empty sequences work as in PyTorch: no keys gives zeros (a softmax over nothing attends nowhere)."""
    q, k, v = leaf(np.ones((2, n_queries, 4))), leaf(np.ones((2, n_keys, 4))), leaf(np.ones((2, n_keys, 5)))
    out = F.scaled_dot_product_attention(q, k, v, is_causal=n_queries == n_keys)
    assert out.shape == (2, n_queries, 5)
    np.testing.assert_array_equal(out.numpy(), 0)
    out.backward(ta.tensor(np.ones(out.shape)))
    for t in (q, k, v):
        assert t.grad.shape == t.shape and not t.grad.numpy().any()
    assert F.attention_weights(q, k).shape == (2, n_queries, n_keys)


def test_attention_dropout_is_applied_to_the_probabilities_and_seeded() -> None:
    rng = np.random.default_rng(13)
    q, k, v = rng.standard_normal((2, 6, 4)), rng.standard_normal((2, 7, 4)), rng.standard_normal((2, 7, 3))
    p = 0.3
    ta.manual_seed(5)
    got = F.scaled_dot_product_attention(const(q), const(k), const(v), dropout_p=p).numpy()
    ta.manual_seed(5)
    again = F.scaled_dot_product_attention(const(q), const(k), const(v), dropout_p=p).numpy()
    np.testing.assert_array_equal(got, again)
    ta.manual_seed(5)  # the same draw as F.dropout of the probabilities
    dropped = F.dropout(const(reference_attention(q, k, v)[1]), p).numpy()
    np.testing.assert_allclose(got, dropped @ v, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("kind", ["none", "bool", "float", "causal"])
def test_attention_matches_torch(dtype: object, kind: str) -> None:
    torch = torch_or_skip()
    rng = np.random.default_rng(14)
    q, k, v = (rng.standard_normal(s).astype(dtype) for s in ((2, 3, 4, 8), (2, 3, 6, 8), (2, 3, 6, 5)))
    mask = {"none": None, "causal": None, "bool": rng.random((4, 6)) < 0.7,
            "float": rng.standard_normal((3, 4, 6)).astype(dtype)}[kind]
    if kind == "bool":
        mask[:, 0] = True
    ours = [leaf(a, dtype=dtype) for a in (q, k, v)] + ([leaf(mask, dtype=dtype)] if kind == "float" else [])
    theirs = [torch.tensor(a, requires_grad=True) for a in (q, k, v)] + (
        [torch.tensor(mask, requires_grad=True)] if kind == "float" else [])
    our_mask = ours[3] if kind == "float" else const(mask) if kind == "bool" else None
    their_mask = theirs[3] if kind == "float" else torch.tensor(mask) if kind == "bool" else None
    got = F.scaled_dot_product_attention(*ours[:3], attn_mask=our_mask, is_causal=kind == "causal", scale=0.5)
    want = torch.nn.functional.scaled_dot_product_attention(*theirs[:3], attn_mask=their_mask,
                                                            is_causal=kind == "causal", scale=0.5)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5)
    assert got.dtype == dtype
    np.testing.assert_allclose(got.numpy(), want.detach().numpy(), **tol)
    g = rng.standard_normal(got.shape)
    for a, t in zip(grads_of(got, ours, g), torch_grads_of(want, theirs, g)):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, t, **tol)


def test_attention_errors() -> None:
    q, k, v = ta.zeros(2, 3, 4), ta.zeros(2, 5, 4), ta.zeros(2, 5, 6)
    with pytest.raises(ValueError, match="either attn_mask or is_causal"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=ta.ones(3, 5, dtype=ta.bool), is_causal=True)
    with pytest.raises(ValueError, match="same E"):
        F.scaled_dot_product_attention(q, ta.zeros(2, 5, 3), v)
    with pytest.raises(ValueError, match="same S"):
        F.scaled_dot_product_attention(q, k, ta.zeros(2, 4, 6))
    with pytest.raises(ValueError, match="attn_mask"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=ta.ones(3, 3, dtype=ta.bool))
    with pytest.raises(ValueError, match="must broadcast to the scores"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=ta.ones(7, 2, 3, 5, dtype=ta.bool))
    with pytest.raises(TypeError, match="bool tensor"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=ta.ones(3, 5, dtype=ta.int64))
    with pytest.raises(TypeError, match="share one floating dtype"):
        F.scaled_dot_product_attention(q, k.double(), v)


def test_fused_functions_keep_float32() -> None:
    rng = np.random.default_rng(15)

    def f32(*shape: int) -> ta.Tensor:
        return ta.tensor(rng.standard_normal(shape).astype(np.float32), requires_grad=True)

    x = f32(3, 4)
    outs = [F.cross_entropy(x, const([0, 1, 2])), F.cross_entropy(x, const([0, 1, 2]), ta.ones(4), label_smoothing=0.1),
            F.nll_loss(x, const([0, 1, 2])), F.mse_loss(x, f32(3, 4)), F.layer_norm(x, 4, f32(4), f32(4)),
            F.dropout(x, 0.5), F.embedding(const([1, 2]), f32(5, 4)), F.linear(x, f32(2, 4), f32(2)),
            F.scaled_dot_product_attention(f32(2, 3, 4), f32(2, 5, 4), f32(2, 5, 2), is_causal=True, dropout_p=0.2),
            F.attention_weights(f32(2, 3, 4), f32(2, 5, 4), attn_mask=ta.zeros(3, 5))]
    for out in outs:
        assert out.dtype == np.float32, out
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out.sum().backward()
    assert x.grad.dtype == np.float32
