"""Linear, Embedding, LayerNorm, Dropout, activations and losses: shapes, modes, gradients, PyTorch parity."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_attn as ta
from tinygrad_attn import nn

from .parity import check_parity, functional_call

lead_shapes = st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple)


def _rand(*shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# ---- Linear ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(4,), (2, 4), (2, 3, 4)])
def test_linear_shapes_and_values(shape):
    lin = nn.Linear(4, 3)
    x = _rand(*shape, dtype=np.float32)
    y = lin(ta.tensor(x))
    assert y.shape == shape[:-1] + (3,) and y.dtype == ta.float32
    np.testing.assert_allclose(y.numpy(), x @ lin.weight.numpy().T + lin.bias.numpy(), rtol=1e-5, atol=1e-6)
    assert nn.Linear(4, 3, bias=False)(ta.tensor(x)).shape == shape[:-1] + (3,)


def test_linear_wrong_input_names_the_layer():
    with pytest.raises(ValueError, match=r"Linear\(in_features=4.*\(2, 5\)"):
        nn.Linear(4, 3)(ta.ones(2, 5))


@given(lead=lead_shapes, n_in=st.integers(1, 3), n_out=st.integers(1, 3), bias=st.booleans())
def test_linear_gradcheck(lead, n_in, n_out, bias):
    lin = nn.Linear(n_in, n_out, bias=bias).double()
    params = dict(lin.named_parameters())
    names = list(params)

    def fn(x, *ps):
        return functional_call(lin, dict(zip(names, ps)), x)

    x = ta.tensor(_rand(*lead, n_in), requires_grad=True)
    ta.gradcheck(fn, [x, *[ta.tensor(p.numpy(), requires_grad=True) for p in params.values()]])


def test_linear_parity_with_torch():
    torch = pytest.importorskip("torch")
    for bias in (True, False):
        ours, theirs = nn.Linear(5, 3, bias=bias), torch.nn.Linear(5, 3, bias=bias)
        check_parity(ours, theirs, lambda x, m=ours: m(x), lambda x, m=theirs: m(x),
                     {"x": _rand(2, 4, 5, dtype=np.float32)})


# ---- Embedding -----------------------------------------------------------------------------------------------


def test_embedding_lookup_shapes_and_padding_gradient():
    emb = nn.Embedding(6, 3, padding_idx=0)
    ids = ta.tensor(np.array([[0, 2, 2], [5, 0, 1]]))
    out = emb(ids)
    assert out.shape == (2, 3, 3)
    np.testing.assert_array_equal(out.numpy(), emb.weight.numpy()[ids.numpy()])
    assert not out.numpy()[0, 0].any()
    out.sum().backward()
    grad = emb.weight.grad.numpy()
    assert not grad[0].any()  # the padding row never learns
    np.testing.assert_array_equal(grad[:, 0], [0, 1, 2, 0, 0, 1])  # repeated ids accumulate


def test_embedding_from_pretrained_and_errors():
    table = ta.tensor(_rand(4, 2, dtype=np.float32))
    emb = nn.Embedding.from_pretrained(table)
    assert not emb.weight.requires_grad and not np.shares_memory(emb.weight.data, table.data)
    np.testing.assert_array_equal(emb(ta.tensor([3])).numpy(), table.numpy()[[3]])
    assert nn.Embedding.from_pretrained(table, freeze=False).weight.requires_grad
    with pytest.raises(ValueError, match="padding_idx"):
        nn.Embedding(4, 2, padding_idx=4)
    with pytest.raises(IndexError, match="out of range"):
        emb(ta.tensor([4]))


@given(n=st.integers(2, 5), d=st.integers(1, 3), ids=st.lists(st.integers(0, 4), min_size=1, max_size=4),
       pad=st.booleans())
def test_embedding_gradcheck(n, d, ids, pad):
    emb = nn.Embedding(n, d, padding_idx=0 if pad else None).double()
    idx = ta.tensor(np.array(ids) % n)
    w = ta.tensor(emb.weight.numpy(), requires_grad=True)
    ta.gradcheck(lambda w: functional_call(emb, {"weight": w}, idx) if not pad else
                 functional_call(emb, {"weight": w}, idx) * ta.tensor((np.array(ids) % n != 0)[:, None] * 1.0), [w])


def test_embedding_parity_with_torch():
    torch = pytest.importorskip("torch")
    ours, theirs = nn.Embedding(7, 4, padding_idx=2), torch.nn.Embedding(7, 4, padding_idx=2)
    ids = np.array([[1, 2, 6], [2, 2, 0]])
    check_parity(ours, theirs, lambda ids: ours(ids), lambda ids: theirs(ids), {"ids": ids})


# ---- LayerNorm -----------------------------------------------------------------------------------------------


def test_layer_norm_normalises():
    ln = nn.LayerNorm(6)
    y = ln(ta.tensor(_rand(3, 4, 6, dtype=np.float32) * 5 + 2)).numpy()
    np.testing.assert_allclose(y.mean(-1), 0, atol=1e-5)
    np.testing.assert_allclose(y.std(-1), 1, atol=1e-3)
    assert nn.LayerNorm(6, elementwise_affine=False).weight is None
    assert [n for n, _ in nn.LayerNorm(6, bias=False).named_parameters()] == ["weight"]
    with pytest.raises(ValueError, match="normalized_shape"):
        ln(ta.ones(2, 5))


@given(lead=lead_shapes, normalized=st.lists(st.integers(1, 3), min_size=1, max_size=2).map(tuple),
       affine=st.booleans(), bias=st.booleans())
def test_layer_norm_gradcheck(lead, normalized, affine, bias):
    ln = nn.LayerNorm(normalized, elementwise_affine=affine, bias=bias).double()
    names = [n for n, _ in ln.named_parameters()]
    rng = np.random.default_rng(len(lead) + len(normalized))
    inputs = [ta.tensor(rng.standard_normal(lead + normalized), requires_grad=True)]
    inputs += [ta.tensor(rng.standard_normal(normalized), requires_grad=True) for _ in names]
    ta.gradcheck(lambda x, *ps: functional_call(ln, dict(zip(names, ps)), x), inputs)


@pytest.mark.parametrize("shape, kwargs", [(8, {}), ((3, 8), {"eps": 1e-3}), (8, {"bias": False}),
                                           (8, {"elementwise_affine": False})])
def test_layer_norm_parity_with_torch(shape, kwargs):
    torch = pytest.importorskip("torch")
    ours, theirs = nn.LayerNorm(shape, **kwargs), torch.nn.LayerNorm(shape, **kwargs)
    for p in ours.parameters():  # move away from the ones/zeros start so the affine part is tested
        p.data[...] = _rand(*p.shape, seed=p.ndim, dtype=np.float32)
    check_parity(ours, theirs, lambda x: ours(x), lambda x: theirs(x), {"x": _rand(2, 3, 8, dtype=np.float32) * 3})


# ---- Dropout -------------------------------------------------------------------------------------------------------


def test_dropout_train_and_eval():
    ta.manual_seed(0)
    drop = nn.Dropout(0.25)
    x = ta.ones(200, 100)
    y = drop(x).numpy()
    kept = y != 0
    assert kept.mean() == pytest.approx(0.75, abs=0.01)
    np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)  # survivors are scaled so E[y] = x
    drop.eval()
    assert drop(x) is x or np.array_equal(drop(x).numpy(), x.numpy())
    drop.train()
    assert (drop(x).numpy() == 0).any()
    assert not nn.Dropout(1.0)(x).numpy().any()
    np.testing.assert_array_equal(nn.Dropout(0.0)(x).numpy(), x.numpy())


def test_dropout_gradient_uses_the_same_mask():
    drop = nn.Dropout(0.5)
    x = ta.ones(50, 20, requires_grad=True)
    y = drop(x)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), y.numpy())  # d(sum y)/dx = mask / (1 - p) = y for x = 1


def test_dropout_rejects_bad_p():
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(1.5)


# ---- activations ----------------------------------------------------------------------------------------------------


def test_activations_match_formulas():
    x = _rand(3, 5, dtype=np.float32) * 3
    t = ta.tensor(x)
    erf = np.vectorize(math.erf)
    cases = [(nn.ReLU(), np.maximum(x, 0)), (nn.GELU(), 0.5 * x * (1 + erf(x / math.sqrt(2)))),
             (nn.GELU("tanh"), 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))),
             (nn.Tanh(), np.tanh(x)), (nn.Sigmoid(), 1 / (1 + np.exp(-x))), (nn.Identity(3, a=1), x),
             (nn.Softmax(dim=0), np.exp(x) / np.exp(x).sum(0)),
             (nn.LogSoftmax(dim=-1), x - np.log(np.exp(x).sum(-1, keepdims=True)))]
    for layer, expected in cases:
        np.testing.assert_allclose(layer(t).numpy(), expected, rtol=1e-5, atol=1e-6, err_msg=repr(layer))
    with pytest.raises(ValueError, match="approximate"):
        nn.GELU("fast")
    with pytest.warns(UserWarning, match="implicit"):
        assert nn.Softmax()(t).numpy().sum(1) == pytest.approx(np.ones(3), rel=1e-5)  # 2-D: dim 1, as PyTorch


def test_activation_parity_with_torch():
    torch = pytest.importorskip("torch")
    x = _rand(4, 6, dtype=np.float32) * 2
    for ours, theirs in [(nn.GELU(), torch.nn.GELU()), (nn.GELU("tanh"), torch.nn.GELU("tanh")),
                         (nn.Softmax(1), torch.nn.Softmax(1)), (nn.LogSoftmax(0), torch.nn.LogSoftmax(0)),
                         (nn.ReLU(), torch.nn.ReLU())]:
        check_parity(ours, theirs, lambda x, m=ours: m(x), lambda x, m=theirs: m(x), {"x": x})


# ---- losses ------------------------------------------------------------------------------------------------------


def test_loss_values_against_numpy():
    logits = _rand(5, 4, dtype=np.float32)
    target = np.array([0, 3, -100, 1, 3])
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    valid = target != -100
    expected = -logp[valid, target[valid]].mean()
    assert nn.CrossEntropyLoss()(ta.tensor(logits), ta.tensor(target)).item() == pytest.approx(expected, rel=1e-5)
    assert nn.NLLLoss()(ta.tensor(logp), ta.tensor(target)).item() == pytest.approx(expected, rel=1e-5)
    per = nn.CrossEntropyLoss(reduction="none")(ta.tensor(logits), ta.tensor(target))
    assert per.shape == (5,) and per.numpy()[2] == 0
    y = _rand(5, 4, seed=1, dtype=np.float32)
    assert nn.MSELoss()(ta.tensor(logits), ta.tensor(y)).item() == pytest.approx(((logits - y) ** 2).mean(), rel=1e-5)
    assert nn.MSELoss(reduction="sum")(ta.tensor(logits), ta.tensor(y)).item() == pytest.approx(
        ((logits - y) ** 2).sum(), rel=1e-5)
    with pytest.raises(ValueError, match="reduction"):
        nn.MSELoss(reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing"):
        nn.CrossEntropyLoss(label_smoothing=2.0)


@pytest.mark.parametrize("kwargs", [{}, {"label_smoothing": 0.1}, {"ignore_index": 0, "reduction": "sum"},
                                    {"reduction": "none", "label_smoothing": 0.2}])
def test_cross_entropy_parity_with_torch(kwargs):
    torch = pytest.importorskip("torch")
    ours, theirs = nn.CrossEntropyLoss(**kwargs), torch.nn.CrossEntropyLoss(**kwargs)
    target = np.array([[0, 2, 1], [4, 0, 3]])
    # PyTorch takes (N, C, d1) with the classes in dim 1; we take them last, (N, d1, C)
    check_parity(ours, theirs, lambda x, t: ours(x.permute(0, 2, 1), t), lambda x, t: theirs(x, t),
                 {"x": _rand(2, 5, 3, dtype=np.float32), "t": target})


def test_cross_entropy_loss_takes_class_probabilities():
    """A float target of the input's shape holds class probabilities (as PyTorch's): -sum q log p, mean over rows."""
    logits, q = _rand(4, 3), np.random.default_rng(1).dirichlet(np.ones(3), 4)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    loss = nn.CrossEntropyLoss(label_smoothing=0.3)(ta.tensor(logits), ta.tensor(q))
    smoothed = q * 0.7 + 0.1
    assert loss.item() == pytest.approx(-(smoothed * logp).sum(-1).mean(), rel=1e-12)


def test_cross_entropy_probabilities_parity_with_torch():
    torch = pytest.importorskip("torch")
    weight = np.array([0.5, 1.0, 2.0, 1.5], dtype=np.float32)
    ours = nn.CrossEntropyLoss(ta.tensor(weight), label_smoothing=0.1)
    theirs = torch.nn.CrossEntropyLoss(torch.tensor(weight), label_smoothing=0.1)
    q = np.random.default_rng(2).dirichlet(np.ones(4), 5).astype(np.float32)
    check_parity(ours, theirs, lambda x, t: ours(x, t), lambda x, t: theirs(x, t),
                 {"x": _rand(5, 4, dtype=np.float32), "t": q})


def test_nll_and_mse_parity_with_torch():
    torch = pytest.importorskip("torch")
    for ours, theirs, inputs in [
        (nn.NLLLoss(ignore_index=1), torch.nn.NLLLoss(ignore_index=1),
         {"x": _rand(4, 3, dtype=np.float32), "t": np.array([0, 1, 2, 2])}),
        (nn.MSELoss(), torch.nn.MSELoss(), {"x": _rand(4, 3, dtype=np.float32), "t": _rand(4, 3, seed=2,
                                                                                       dtype=np.float32)})]:
        check_parity(ours, theirs, lambda x, t, m=ours: m(x, t), lambda x, t, m=theirs: m(x, t), inputs)
