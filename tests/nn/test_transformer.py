"""PositionalEncoding, Transformer encoder/decoder layers and stacks: shapes, masks, dropout, copies, parity."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_attn as ta
from tinygrad_attn import nn

from .parity import check_parity, functional_call
from .reference import as_float64, causal, decoder_layer, encoder_layer


def _rand(*shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _sinusoids(length: int, d: int) -> np.ndarray:
    pe = np.zeros((length, d))
    for pos in range(length):
        for i in range(d):
            angle = pos / 10000 ** (2 * (i // 2) / d)
            pe[pos, i] = math.sin(angle) if i % 2 == 0 else math.cos(angle)
    return pe


# ---- positional encoding -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d_model", [6, 7])
def test_positional_encoding_values_and_layout(d_model):
    pe = nn.PositionalEncoding(d_model, dropout=0.0, max_len=20)
    np.testing.assert_allclose(pe.pe.numpy(), _sinusoids(20, d_model), atol=1e-6)
    x = _rand(5, 2, d_model)
    out = pe(ta.tensor(x)).numpy()  # (S, N, E): the same positions for every batch element
    np.testing.assert_allclose(out, x + _sinusoids(5, d_model)[:, None, :], atol=1e-6)
    pe_bf = nn.PositionalEncoding(d_model, dropout=0.0, batch_first=True)
    out_bf = pe_bf(ta.tensor(x.transpose(1, 0, 2))).numpy()
    np.testing.assert_allclose(out_bf, out.transpose(1, 0, 2), atol=1e-6)


def test_positional_encoding_is_a_non_persistent_buffer_that_grows():
    pe = nn.PositionalEncoding(4, dropout=0.0, max_len=3)
    assert list(pe.state_dict()) == [] and [n for n, _ in pe.named_buffers()] == ["pe"]
    x = _rand(10, 1, 4)
    out = pe(ta.tensor(x)).numpy()
    assert pe.pe.shape[0] >= 10
    np.testing.assert_allclose(out, x + _sinusoids(10, 4)[:, None, :], atol=1e-5)
    later = pe(ta.tensor(x[:2]), start=7).numpy()  # positions 7 and 8, for step-by-step decoding
    np.testing.assert_allclose(later, x[:2] + _sinusoids(10, 4)[7:9, None, :], atol=1e-5)
    pe.double()
    assert pe.pe.dtype == ta.float64 and pe(ta.tensor(x.astype(np.float64))).dtype == ta.float64
    with pytest.raises(ValueError, match="PositionalEncoding"):
        pe(ta.ones(3, 1, 5))


def test_positional_encoding_dropout():
    ta.manual_seed(0)
    pe = nn.PositionalEncoding(8, dropout=0.5)
    x = ta.ones(6, 2, 8)
    assert (pe(x).numpy() == 0).any()
    pe.eval()
    np.testing.assert_allclose(pe(x).numpy(), np.broadcast_to(1 + _sinusoids(6, 8)[:, None, :], (6, 2, 8)), atol=1e-6)


# ---- layers: shapes, names, modes -----------------------------------------------------------------------------


def test_mask_helper():
    m = nn.Transformer.generate_square_subsequent_mask(4)
    expected = np.triu(np.full((4, 4), -np.inf), 1)
    expected[np.tril_indices(4)] = 0
    np.testing.assert_array_equal(m.numpy(), expected)
    assert m.dtype == ta.float32 and nn.generate_square_subsequent_mask(3, dtype=ta.float64).dtype == ta.float64


@pytest.mark.parametrize("batch_first", [False, True])
def test_layer_shapes(batch_first):
    enc = nn.TransformerEncoderLayer(8, 2, 16, batch_first=batch_first)
    dec = nn.TransformerDecoderLayer(8, 2, 16, batch_first=batch_first)
    src = ta.tensor(_rand(2, 5, 8) if batch_first else _rand(5, 2, 8))
    tgt = ta.tensor(_rand(2, 3, 8) if batch_first else _rand(3, 2, 8))
    memory = enc(src)
    assert memory.shape == src.shape
    assert dec(tgt, memory, tgt_is_causal=True).shape == tgt.shape


def test_activation_choices():
    assert nn.TransformerEncoderLayer(4, 2, activation="gelu").activation is ta.functional.gelu
    layer = nn.TransformerEncoderLayer(4, 2, activation=nn.GELU("tanh"))
    assert "activation" in dict(layer.named_children())  # a Module activation is a child, as in PyTorch
    with pytest.raises(RuntimeError, match="swish"):
        nn.TransformerEncoderLayer(4, 2, activation="swish")


def test_stack_copies_have_independent_parameters():
    layer = nn.TransformerEncoderLayer(8, 2, 16)
    enc = nn.TransformerEncoder(layer, 3, norm=nn.LayerNorm(8))
    assert len(list(enc.parameters())) == 3 * len(list(layer.parameters())) + 2
    w = [lyr.linear1.weight for lyr in enc.layers]
    assert len({id(p) for p in w}) == 3 and all(p is not layer.linear1.weight for p in w)
    np.testing.assert_array_equal(w[0].numpy(), w[1].numpy())  # same start, as PyTorch's deep copies
    w[0].data[...] = 0
    assert w[1].numpy().any() and layer.linear1.weight.numpy().any()
    ta.nn.init.normal_(enc.layers[2].self_attn.in_proj_weight)
    assert not np.array_equal(enc.layers[1].self_attn.in_proj_weight.numpy(),
                              enc.layers[2].self_attn.in_proj_weight.numpy())


def test_repr_collapses_the_stack():
    text = repr(nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16), 2))
    assert "(0-1): 2 x TransformerEncoderLayer(" in text
    assert "(norm1): LayerNorm((8,), eps=1e-05, elementwise_affine=True, bias=True)" in text


def test_dropout_in_training_only():
    ta.manual_seed(0)
    model = nn.Transformer(8, 2, 1, 1, 16, dropout=0.3)
    src, tgt = ta.tensor(_rand(4, 2, 8)), ta.tensor(_rand(3, 2, 8, seed=1))
    assert not np.allclose(model(src, tgt).numpy(), model(src, tgt).numpy())
    model.eval()
    np.testing.assert_array_equal(model(src, tgt).numpy(), model(src, tgt).numpy())


# ---- masks: invariances ----------------------------------------------------------------------------------------


@given(length=st.integers(2, 5), cut=st.integers(1, 4), norm_first=st.booleans(), seed=st.integers(0, 100))
def test_decoder_never_sees_future_targets(length, cut, norm_first, seed):
    cut = min(cut, length - 1)
    rng = np.random.default_rng(seed)
    dec = nn.TransformerDecoder(nn.TransformerDecoderLayer(8, 2, 16, batch_first=True, norm_first=norm_first), 2,
                                norm=nn.LayerNorm(8)).eval()
    memory = ta.tensor(rng.standard_normal((2, 3, 8)).astype(np.float32))
    tgt = rng.standard_normal((2, length, 8))
    changed = tgt.copy()
    changed[:, cut:] += rng.standard_normal(changed[:, cut:].shape) * 10
    mask = nn.Transformer.generate_square_subsequent_mask(length)
    for kwargs in ({"tgt_is_causal": True}, {"tgt_mask": mask, "tgt_is_causal": True}, {"tgt_mask": mask}):
        a = dec(ta.tensor(tgt.astype(np.float32)), memory, **kwargs).numpy()
        b = dec(ta.tensor(changed.astype(np.float32)), memory, **kwargs).numpy()
        np.testing.assert_allclose(a[:, :cut], b[:, :cut], rtol=1e-5, atol=1e-5)
        assert not np.allclose(a[:, cut:], b[:, cut:])


@given(src_len=st.integers(2, 5), n_pad=st.integers(1, 3), seed=st.integers(0, 100))
def test_padding_never_changes_other_positions(src_len, n_pad, seed):
    """Encoder: padded source positions do not change the others' outputs; decoder: nor anything via memory."""
    n_pad = min(n_pad, src_len - 1)
    rng = np.random.default_rng(seed)
    model = nn.Transformer(8, 2, 2, 2, 16, batch_first=True).eval()
    src = rng.standard_normal((2, src_len, 8))
    changed = src.copy()
    changed[1, src_len - n_pad:] += rng.standard_normal((n_pad, 8)) * 10
    pad = np.zeros((2, src_len), bool)
    pad[1, src_len - n_pad:] = True
    pad_t = ta.tensor(pad)
    tgt = ta.tensor(rng.standard_normal((2, 3, 8)).astype(np.float32))

    def run(s):
        s = ta.tensor(s.astype(np.float32))
        memory = model.encoder(s, src_key_padding_mask=pad_t)
        out = model.decoder(tgt, memory, memory_key_padding_mask=pad_t, tgt_is_causal=True)
        return memory.numpy(), out.numpy()

    (m1, o1), (m2, o2) = run(src), run(changed)
    np.testing.assert_allclose(m1[~pad], m2[~pad], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(o1, o2, rtol=1e-5, atol=1e-5)


# ---- gradients --------------------------------------------------------------------------------------------------


@given(L=st.integers(1, 3), n=st.integers(1, 2), norm_first=st.booleans(), activation=st.sampled_from(["relu", "gelu"]))
def test_encoder_layer_gradcheck_inputs(L, n, norm_first, activation):
    layer = nn.TransformerEncoderLayer(4, 2, 6, dropout=0.0, activation=activation, norm_first=norm_first,
                                       batch_first=True).double()
    x = ta.tensor(np.random.default_rng(L + n).standard_normal((n, L, 4)), requires_grad=True)
    ta.gradcheck(lambda x: layer(x, is_causal=True), [x], atol=1e-5, rtol=1e-3)


def test_decoder_layer_gradcheck_all_parameters():
    layer = nn.TransformerDecoderLayer(4, 2, 3, dropout=0.0, batch_first=True).double()
    rng = np.random.default_rng(0)
    for p in layer.parameters():
        p.data[...] = rng.standard_normal(p.shape) * 0.5
    names = [k for k, _ in layer.named_parameters()]
    tgt = ta.tensor(rng.standard_normal((1, 2, 4)), requires_grad=True)
    memory = ta.tensor(rng.standard_normal((1, 3, 4)), requires_grad=True)
    params = [ta.tensor(p.numpy(), requires_grad=True) for p in layer.parameters()]
    ta.gradcheck(lambda t, m, *ps: functional_call(layer, dict(zip(names, ps)), t, m, tgt_is_causal=True),
                 [tgt, memory, *params], atol=1e-5, rtol=1e-3)


# ---- against NumPy forwards (no PyTorch needed) -----------------------------------------------------------------


def _randomised(module: nn.Module, seed: int) -> nn.Module:
    """float64, every parameter random (biases and LayerNorm included), eval mode (no dropout)."""
    module = module.double().eval()
    rng = np.random.default_rng(seed)
    with ta.no_grad():
        for p in module.parameters():
            p.data[...] = rng.standard_normal(p.shape) * 0.5
    return module


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
def test_encoder_layer_equals_a_numpy_forward(norm_first, batch_first):
    """Self-attention with a padding mask, then the ReLU FFN, each with its residual and LayerNorm (post-LN
    or pre-LN), against the NumPy forward of tests/nn/reference.py."""
    layer = _randomised(nn.TransformerEncoderLayer(12, 3, 20, norm_first=norm_first, batch_first=batch_first), 1)
    x = _rand(2, 5, 12, seed=2, dtype=np.float64)
    pad = np.zeros((2, 5), dtype=bool)
    pad[0, -2:] = True
    layout = (lambda a: a) if batch_first else (lambda a: a.transpose(1, 0, 2))
    out = layer(ta.tensor(layout(x)), src_key_padding_mask=ta.tensor(pad)).numpy()
    ref = encoder_layer(x, as_float64(layer.state_dict()), "", 3, allowed=~pad[:, None, :], norm_first=norm_first)
    np.testing.assert_allclose(layout(out), ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_equals_a_numpy_forward(norm_first):
    """Causal self-attention, attention over a padded memory, the FFN, against the NumPy forward."""
    layer = _randomised(nn.TransformerDecoderLayer(12, 3, 20, norm_first=norm_first, batch_first=True), 3)
    y, memory = _rand(2, 4, 12, seed=4, dtype=np.float64), _rand(2, 6, 12, seed=5, dtype=np.float64)
    pad = np.zeros((2, 6), dtype=bool)
    pad[1, -3:] = True
    out = layer(ta.tensor(y), ta.tensor(memory), memory_key_padding_mask=ta.tensor(pad), tgt_is_causal=True).numpy()
    ref = decoder_layer(y, memory, as_float64(layer.state_dict()), "", 3, self_allowed=causal(4),
                        memory_allowed=~pad[:, None, :], norm_first=norm_first)
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-10)


def test_attention_and_activation_dropout_are_separate_rates():
    layer = nn.TransformerDecoderLayer(8, 2, 16, dropout=0.1, attention_dropout=0.2, activation_dropout=0.0)
    assert (layer.self_attn.dropout, layer.multihead_attn.dropout, layer.dropout.p) == (0.2, 0.2, 0.0)
    assert {layer.dropout1.p, layer.dropout2.p, layer.dropout3.p} == {0.1}
    same = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.3)  # PyTorch's: one rate everywhere
    assert (same.self_attn.dropout, same.dropout.p, same.dropout1.p, same.dropout2.p) == (0.3, 0.3, 0.3, 0.3)


# ---- decoding with key/value caches: the same classes for all three families ------------------------------------


@pytest.mark.parametrize("chunks", [(1,) * 6, (2, 3, 1)])
def test_decoder_only_stack_with_a_cache_equals_recomputation(chunks):
    """A GPT-like stack (encoder layers, causal, pre-LN, GELU, no cross-attention) decoding a few positions
    at a time through a ``DecoderCache(cross_attention=False)`` gives the outputs of the whole sequence."""
    layer = nn.TransformerEncoderLayer(8, 2, 16, activation="gelu", norm_first=True, batch_first=True)
    stack = _randomised(nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(8)), 6)
    x = _rand(3, 6, 8, seed=7, dtype=np.float64)
    full = stack(ta.tensor(x), is_causal=True).numpy()
    cache = nn.DecoderCache(2, cross_attention=False)
    outs, start = [], 0
    with ta.no_grad():
        for size in chunks:
            outs.append(stack(ta.tensor(x[:, start : start + size]), is_causal=True, cache=cache).numpy())
            start += size
    assert cache.length == 6 and cache.self_attn[1].length == 6
    np.testing.assert_allclose(np.concatenate(outs, axis=1), full, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_stack_with_a_cache_equals_recomputation(norm_first):
    layer = nn.TransformerDecoderLayer(8, 2, 16, norm_first=norm_first)  # (T, N, E), PyTorch's default layout
    stack = _randomised(nn.TransformerDecoder(layer, 2), 8)
    y, memory = _rand(5, 2, 8, seed=9, dtype=np.float64), _rand(4, 2, 8, seed=10, dtype=np.float64)
    pad = ta.tensor(np.array([[False] * 4, [False, False, True, True]]))
    full = stack(ta.tensor(y), ta.tensor(memory), memory_key_padding_mask=pad, tgt_is_causal=True).numpy()
    cache = nn.DecoderCache(2)
    with ta.no_grad():
        steps = [stack(ta.tensor(y[t : t + 1]), ta.tensor(memory), memory_key_padding_mask=pad, tgt_is_causal=True,
                       cache=cache).numpy() for t in range(5)]
    assert cache.length == 5 and cache.cross_attn[0] is not None and cache.cross_attn[0].length == 4
    np.testing.assert_allclose(np.concatenate(steps, axis=0), full, rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="cross_attention=True"):
        stack(ta.tensor(y[:1]), ta.tensor(memory), cache=nn.DecoderCache(2, cross_attention=False))
    with pytest.raises(ValueError, match="for 2 layers"):
        stack(ta.tensor(y[:1]), ta.tensor(memory), cache=nn.DecoderCache(3))


def test_layers_return_per_head_weights_on_request():
    enc = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True).eval()
    dec = nn.TransformerDecoderLayer(8, 2, 16, batch_first=True).eval()
    x, memory = ta.tensor(_rand(3, 4, 8)), ta.tensor(_rand(3, 5, 8, seed=1))
    out, w = enc(x, need_weights=True)
    np.testing.assert_allclose(out.numpy(), enc(x).numpy(), rtol=1e-6)
    assert w.shape == (3, 2, 4, 4)
    out, self_w, cross_w = dec(x, memory, tgt_is_causal=True, need_weights=True)
    np.testing.assert_allclose(out.numpy(), dec(x, memory, tgt_is_causal=True).numpy(), rtol=1e-6)
    assert self_w.shape == (3, 2, 4, 4) and cross_w.shape == (3, 2, 4, 5)
    assert np.all(np.triu(self_w.numpy(), 1) == 0)


# ---- parity with PyTorch ----------------------------------------------------------------------------------------


def _perturb(module: nn.Module, seed: int) -> None:
    """Move every parameter off its initial value (LayerNorm ones/zeros, zero biases), so all are tested."""
    rng = np.random.default_rng(seed)
    for p in module.parameters():
        p.data[...] = p.numpy() + rng.standard_normal(p.shape).astype(np.float32) * 0.1


LAYER_CASES = [
    {"norm_first": False, "activation": "relu"},
    {"norm_first": True, "activation": "gelu"},
    {"norm_first": False, "activation": "gelu", "batch_first": True},
    {"norm_first": True, "activation": "relu", "bias": False},
]


@pytest.mark.parametrize("kw", LAYER_CASES)
def test_encoder_layer_parity(kw):
    torch = pytest.importorskip("torch")
    ours = nn.TransformerEncoderLayer(8, 2, 12, dropout=0.0, **kw)
    theirs = torch.nn.TransformerEncoderLayer(8, 2, 12, dropout=0.0, **kw)
    _perturb(ours, 1)
    bf = kw.get("batch_first", False)
    x = _rand(3, 4, 8) if bf else _rand(4, 3, 8)
    pad = np.zeros((3, 4), bool)
    pad[0, -1] = True
    causal = np.triu(np.ones((4, 4), bool), 1)

    def run(module, lib, x):
        return module(x, src_mask=lib.tensor(causal), src_key_padding_mask=lib.tensor(pad))

    check_parity(ours, theirs, lambda x: run(ours, ta, x), lambda x: run(theirs, torch, x), {"x": x})


@pytest.mark.parametrize("kw", LAYER_CASES)
def test_decoder_layer_parity(kw):
    torch = pytest.importorskip("torch")
    ours = nn.TransformerDecoderLayer(8, 2, 12, dropout=0.0, **kw)
    theirs = torch.nn.TransformerDecoderLayer(8, 2, 12, dropout=0.0, **kw)
    _perturb(ours, 2)
    bf = kw.get("batch_first", False)
    tgt, memory = (_rand(3, 4, 8), _rand(3, 5, 8, seed=1)) if bf else (_rand(4, 3, 8), _rand(5, 3, 8, seed=1))
    tgt_pad, mem_pad = np.zeros((3, 4), bool), np.zeros((3, 5), bool)
    tgt_pad[1, -1], mem_pad[2, -2:] = True, True
    memory_mask = np.zeros((4, 5), bool)
    memory_mask[:, 1] = True

    def run(module, lib, tgt, memory):
        return module(tgt, memory, tgt_mask=lib.tensor(np.triu(np.ones((4, 4), bool), 1)),
                      memory_mask=lib.tensor(memory_mask), tgt_key_padding_mask=lib.tensor(tgt_pad),
                      memory_key_padding_mask=lib.tensor(mem_pad), tgt_is_causal=True)

    check_parity(ours, theirs, lambda **t: run(ours, ta, **t), lambda **t: run(theirs, torch, **t),
                 {"tgt": tgt, "memory": memory})


@pytest.mark.filterwarnings("ignore:enable_nested_tensor")
@pytest.mark.parametrize("norm_first", [False, True])
def test_stacks_and_transformer_parity(norm_first):
    torch = pytest.importorskip("torch")
    kw = {"dim_feedforward": 12, "dropout": 0.0, "norm_first": norm_first, "activation": "gelu"}
    ours = nn.Transformer(8, 2, 2, 2, **kw)
    theirs = torch.nn.Transformer(8, 2, 2, 2, **kw)
    _perturb(ours, 3)
    src_pad = np.zeros((2, 5), bool)
    src_pad[0, -2:] = True

    def run(model, lib, src, tgt):
        mask = model.generate_square_subsequent_mask(4)
        return model(src, tgt, tgt_mask=mask, src_key_padding_mask=lib.tensor(src_pad),
                     memory_key_padding_mask=lib.tensor(src_pad), tgt_is_causal=True)

    check_parity(ours, theirs, lambda **t: run(ours, ta, **t), lambda **t: run(theirs, torch, **t),
                 {"src": _rand(5, 2, 8), "tgt": _rand(4, 2, 8, seed=1)}, rtol=2e-4, atol=3e-5)


def test_encoder_stack_state_dict_keys_equal_torch():
    torch = pytest.importorskip("torch")
    ours = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16), 2, norm=nn.LayerNorm(8))
    theirs = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(8, 2, 16), 2, norm=torch.nn.LayerNorm(8),
                                         enable_nested_tensor=False)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    dec_ours = nn.TransformerDecoder(nn.TransformerDecoderLayer(8, 2, 16), 2)
    dec_theirs = torch.nn.TransformerDecoder(torch.nn.TransformerDecoderLayer(8, 2, 16), 2)
    assert list(dec_ours.state_dict()) == list(dec_theirs.state_dict())
