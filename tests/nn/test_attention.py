"""MultiheadAttention: shapes, parameter names, mask conventions and invariances, gradients, PyTorch parity."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_attn as ta
from tinygrad_attn import nn

from .parity import check_parity, functional_call
from .reference import as_float64, multihead_attention


def _rand(*shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _t(a):
    return ta.tensor(a)


# ---- shapes and names --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_first", [False, True])
def test_output_and_weight_shapes(batch_first):
    mha = nn.MultiheadAttention(8, 2, batch_first=batch_first)
    L, S, N = 5, 3, 4
    q = _t(_rand(N, L, 8) if batch_first else _rand(L, N, 8))
    kv = _t(_rand(N, S, 8, seed=1) if batch_first else _rand(S, N, 8, seed=1))
    out, w = mha(q, kv, kv)
    assert out.shape == q.shape and w.shape == (N, L, S)
    np.testing.assert_allclose(w.numpy().sum(-1), 1, rtol=1e-5)
    out, w = mha(q, kv, kv, average_attn_weights=False)
    assert w.shape == (N, 2, L, S)
    out, w = mha(q, kv, kv, need_weights=False)
    assert out.shape == q.shape and w is None


def test_unbatched_inputs():
    mha = nn.MultiheadAttention(4, 2)
    x, kpm = _t(_rand(3, 4)), _t(np.array([False, False, True]))
    out, w = mha(x, x, x, key_padding_mask=kpm)
    assert out.shape == (3, 4) and w.shape == (3, 3)
    assert not w.numpy()[:, 2].any()
    batched, _ = mha(x.unsqueeze(1), x.unsqueeze(1), x.unsqueeze(1), key_padding_mask=kpm.unsqueeze(0))
    np.testing.assert_allclose(out.numpy(), batched.numpy()[:, 0], rtol=1e-5, atol=1e-6)
    assert mha(x, x, x, average_attn_weights=False)[1].shape == (2, 3, 3)


def test_parameter_names():
    assert [n for n, _ in nn.MultiheadAttention(8, 2).named_parameters()] == [
        "in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"]
    assert [n for n, _ in nn.MultiheadAttention(8, 2, kdim=3, vdim=5).named_parameters()] == [
        "q_proj_weight", "k_proj_weight", "v_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"]
    assert [n for n, _ in nn.MultiheadAttention(8, 2, bias=False).named_parameters()] == [
        "in_proj_weight", "out_proj.weight"]
    m = nn.MultiheadAttention(8, 2, kdim=3, vdim=5)
    assert m.k_proj_weight.shape == (8, 3) and m.v_proj_weight.shape == (8, 5) and m.in_proj_weight is None


@pytest.mark.parametrize("kwargs", [{}, {"kdim": 3, "vdim": 5}, {"bias": False}, {"batch_first": True}])
def test_state_dict_keys_equal_torch(kwargs):
    torch = pytest.importorskip("torch")
    ours, theirs = nn.MultiheadAttention(8, 2, **kwargs), torch.nn.MultiheadAttention(8, 2, **kwargs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == {
        k: tuple(v.shape) for k, v in theirs.state_dict().items()}


def test_constructor_and_input_errors():
    with pytest.raises(ValueError, match="divisible"):
        nn.MultiheadAttention(6, 4)
    with pytest.raises(NotImplementedError):
        nn.MultiheadAttention(4, 2, add_bias_kv=True)
    mha = nn.MultiheadAttention(4, 2)
    x = _t(_rand(3, 2, 4))
    with pytest.raises(ValueError, match="last dim"):
        mha(_t(_rand(3, 2, 5)), x, x)
    with pytest.raises(ValueError, match="batch sizes"):
        mha(x, _t(_rand(3, 1, 4)), _t(_rand(3, 1, 4)))
    with pytest.raises(ValueError, match="same batch and length"):
        mha(x, x, _t(_rand(4, 2, 4)))
    with pytest.raises(ValueError, match=r"attn_mask must have shape \(L, S\) = \(3, 3\)"):
        mha(x, x, x, attn_mask=_t(np.zeros((3, 2), bool)))
    with pytest.raises(ValueError, match=r"\(N \* num_heads, L, S\) = \(4, 3, 3\)"):
        mha(x, x, x, attn_mask=_t(np.zeros((2, 3, 3), bool)))
    with pytest.raises(ValueError, match=r"key_padding_mask must have shape \(N, S\) = \(2, 3\)"):
        mha(x, x, x, key_padding_mask=_t(np.zeros((3, 2), bool)))


def test_extra_repr():
    assert repr(nn.MultiheadAttention(8, 2, dropout=0.1)).startswith(
        "MultiheadAttention(\n  embed_dim=8, num_heads=2, dropout=0.1, bias=True, batch_first=False\n"
        "  (out_proj): Linear")


# ---- the fused projections ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("which, calls", [("self", 2), ("kv", 3), ("separate", 4)])
def test_fused_in_projection_counts_matmuls(monkeypatch, which, calls):
    import tinygrad_attn.functional as F

    seen = []
    real = F.linear
    monkeypatch.setattr(F, "linear", lambda x, w, b=None: seen.append(tuple(w.shape)) or real(x, w, b))
    mha = nn.MultiheadAttention(8, 2)
    x, y, z = _t(_rand(3, 2, 8)), _t(_rand(4, 2, 8, seed=1)), _t(_rand(4, 2, 8, seed=2))
    args = {"self": (x, x, x), "kv": (x, y, y), "separate": (x, y, z)}[which]
    out, _ = mha(*args)
    assert len(seen) == calls  # in-projections plus out_proj
    assert seen[0] == {"self": (24, 8), "kv": (8, 8), "separate": (8, 8)}[which]
    # the fused and unfused paths compute the same thing
    copies = {"self": (x, _t(x.numpy()), _t(x.numpy())), "kv": (x, y, _t(y.numpy())), "separate": (x, y, z)}[which]
    np.testing.assert_allclose(out.numpy(), mha(*copies)[0].numpy(), rtol=1e-5, atol=1e-6)


# ---- against a NumPy forward, one head at a time ---------------------------------------------------------------


def _randomise(module: nn.Module, seed: int) -> None:
    """Random values in every parameter (biases start at zero, which would hide a misplaced one)."""
    rng = np.random.default_rng(seed)
    with ta.no_grad():
        for p in module.parameters():
            p.data[...] = rng.standard_normal(p.shape).astype(p.dtype) * 0.5


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("kind", ["self", "cross", "separate"])
@pytest.mark.parametrize("need_weights", [False, True])
def test_heads_split_and_merged_by_hand(batch_first, kind, need_weights):
    """The output and per-head weights equal a NumPy forward that projects each head with its own rows of
    W_q, W_k, W_v and concatenates head 0, head 1, ... in order: a head split or merged in another order,
    or a projection taken from the wrong rows, changes the result."""
    E, H, N, L, S = 12, 3, 2, 4, 5
    attn = nn.MultiheadAttention(E, H, batch_first=batch_first).double()
    _randomise(attn, seed=1)
    x = _rand(N, L, E, seed=2, dtype=np.float64)
    memory = x if kind == "self" else _rand(N, S, E, seed=3, dtype=np.float64)
    pad = np.zeros(memory.shape[:2], dtype=bool)
    pad[1, -2:] = True  # the last two keys of row 1 are padding
    layout = (lambda a: a) if batch_first else (lambda a: a.transpose(1, 0, 2))
    q = _t(layout(x))
    k = q if kind == "self" else _t(layout(memory))
    v = k if kind != "separate" else _t(layout(memory).copy())  # equal values, another tensor: unfused path
    out, weights = attn(q, k, v, key_padding_mask=_t(pad), need_weights=need_weights, average_attn_weights=False)
    ref_out, ref_weights = multihead_attention(x, memory, as_float64(attn.state_dict()), "", H,
                                               allowed=~pad[:, None, :])
    np.testing.assert_allclose(layout(out.numpy()), ref_out, rtol=1e-10, atol=1e-12)
    if need_weights:
        np.testing.assert_allclose(weights.numpy(), ref_weights, rtol=1e-10, atol=1e-12)


# ---- the key/value cache -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("chunks", [(1, 1, 1, 1, 1, 1), (2, 3, 1), (1, 4, 1), (6,)])
def test_cached_self_attention_equals_recomputation(batch_first, chunks):
    """Causal self-attention fed a few positions at a time through a ``KVCache`` gives what it gives on the
    whole sequence at once, including calls of several positions after cached ones (whose causal mask is
    shifted by the cached length)."""
    attn = nn.MultiheadAttention(8, 2, batch_first=batch_first).eval()
    _randomise(attn, seed=4)
    x = _rand(2, 6, 8, seed=5)
    pad = np.zeros((2, 6), dtype=bool)
    pad[0, 0] = True  # a padded first position: the padding mask covers cached keys too
    layout = (lambda a: a) if batch_first else (lambda a: a.transpose(1, 0, 2))
    full, _ = attn(*[_t(layout(x))] * 3, key_padding_mask=_t(pad), is_causal=True, need_weights=False)
    cache = nn.KVCache()
    outs, start = [], 0
    with ta.no_grad():
        for size in chunks:
            part = _t(layout(x[:, start : start + size]))
            out, _ = attn(part, part, part, key_padding_mask=_t(pad[:, : start + size]), is_causal=True,
                          need_weights=False, cache=cache)
            outs.append(layout(out.numpy()))
            start += size
    assert cache.length == 6
    np.testing.assert_allclose(np.concatenate(outs, axis=1), layout(full.detach().numpy()), rtol=1e-5, atol=1e-6)


def test_static_cache_projects_the_memory_once():
    """Cross-attention with a static ``KVCache``: the first call stores the memory's keys and values, later
    calls use them (and project only their queries), with the same results as without a cache."""
    attn = nn.MultiheadAttention(8, 2, batch_first=True).eval()
    _randomise(attn, seed=6)
    x, memory = _t(_rand(3, 4, 8, seed=7)), _t(_rand(3, 5, 8, seed=8))
    expected = attn(x, memory, memory, need_weights=False)[0].detach().numpy()
    cache = nn.KVCache(static=True)
    with ta.no_grad():
        first = attn(x[:, :1], memory, memory, need_weights=False, cache=cache)[0].numpy()
        assert cache.filled and cache.length == 5
        zeros = ta.zeros(3, 5, 8)  # ignored: the cached keys and values are used
        rest = attn(x[:, 1:], zeros, zeros, need_weights=False, cache=cache)[0].numpy()
        ahead = nn.KVCache(static=True)
        ahead.update(*attn.key_value(memory, memory))  # filled before the first query, as beam search does
        again = attn(x, zeros, zeros, need_weights=False, cache=ahead)[0].numpy()
    np.testing.assert_allclose(np.concatenate([first, rest], axis=1), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(again, expected, rtol=1e-5, atol=1e-6)


def test_cache_reorder_keeps_rows():
    """``reorder`` with a permutation that overwrites rows it reads, and with fewer rows."""
    attn = nn.MultiheadAttention(4, 2, batch_first=True).eval()
    x = _rand(3, 5, 4, seed=9)
    full = attn(*[_t(x)] * 3, is_causal=True, need_weights=False)[0].detach().numpy()
    for order in (np.array([2, 0, 0]), np.array([1, 0, 2]), np.array([2, 1])):
        cache = nn.KVCache()
        with ta.no_grad():
            attn(*[_t(x[:, :3])] * 3, is_causal=True, need_weights=False, cache=cache)
            cache.reorder(order)
            rest = attn(*[_t(x[order, 3:])] * 3, is_causal=True, need_weights=False, cache=cache)[0].numpy()
        np.testing.assert_allclose(rest, full[order, 3:], rtol=1e-5, atol=1e-6)


def test_cache_errors_are_named():
    attn = nn.MultiheadAttention(4, 2, batch_first=True)
    x = _t(_rand(2, 3, 4))
    with pytest.raises(RuntimeError, match="no_grad"):
        attn(x, x, x, cache=nn.KVCache())
    with ta.no_grad():
        cache = nn.KVCache()
        attn(x, x, x, cache=cache)
        with pytest.raises(ValueError, match="N = 1"):
            attn(x[:1], x[:1], x[:1], cache=cache)
        with pytest.raises(TypeError, match="KVCache"):
            attn(x, x, x, cache={})
        static = nn.KVCache(static=True)
        static.update(*attn.key_value(x, x))
        with pytest.raises(RuntimeError, match="filled once"):
            static.update(*attn.key_value(x, x))


# ---- masks -------------------------------------------------------------------------------------------------------


@given(n=st.integers(1, 3), lengths=st.lists(st.integers(1, 4), min_size=3, max_size=3), heads=st.sampled_from([1, 2]),
       batch_first=st.booleans(), need_weights=st.booleans(), seed=st.integers(0, 1000))
def test_padded_keys_never_change_outputs(n, lengths, heads, batch_first, need_weights, seed):
    """Perturbing the key and value vectors at padded positions leaves every output unchanged."""
    L, S, _ = lengths
    rng = np.random.default_rng(seed)
    valid = rng.integers(1, S + 1, size=n)  # each batch element keeps at least one key
    pad = np.arange(S)[None, :] >= valid[:, None]  # (N, S), True = padding
    mha = nn.MultiheadAttention(4, heads, batch_first=batch_first).eval()
    shape_q, shape_k = ((n, L, 4), (n, S, 4)) if batch_first else ((L, n, 4), (S, n, 4))
    q, k, v = rng.standard_normal(shape_q), rng.standard_normal(shape_k), rng.standard_normal(shape_k)
    noise_k, noise_v = k.copy(), v.copy()
    where_pad = pad if batch_first else pad.T
    noise_k[where_pad] += rng.standard_normal((int(pad.sum()), 4)) * 10
    noise_v[where_pad] += rng.standard_normal((int(pad.sum()), 4)) * 10

    def run(k, v):
        f = lambda a: ta.tensor(a.astype(np.float32))  # noqa: E731
        return mha(f(q), f(k), f(v), key_padding_mask=ta.tensor(pad), need_weights=need_weights)

    (a, wa), (b, _) = run(k, v), run(noise_k, noise_v)
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)
    if need_weights:
        assert not wa.numpy()[np.broadcast_to(pad[:, None, :], wa.shape)].any()


@given(length=st.integers(2, 5), cut=st.integers(1, 4), use=st.sampled_from(["is_causal", "bool", "float", "3d"]),
       need_weights=st.booleans(), seed=st.integers(0, 1000))
def test_causal_mask_never_sees_the_future(length, cut, use, need_weights, seed):
    """Self-attention under a causal mask: changing inputs at positions >= cut leaves outputs < cut unchanged."""
    cut = min(cut, length - 1)
    rng = np.random.default_rng(seed)
    mha = nn.MultiheadAttention(4, 2, batch_first=True).eval()
    x = rng.standard_normal((2, length, 4))
    y = x.copy()
    y[:, cut:] += rng.standard_normal(y[:, cut:].shape) * 10
    future = np.triu(np.ones((length, length), bool), 1)
    kwargs = {"is_causal": {"is_causal": True},
              "bool": {"attn_mask": ta.tensor(future), "is_causal": True},
              "float": {"attn_mask": nn.Transformer.generate_square_subsequent_mask(length)},
              "3d": {"attn_mask": ta.tensor(np.broadcast_to(future, (4, length, length)).copy())}}[use]

    def run(a):
        t = ta.tensor(a.astype(np.float32))
        return mha(t, t, t, need_weights=need_weights, **kwargs)[0].numpy()

    np.testing.assert_allclose(run(x)[:, :cut], run(y)[:, :cut], rtol=1e-5, atol=1e-5)
    assert not np.allclose(run(x)[:, cut:], run(y)[:, cut:])


def test_bool_float_and_byte_masks_agree():
    mha = nn.MultiheadAttention(4, 2)
    x = _t(_rand(4, 2, 4))
    forbid = np.array([[0, 1, 0, 1]] * 4, bool)
    kpm = np.array([[0, 0, 1, 0], [0, 0, 0, 0]], bool)
    ref, w_ref = mha(x, x, x, attn_mask=_t(forbid), key_padding_mask=_t(kpm))
    as_float = _t(np.where(forbid, -np.inf, 0).astype(np.float32))
    for attn_mask, key_padding_mask in [(as_float, _t(kpm)), (_t(forbid), _t(np.where(kpm, -np.inf, 0.0))),
                                        (_t(forbid.astype(np.uint8)), _t(kpm))]:
        out, w = mha(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask)
        np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(w.numpy(), w_ref.numpy(), rtol=1e-6, atol=1e-7)
    assert not w_ref.numpy()[:, :, 1].any() and not w_ref.numpy()[0, :, 2].any()


def test_float_mask_is_added_to_the_scores():
    mha = nn.MultiheadAttention(4, 1, bias=False)
    x = _t(_rand(3, 1, 4))
    bias = _rand(3, 3, seed=5)
    _, w = mha(x, x, x, attn_mask=_t(bias))
    _, w0 = mha(x, x, x)
    expected = w0.numpy()[0] * np.exp(bias)
    np.testing.assert_allclose(w.numpy()[0], expected / expected.sum(-1, keepdims=True), rtol=1e-5)


@pytest.mark.parametrize("need_weights", [True, False])
def test_fully_padded_rows_give_no_nan(need_weights):
    mha = nn.MultiheadAttention(4, 2, batch_first=True)
    x = ta.tensor(_rand(2, 3, 4), requires_grad=True)
    kpm = ta.tensor(np.array([[True, True, True], [False, True, False]]))  # batch element 0: all padding
    out, w = mha(x, x, x, key_padding_mask=kpm, need_weights=need_weights)
    assert np.isfinite(out.numpy()).all()
    np.testing.assert_allclose(out.numpy()[0], np.broadcast_to(mha.out_proj.bias.numpy(), (3, 4)), atol=1e-6)
    if need_weights:
        assert not w.numpy()[0].any()
    out.sum().backward()
    assert all(np.isfinite(p.grad.numpy()).all() for p in mha.parameters())
    assert np.isfinite(x.grad.numpy()).all()
    causal_and_pad = mha(x, x, x, key_padding_mask=ta.tensor(np.array([[True, False, False]] * 2)), is_causal=True)
    assert np.isfinite(causal_and_pad[0].numpy()).all()  # query 0 sees only key 0, which is padding


# ---- train / eval ------------------------------------------------------------------------------------------------


def test_dropout_only_in_training():
    ta.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, dropout=0.5)
    x = _t(_rand(6, 2, 8))
    a, wa = mha(x, x, x)
    b, _ = mha(x, x, x)
    assert not np.allclose(a.numpy(), b.numpy())
    assert (mha(x, x, x, average_attn_weights=False)[1].numpy() == 0).any()
    mha.eval()
    c, wc = mha(x, x, x)
    np.testing.assert_array_equal(c.numpy(), mha(x, x, x)[0].numpy())
    np.testing.assert_allclose(wc.numpy().sum(-1), 1, rtol=1e-5)


# ---- gradients ---------------------------------------------------------------------------------------------------


@given(e_heads=st.sampled_from([(2, 1), (4, 2)]), L=st.integers(1, 3), S=st.integers(1, 3), n=st.integers(1, 2),
       cross=st.booleans(), masked=st.booleans(), need_weights=st.booleans())
def test_gradcheck(e_heads, L, S, n, cross, masked, need_weights):
    e, heads = e_heads
    if not cross:
        S = L
    mha = nn.MultiheadAttention(e, heads, batch_first=True).double()
    rng = np.random.default_rng(L * 7 + S)
    for p in mha.parameters():
        p.data[...] = rng.standard_normal(p.shape) * 0.5
    names = [k for k, _ in mha.named_parameters()]
    kpm = ta.tensor(np.arange(S)[None, :].repeat(n, 0) >= S - (n - 1)) if masked and S > 1 else None

    def fn(q, kv, *ps):
        key = q if not cross else kv
        out, w = functional_call(mha, dict(zip(names, ps)), q, key, key, key_padding_mask=kpm,
                                 need_weights=need_weights, average_attn_weights=False)
        return (out, w) if need_weights else out

    q = ta.tensor(rng.standard_normal((n, L, e)), requires_grad=True)
    kv = ta.tensor(rng.standard_normal((n, S, e)), requires_grad=cross)
    params = [ta.tensor(p.numpy(), requires_grad=True) for p in mha.parameters()]
    ta.gradcheck(fn, [q, kv, *params], atol=1e-5, rtol=1e-3)


# ---- parity with PyTorch -----------------------------------------------------------------------------------------


CASES = {
    "self": {},
    "self_batch_first": {"batch_first": True},
    "self_kpm": {"kpm": True},
    "self_bool_mask": {"attn_mask": "bool"},
    "self_float_mask_kpm": {"attn_mask": "float", "kpm": True},
    "self_3d_mask": {"attn_mask": "3d"},
    "self_causal_hint": {"attn_mask": "bool", "is_causal": True},
    "self_per_head": {"average": False},
    "self_no_weights": {"need_weights": False, "kpm": True, "attn_mask": "bool"},
    "self_no_bias": {"bias": False},
    "cross": {"cross": True},
    "cross_kpm_mask": {"cross": True, "kpm": True, "attn_mask": "float"},
    "cross_separate_kv": {"cross": "separate", "kpm": True},
    "cross_no_weights": {"cross": True, "need_weights": False, "kpm": True},
    "kdim_vdim": {"cross": "separate", "kdim": 3, "vdim": 5, "kpm": True},
}


@pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask")
@pytest.mark.parametrize("case", list(CASES))
def test_parity_with_torch(case):
    torch = pytest.importorskip("torch")
    c = CASES[case]
    E, H, N, L = 8, 2, 3, 4
    S = 5 if c.get("cross") else L
    kdim, vdim = c.get("kdim", E), c.get("vdim", E)
    bf = c.get("batch_first", False)
    kw = {"bias": c.get("bias", True), "batch_first": bf}
    if "kdim" in c:
        kw.update(kdim=kdim, vdim=vdim)
    ours, theirs = nn.MultiheadAttention(E, H, **kw), torch.nn.MultiheadAttention(E, H, **kw)
    rng = np.random.default_rng(len(case))
    if ours.in_proj_bias is not None:  # non-zero biases, so their gradients are tested too
        ours.in_proj_bias.data[...] = rng.standard_normal(3 * E)
        ours.out_proj.bias.data[...] = rng.standard_normal(E)

    def shape(length, dim):
        return (N, length, dim) if bf else (length, N, dim)

    inputs = {"q": rng.standard_normal(shape(L, E)).astype(np.float32)}
    if c.get("cross"):
        inputs["k"] = rng.standard_normal(shape(S, kdim)).astype(np.float32)
        if c["cross"] == "separate":
            inputs["v"] = rng.standard_normal(shape(S, vdim)).astype(np.float32)
    kpm = np.zeros((N, S), bool)
    kpm[0, -2:] = True
    kpm[2, 1] = True
    mask = {None: None, "bool": np.triu(np.ones((L, S), bool), 1),
            "float": (rng.standard_normal((L, S)) * (np.arange(S) < S - 1)).astype(np.float32),
            "3d": rng.random((N * H, L, S)) < 0.3}[c.get("attn_mask")]
    if mask is not None and mask.dtype == bool:
        mask[..., 0] = False  # every query keeps key 0 (PyTorch gives NaN for a query that sees nothing)
    options = {"need_weights": c.get("need_weights", True), "average_attn_weights": c.get("average", True),
               "is_causal": c.get("is_causal", False)}

    def run(module, lib, q, k=None, v=None):
        key = q if k is None else k
        value = key if v is None else v
        masks = {"key_padding_mask": lib.tensor(kpm) if c.get("kpm") else None,
                 "attn_mask": lib.tensor(mask) if mask is not None else None}
        return module(q, key, value, **masks, **options)

    check_parity(ours, theirs, lambda **t: run(ours, ta, **t), lambda **t: run(theirs, torch, **t), inputs,
                 rtol=1e-4, atol=2e-5)
