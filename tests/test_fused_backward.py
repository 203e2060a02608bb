"""Each fused op's backward gives the same gradients whether or not it is being recorded (``create_graph``).

A fused op's backward applies a backward Function whose forward is array code, so the numbers must not depend
on whether that Function records a node: ``ta.grad(..., create_graph=False)`` (the fast path) and
``ta.grad(..., create_graph=True)`` must agree to rounding, for every input and every option. The recorded
gradient must also be differentiable again (its second derivatives are gradgradchecked in test_functional.py).
No PyTorch needed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import tinygrad_attn as ta
from tinygrad_attn import functional as F

RNG = np.random.default_rng(0)


def leaf(*shape: int) -> ta.Tensor:
    return ta.tensor(RNG.standard_normal(shape), requires_grad=True)


def const(a: object) -> ta.Tensor:
    return ta.tensor(np.asarray(a))


def seeded(fn: Callable[..., ta.Tensor]) -> Callable[..., ta.Tensor]:
    def call(*xs: ta.Tensor) -> ta.Tensor:
        ta.manual_seed(3)
        return fn(*xs)

    return call


def causal(n_q: int, n_k: int) -> ta.Tensor:
    return const(np.tril(np.ones((n_q, n_k), dtype=bool)))


def output_times_weights(out: ta.Tensor, weights: ta.Tensor) -> ta.Tensor:
    return out.sum() * weights


# name -> (function of the tensors, the tensors it differentiates)
CASES: dict[str, tuple[Callable[..., ta.Tensor], list[ta.Tensor]]] = {
    "softmax dim -1": (lambda x: F.softmax(x, -1), [leaf(3, 4)]),
    "softmax dim 0": (lambda x: F.softmax(x, 0), [leaf(3, 4)]),
    "softmax 0-d": (lambda x: F.softmax(x, 0), [leaf()]),
    "log_softmax dim 1": (lambda x: F.log_softmax(x, 1), [leaf(2, 3, 4)]),
    "layer_norm affine": (lambda x, w, b: F.layer_norm(x, 4, w, b, eps=0.1), [leaf(2, 3, 4), leaf(4), leaf(4)]),
    "layer_norm weight only, 2 dims": (lambda x, w: F.layer_norm(x, (3, 4), w), [leaf(2, 3, 4), leaf(3, 4)]),
    "layer_norm plain": (lambda x: F.layer_norm(x, 4), [leaf(5, 4)]),
    "cross_entropy mean": (lambda x: F.cross_entropy(x, const([0, 2, -100, 1])), [leaf(4, 3)]),
    "cross_entropy smoothed weighted sum": (
        lambda x: F.cross_entropy(x, const([0, 2, -100, 1]), const([0.5, 2.0, 1.5]), reduction="sum",
                                  label_smoothing=0.2), [leaf(4, 3)]),
    "cross_entropy none": (lambda x: F.cross_entropy(x, const([[0, 2], [1, -100]]), reduction="none",
                                                     label_smoothing=0.1), [leaf(2, 2, 3)]),
    "cross_entropy probabilities": (
        lambda x, q: F.cross_entropy(x, q.softmax(-1), const([0.5, 2.0, 1.5]), label_smoothing=0.1),
        [leaf(4, 3), leaf(4, 3)]),
    "nll_loss weighted": (lambda x: F.nll_loss(x, const([0, 2, -100, 1]), const([0.5, 2.0, 1.5])), [leaf(4, 3)]),
    "attention": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v), [leaf(2, 3, 4), leaf(2, 5, 4),
                                                                           leaf(2, 5, 2)]),
    "attention causal dropout": (seeded(lambda q, k, v: F.scaled_dot_product_attention(
        q, k, v, attn_mask=causal(3, 5), dropout_p=0.3)), [leaf(2, 3, 4), leaf(2, 5, 4), leaf(2, 5, 2)]),
    "attention float mask": (lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m, scale=0.7),
                             [leaf(2, 3, 4), leaf(1, 5, 4), leaf(1, 5, 2), leaf(3, 5)]),
    "attention need_weights": (lambda q, k, v: output_times_weights(*F.scaled_dot_product_attention(
        q, k, v, is_causal=True, need_weights=True)), [leaf(3, 4), leaf(3, 4), leaf(3, 2)]),
    "attention_weights dropout": (seeded(lambda q, k: F.attention_weights(q, k, dropout_p=0.4)),
                                  [leaf(2, 3, 4), leaf(2, 5, 4)]),
    "linear": (lambda x, w, b: F.linear(x, w, b), [leaf(2, 3, 4), leaf(5, 4), leaf(5)]),
    "dropout": (seeded(lambda x: F.dropout(x, 0.5)), [leaf(4, 5)]),
    "embedding": (lambda w: F.embedding(const([[1, 0], [3, 1]]), w, padding_idx=0), [leaf(4, 3)]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_fast_and_recorded_backward_agree(name: str) -> None:
    fn, inputs = CASES[name]
    out = fn(*inputs)
    # the upstream gradient requires grad: every recorded gradient depends on it, so every one has a graph
    upstream = ta.tensor(np.random.default_rng(1).standard_normal(out.shape), requires_grad=True)
    fast = ta.grad(out, inputs, upstream, retain_graph=True)
    recorded = ta.grad(out, inputs, upstream, create_graph=True)
    for i, (a, b) in enumerate(zip(fast, recorded)):
        assert not a.requires_grad, f"{name}: the fast gradient of input {i} recorded a graph"
        assert b.requires_grad, f"{name}: the recorded gradient of input {i} cannot be differentiated"
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-13, atol=1e-15, err_msg=f"{name}: input {i}")
    # and the recorded gradient is differentiable all the way back to the inputs
    second = ta.grad(sum(((g * g).sum() for g in recorded), ta.zeros(())), [upstream, *inputs], allow_unused=True)
    assert second[0] is not None and all(s is None or np.isfinite(s.numpy()).all() for s in second)


def test_fast_backward_records_nothing_and_frees_what_forward_saved() -> None:
    """The fast path applies backward Functions without recording them: after backward, no node of the graph
    still holds a saved array (tests/test_memory.py checks the same for a model built of primitive ops)."""
    x, w, b = leaf(3, 4), leaf(4), leaf(4)
    q, k, v = leaf(2, 3, 4), leaf(2, 5, 4), leaf(2, 5, 2)
    loss = (F.cross_entropy(F.layer_norm(x, 4, w, b), const([0, 3, 1]), label_smoothing=0.1)
            + F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=0.2).sum()
            + F.softmax(x, 0).sum())
    nodes, stack = set(), [loss.grad_fn]
    while stack:
        node = stack.pop()
        if node is not None and node not in nodes:
            nodes.add(node)
            stack.extend(n for n in node.next_functions if isinstance(n, ta.autograd.Function))
    assert any(node._saved for node in nodes)
    loss.backward()
    assert all(node.freed and node._saved == () for node in nodes)
    for t in (x, w, b, q, k, v):
        assert t.grad is not None and not t.grad.requires_grad


def third_derivative_check(fn: Callable[..., ta.Tensor], inputs: list[ta.Tensor]) -> None:
    """gradgradcheck of x -> d(v . fn(x))/dx recorded with create_graph: the second derivatives' Tensor-op
    formulas are differentiable in turn, so third derivatives agree with finite differences too."""
    v = ta.tensor(np.random.default_rng(2).standard_normal(fn(*inputs).shape))

    def first_derivative(*xs: ta.Tensor) -> tuple[ta.Tensor, ...]:
        return tuple(g for g in ta.grad(fn(*xs), list(xs), v, create_graph=True, allow_unused=True) if g is not None)

    ta.gradgradcheck(first_derivative, inputs, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", ["softmax dim -1", "log_softmax dim 1", "layer_norm affine",
                                  "cross_entropy smoothed weighted sum", "attention float mask"])
def test_third_derivatives(name: str) -> None:
    fn, inputs = CASES[name]
    third_derivative_check(fn, [ta.tensor(t.numpy(), requires_grad=True) for t in inputs])
