"""Memory: what backward frees, what a training loop keeps, and that the graph makes no reference cycles.

Weak references tell whether an array or tensor is still alive. The cycle tests run with the cyclic garbage
collector switched off: everything must be freed by reference counting alone, the moment it is dropped.
"""

import gc
import tracemalloc
import weakref

import numpy as np
import pytest

import tinygrad_attn as ta
from tinygrad_attn.autograd import Function


@pytest.fixture
def no_gc():
    """Switch the cyclic collector off (and clear what earlier tests left) for the duration of a test."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def graph_nodes(t):
    """Every Function node behind ``t`` (an iterative walk, like the engine's)."""
    seen, stack = set(), [t.grad_fn] if t.grad_fn is not None else []
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        stack.extend(n for n in node.next_functions if isinstance(n, Function))
    return seen


def saved_refs(t):
    """Weak references to every array kept for backward in the graph behind ``t`` (leaves excluded)."""
    refs = []
    for node in graph_nodes(t):
        for s in node._saved:
            if s.tensor is not None and s.tensor.is_leaf:
                continue
            refs.append(weakref.ref(s.tensor.data if s.tensor is not None else s.array))
    return refs


def model(x, w1, b1, w2):
    """A forward pass touching many ops: matmul, broadcasting, activations, reductions, indexing, cat."""
    h = (x @ w1 + b1).tanh()
    h = ta.cat([h[:, :2].relu(), h[:, 2:].sigmoid()], dim=1)
    logits = h @ w2
    logp = logits.log_softmax(-1)
    picked = logp[ta.arange(x.shape[0]), ta.tensor([0, 1, 0, 1][: x.shape[0]])]
    reg = ta.where(w1 > 0, w1, w1 * 0.1).pow(2).mean() + w2.var() + logits.softmax(-1).max(dim=1).values.sum()
    return -picked.mean() + reg * 0.01


def params(seed=0, dtype=ta.float32):
    rng = np.random.default_rng(seed)
    return [ta.tensor(rng.normal(size=s) * 0.5, dtype=dtype, requires_grad=True) for s in ((3, 5), (5,), (5, 2))]


def test_saved_intermediates_are_released_after_backward():
    x = ta.tensor(np.random.default_rng(1).normal(size=(4, 3)), dtype=ta.float32)
    loss = model(x, *params())
    refs = saved_refs(loss)
    assert len(refs) >= 8 and all(r() is not None for r in refs)  # the forward kept them for backward
    loss.backward()
    assert [r for r in refs if r() is not None] == []  # released, while `loss` (and its graph) is still held
    assert all(node.freed and node._saved == () for node in graph_nodes(loss))


def test_intermediate_tensor_lives_until_backward():
    x = ta.tensor([0.5, -1.0], requires_grad=True)
    a = x.tanh()
    loss = (a * a).sum()  # Mul keeps a for backward
    ref_tensor, ref_array = weakref.ref(a), weakref.ref(a.data)
    del a
    assert ref_tensor() is not None
    loss.backward()
    assert ref_tensor() is None and ref_array() is None


def test_retain_graph_keeps_saved_arrays_until_last_backward():
    x = ta.tensor(np.ones((4, 3)), dtype=ta.float32)
    loss = model(x, *params())
    refs = saved_refs(loss)
    loss.backward(retain_graph=True)
    assert all(r() is not None for r in refs)
    loss.backward()
    assert all(r() is None for r in refs)


def test_grad_releases_saved_arrays_it_used():
    x = ta.tensor([0.5, -1.0], requires_grad=True)
    loss = (x.exp() * x.sin()).sum()
    refs = saved_refs(loss)
    ta.grad(loss, x)
    assert all(r() is None for r in refs)


def _forward_and_refs(create_graph=False, backward=True):
    x = ta.tensor(np.random.default_rng(2).normal(size=(4, 3)), dtype=ta.float32)
    ps = params()
    loss = model(x, *ps)
    h = ps[0] * 1
    h.add_(1)  # in-place on a non-leaf
    h[0] = ps[1][:3].sum()  # __setitem__
    h.retain_grad()
    loss = loss + (h * h).sum() * 1e-3
    refs = [weakref.ref(loss), weakref.ref(loss.data), weakref.ref(h), weakref.ref(h.data)] + saved_refs(loss)
    nodes = [weakref.ref(n) for n in graph_nodes(loss)]
    if backward:
        loss.backward(create_graph=create_graph)
    return ps, refs + nodes


@pytest.mark.parametrize("backward", [False, True], ids=["dropped_unused", "after_backward"])
def test_graph_has_no_reference_cycles(no_gc, backward):
    ps, refs = _forward_and_refs(backward=backward)  # every local of the forward is gone when it returns
    alive = [r() for r in refs if r() is not None]
    assert alive == [], f"kept alive without the cycle collector: {[type(a).__name__ for a in alive]}"
    assert gc.collect() == 0  # and nothing was left for the collector either
    if backward:
        assert all(p.grad is not None for p in ps)


def test_grad_with_create_graph_has_no_cycles(no_gc):
    def run():
        x = ta.tensor([0.3, -0.7], requires_grad=True)
        y = (x.tanh() * x.exp()).sum()
        (g,) = ta.grad(y, x, create_graph=True)
        (h,) = ta.grad(g.sum(), x)
        return [weakref.ref(y), weakref.ref(g), weakref.ref(x)], h

    refs, h = run()
    assert all(r() is None for r in refs)
    assert gc.collect() == 0
    assert h.shape == (2,)


def test_dropping_a_deep_graph_without_backward_frees_it_without_gc(no_gc):
    x = ta.tensor([1.0], requires_grad=True)
    z = x
    for _ in range(2000):
        z = z.tanh() * 1.0
    ref = weakref.ref(z.grad_fn)
    saved = saved_refs(z)
    del z
    assert ref() is None and all(r() is None for r in saved)


# ---------------------------------------------------------------------------------------------------------
# A training loop does not grow
# ---------------------------------------------------------------------------------------------------------


def _live_graph_objects():
    from tinygrad_attn.tensor import Tensor

    counts = {"Tensor": 0, "Function": 0}
    for obj in gc.get_objects():
        kind = type(obj)  # not isinstance: that reads obj.__class__, which some objects (torch's) warn about
        if issubclass(kind, Tensor):
            counts["Tensor"] += 1
        elif issubclass(kind, Function):
            counts["Function"] += 1
    return counts


def test_training_1000_steps_does_not_grow_memory():
    rng = np.random.default_rng(0)
    x = ta.tensor(rng.normal(size=(8, 3)), dtype=ta.float32)
    target = ta.tensor(rng.normal(size=(8, 1)), dtype=ta.float32)
    w1 = ta.tensor(rng.normal(size=(3, 6)) * 0.5, dtype=ta.float32, requires_grad=True)
    b1 = ta.zeros(6, requires_grad=True)
    w2 = ta.tensor(rng.normal(size=(6, 1)) * 0.5, dtype=ta.float32, requires_grad=True)
    parameters = [w1, b1, w2]

    def step():
        pred = (x @ w1 + b1).tanh() @ w2
        loss = ((pred - target) ** 2).mean()
        loss.backward()
        with ta.no_grad():
            for p in parameters:
                p.sub_(p.grad * 0.1)
                p.grad = None
        return loss.item()

    first = [step() for _ in range(50)][0]  # warm up caches before measuring
    gc.collect()
    objects_before, live_before = len(gc.get_objects()), _live_graph_objects()
    tracemalloc.start()
    try:
        mem_before = tracemalloc.get_traced_memory()[0]
        for _ in range(950):
            last = step()
        gc.collect()
        mem_growth = tracemalloc.get_traced_memory()[0] - mem_before
    finally:
        tracemalloc.stop()
    objects_growth = len(gc.get_objects()) - objects_before
    assert _live_graph_objects() == live_before
    assert objects_growth < 50, f"{objects_growth} more tracked objects after 950 steps"
    assert mem_growth < 64 * 1024, f"memory grew by {mem_growth} bytes over 950 steps"
    assert last < first  # it did train (the loop is not a no-op)


def test_fused_ops_double_backward_has_no_cycles(no_gc):
    """The fused ops' backward Functions (recorded under create_graph) keep their inputs and their output, never
    a reference back to themselves: a second-order run through all of them is freed by reference counting."""
    import tinygrad_attn.functional as F

    def run():
        rng = np.random.default_rng(3)
        x, w, b = (ta.tensor(rng.normal(size=s), requires_grad=True) for s in ((3, 4), (4,), (4,)))
        q, k, v = (ta.tensor(rng.normal(size=(2, 3, 4)), requires_grad=True) for _ in range(3))
        h = F.layer_norm(x, 4, w, b)
        loss = (F.cross_entropy(h, ta.tensor([0, 3, 1]), label_smoothing=0.1) + F.log_softmax(h, 0).sum()
                + F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=0.2).sum())
        grads = ta.grad(loss, [x, w, q], create_graph=True)
        second = ta.grad(sum((g * g).sum() for g in grads), [x, w, b, q, k, v])
        return [weakref.ref(t) for t in (h, loss, *grads)] + [weakref.ref(g.grad_fn) for g in grads], second

    refs, second = run()
    assert all(r() is None for r in refs)
    assert gc.collect() == 0
    assert all(s is not None for s in second)
