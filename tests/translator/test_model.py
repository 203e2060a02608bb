"""The Transformer of models/transformer.py: shapes, tying, masks, the key/value cache, gradients, learning.

Small models (d_model 16-64) on random token ids keep every test fast; the learning tests train for real.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_attn as ta
from models.transformer import (
    OLD_NAMES,
    PRESETS,
    Transformer,
    build_model,
    count_parameters,
    upgrade_optimizer_state_dict,
)
from tests.nn.reference import (
    as_float64,
    causal,
    decoder_layer,
    encoder_layer,
    label_smoothed_cross_entropy,
    layer_norm,
)
from tinygrad_attn import nn
from tinygrad_attn.nn.positional import sinusoids

PAD, BOS, EOS = 0, 2, 3
V = 23  # a small joint vocabulary: ids 4..22 are "words"


@functools.cache
def small_model(norm_first: bool = False, seed: int = 0) -> Transformer:
    ta.manual_seed(seed)
    model = Transformer(V, d_model=32, n_heads=4, n_encoder_layers=2, n_decoder_layers=2, d_ff=64, dropout=0.1,
                        norm_first=norm_first)
    return model.eval()


def random_batch(rng: np.random.Generator, batch: int, src_len: int, tgt_len: int,
                 ragged: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Source rows of random words + eos, right-padded to different lengths; target rows bos + words."""
    src = np.full((batch, src_len), PAD, dtype=np.int64)
    for i in range(batch):
        n = int(rng.integers(1, src_len)) if ragged else src_len - 1
        src[i, :n] = rng.integers(4, V, n)
        src[i, n] = EOS
    tgt = rng.integers(4, V, (batch, tgt_len))
    tgt[:, 0] = BOS
    return src, tgt


def logits_of(model: Transformer, src: np.ndarray, tgt: np.ndarray) -> np.ndarray:
    with ta.no_grad():
        return model(src, tgt).numpy()


# ---- construction ------------------------------------------------------------------------------------------


def test_forward_shapes_and_dtypes():
    model = small_model()
    src, tgt = random_batch(np.random.default_rng(0), 3, 7, 5)
    with ta.no_grad():
        memory, src_keep = model.encode(src)
        logits = model.decode(tgt, memory, src_keep)
    assert memory.shape == (3, 7, 32) and memory.dtype == np.float32
    assert src_keep.shape == (3, 7) and src_keep.dtype == np.bool_
    np.testing.assert_array_equal(src_keep.numpy(), src != PAD)
    assert logits.shape == (3, 5, V) and logits.dtype == np.float32
    np.testing.assert_allclose(logits.numpy(), logits_of(model, src, tgt), rtol=1e-6, atol=1e-6)


def test_one_shared_embedding_is_the_output_projection():
    model = small_model()
    big = [name for name, p in model.named_parameters() if V in p.shape]
    assert big == ["embedding.weight"]  # no separate output matrix: source, target and softmax share it
    src, tgt = random_batch(np.random.default_rng(1), 2, 5, 4)
    with ta.no_grad():
        memory, src_keep = model.encode(src)
        h = model.decode_hidden(tgt, memory, src_keep).numpy()
        logits = model.decode(tgt, memory, src_keep).numpy()
    np.testing.assert_allclose(logits, h @ model.embedding.weight.numpy().T, rtol=1e-5, atol=1e-5)
    # and the projection's gradient reaches that same Parameter
    ta.manual_seed(0)
    fresh = Transformer(V, d_model=16, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, d_ff=32, dropout=0.0)
    h = ta.randn(3, 16)
    fresh.project(h).sum().backward()
    np.testing.assert_allclose(fresh.embedding.weight.grad.numpy(), np.broadcast_to(h.numpy().sum(0), (V, 16)),
                               rtol=1e-5, atol=1e-5)


def test_untied_output_projection_is_separate():
    model = Transformer(V, d_model=16, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, d_ff=32,
                        tie_embeddings=False)
    assert model.output_proj.weight is not model.embedding.weight
    assert sum(p.numel() for p in model.parameters()) == count_parameters(
        V, d_model=16, n_encoder_layers=1, n_decoder_layers=1, d_ff=32, tie_embeddings=False)


@pytest.mark.parametrize("norm_first", [False, True])
def test_parameter_count_formula(norm_first):
    for hp in [dict(d_model=32, n_heads=4, n_encoder_layers=2, n_decoder_layers=3, d_ff=48),
               dict(d_model=24, n_heads=3, n_encoder_layers=0, n_decoder_layers=1, d_ff=8)]:
        model = Transformer(101, norm_first=norm_first, **hp)
        assert sum(p.numel() for p in model.parameters()) == count_parameters(101, norm_first=norm_first, **hp)


def test_presets_match_the_documented_sizes():
    assert {k: (p["d_model"], p["n_encoder_layers"], p["n_decoder_layers"], p["n_heads"], p["d_ff"])
            for k, p in PRESETS.items() if k != "tiny"} == {"small": (256, 3, 3, 4, 1024), "base": (512, 6, 6, 8, 2048)}
    assert count_parameters(8000, **PRESETS["tiny"]) == 2_412_544
    assert count_parameters(8000, **PRESETS["small"]) == 7_577_600
    assert count_parameters(8000, **PRESETS["base"]) == 48_234_496


def test_initialisation():
    ta.manual_seed(3)
    d = 64
    model = Transformer(500, d_model=d, n_heads=4, n_encoder_layers=1, n_decoder_layers=1, d_ff=128)
    emb = model.embedding.weight.numpy()
    assert np.all(emb[PAD] == 0)
    assert abs(emb[1:].std() - d**-0.5) < 0.1 * d**-0.5  # N(0, d^-1/2), tied with the output projection
    bound = math.sqrt(6 / (2 * d))  # xavier-uniform of one d x d projection
    for attn in (model.encoder_layers[0].self_attn, model.decoder_layers[0].multihead_attn):
        w = attn.in_proj_weight.numpy()
        assert w.shape == (3 * d, d) and np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
        assert np.all(attn.in_proj_bias.numpy() == 0) and np.all(attn.out_proj.bias.numpy() == 0)
    w1 = model.encoder_layers[0].linear1.weight.numpy()
    bound1 = math.sqrt(6 / (d + 128))
    assert np.abs(w1).max() <= bound1 and np.abs(w1).max() > 0.95 * bound1
    assert np.all(model.decoder_layers[0].linear2.bias.numpy() == 0)


def test_embedding_is_scaled_tokens_plus_the_papers_positions():
    model = Transformer(V, d_model=8, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, d_ff=8,
                        max_positions=4).eval()
    tokens = np.array([[5, 6, 7, 8, 9, 10, 11]])
    table = sinusoids(10, 8)
    pos, i = 6, 1
    np.testing.assert_allclose(table[pos, 2 * i], math.sin(pos / 10000 ** (2 * i / 8)), rtol=1e-6)
    np.testing.assert_allclose(table[pos, 2 * i + 1], math.cos(pos / 10000 ** (2 * i / 8)), rtol=1e-6)
    emb = model.embedding.weight.numpy()[tokens] * math.sqrt(8)
    with ta.no_grad():  # 7 positions from a table of 4: it grows; and from offset 3 on, as a cache needs
        np.testing.assert_allclose(model.embed(ta.tensor(tokens)).numpy(), emb + table[:7], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(model.embed(ta.tensor(tokens[:, :2]), offset=3).numpy(),
                                   emb[:, :2] + table[3:5], rtol=1e-6, atol=1e-6)


def test_the_paper_table_names_code_that_exists():
    """Every ``nn.X``, ``F.X``, ``Transformer.X`` or ``_Layer.X`` in the table at the top of models/transformer.py
    names an attribute that exists (a renamed method must be renamed there too)."""
    import re

    import models.transformer as module
    import tinygrad_attn.functional as F
    from tinygrad_attn.nn.transformer import _Layer

    names = re.findall(r"``((?:nn|F|Transformer|_Layer)\.[\w.]+)``", module.__doc__)
    assert len(names) >= 10
    roots = {"nn": nn, "F": F, "Transformer": Transformer, "_Layer": _Layer}
    for name in names:
        obj = roots[name.split(".")[0]]
        for part in name.split(".")[1:]:
            assert hasattr(obj, part), f"{name}: no {part}"
            obj = getattr(obj, part)


def test_bad_hyperparameters_are_named():
    with pytest.raises(ValueError, match="divisible by n_heads"):
        Transformer(10, d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="pad_id"):
        Transformer(10, d_model=8, n_heads=2, pad_id=10)
    with pytest.raises(ValueError, match=r"attention_dropout=1\.0 must be in \[0, 1\)"):
        Transformer(10, d_model=8, n_heads=2, attention_dropout=1.0)
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        build_model(10, preset="huge")
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        build_model(10, preset="tiny", d_modle=64)
    model = build_model(40, preset="tiny", d_model=16, n_heads=2, d_ff=8)
    assert (model.d_model, model.n_heads, model.n_encoder_layers, model.d_ff) == (16, 2, 3, 8)
    with pytest.raises(ValueError, match="integer token ids"):
        model(np.zeros((2, 3), np.float32), np.zeros((2, 3), np.int64))


# ---- masks -------------------------------------------------------------------------------------------------


@given(st.integers(0, 2**31 - 1), st.integers(1, 6), st.booleans())
def test_future_target_tokens_never_change_earlier_logits(seed, t, norm_first):
    model = small_model(norm_first)
    rng = np.random.default_rng(seed)
    src, tgt = random_batch(rng, 2, 6, 7)
    changed = tgt.copy()
    changed[:, t:] = rng.integers(0, V, (2, 7 - t))  # anything from position t on, pads included
    a, b = logits_of(model, src, tgt), logits_of(model, src, changed)
    np.testing.assert_allclose(a[:, :t], b[:, :t], rtol=1e-5, atol=1e-5)
    if t < 7:
        assert not np.allclose(a[:, t:], b[:, t:])  # the mask hides the future, nothing else


@given(st.integers(0, 2**31 - 1), st.integers(1, 4), st.booleans())
def test_source_padding_never_changes_outputs(seed, extra, norm_first):
    model = small_model(norm_first)
    rng = np.random.default_rng(seed)
    src, tgt = random_batch(rng, 3, 6, 5)
    padded = np.concatenate([src, np.full((3, extra), PAD)], axis=1)  # more padding columns
    np.testing.assert_allclose(logits_of(model, padded, tgt), logits_of(model, src, tgt), rtol=1e-5, atol=1e-5)
    # What sits at padded positions is never attended to: give the pad token another embedding.
    saved = model.embedding.weight.data[PAD].copy()
    try:
        model.embedding.weight.data[PAD] = rng.standard_normal(32).astype(np.float32)
        np.testing.assert_allclose(logits_of(model, padded, tgt), logits_of(model, src, tgt), rtol=1e-5, atol=1e-5)
    finally:
        model.embedding.weight.data[PAD] = saved


def test_a_sentence_gets_the_same_logits_alone_and_in_a_padded_batch():
    model = small_model()
    src, tgt = random_batch(np.random.default_rng(5), 4, 9, 6)
    batched = logits_of(model, src, tgt)
    for i in range(4):
        n = int((src[i] != PAD).sum())
        np.testing.assert_allclose(logits_of(model, src[i : i + 1, :n], tgt[i : i + 1]), batched[i : i + 1],
                                   rtol=1e-5, atol=1e-5)


# ---- the key/value cache -----------------------------------------------------------------------------------


@pytest.mark.parametrize("norm_first", [False, True])
def test_incremental_decoding_with_the_cache_equals_full_recomputation(norm_first):
    model = small_model(norm_first)
    src, tgt = random_batch(np.random.default_rng(7), 3, 8, 12)
    full = logits_of(model, src, tgt)  # every position computed at once, causal mask
    with ta.no_grad():
        memory, src_keep = model.encode(src)
        cache = model.init_cache()  # empty: the first step projects the encoder's keys/values
        steps = [model.decode(tgt[:, t : t + 1], memory, src_keep, cache).numpy() for t in range(12)]
        assert cache.length == 12
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, rtol=1e-5, atol=1e-5)
    with ta.no_grad():  # the encoder's keys/values projected up front, then repeated (as beam search does)
        cache = model.init_cache(memory)
        cache.reorder(np.array([1, 1, 2]))
        twice = model.decode(tgt[[1, 1, 2], :4], memory[ta.tensor([1, 1, 2])], src_keep[ta.tensor([1, 1, 2])], cache)
    np.testing.assert_allclose(twice.numpy(), full[[1, 1, 2], :4], rtol=1e-5, atol=1e-5)
    # Several positions per call, and rows reordered in between (as beam search does): a permutation with
    # repeats that overwrites rows it reads, one that keeps a row in place, and one that drops a row.
    for order in (np.array([2, 0, 0]), np.array([2, 1, 0]), np.array([2, 0])):
        with ta.no_grad():
            cache = model.init_cache()
            first = model.decode(tgt[:, :5], memory, src_keep, cache).numpy()
            cache.reorder(order)
            rest = model.decode(tgt[order, 5:], memory[ta.tensor(order)], src_keep[ta.tensor(order)], cache).numpy()
        np.testing.assert_allclose(first, full[:, :5], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(rest, full[order, 5:], rtol=1e-5, atol=1e-5)


def test_the_cache_is_for_inference_only():
    model = small_model()
    src, tgt = random_batch(np.random.default_rng(0), 1, 4, 2)
    memory, src_keep = model.encode(src)
    with pytest.raises(RuntimeError, match="no_grad"):
        model.decode(tgt, memory, src_keep, model.init_cache())


def test_attention_weights_are_distributions_over_real_tokens():
    model = small_model()
    src, tgt = random_batch(np.random.default_rng(2), 2, 7, 4)
    with ta.no_grad():
        memory, src_keep, enc = model.encode(src, return_attention=True)
        logits, dec = model.decode(tgt, memory, src_keep, return_attention=True)
    np.testing.assert_allclose(logits.numpy(), logits_of(model, src, tgt), rtol=1e-5, atol=1e-5)
    assert len(enc) == 2 and enc[0].shape == (2, 4, 7, 7)
    assert dec["cross"][1].shape == (2, 4, 4, 7) and dec["self"][0].shape == (2, 4, 4, 4)
    for w in enc + dec["cross"] + dec["self"]:
        np.testing.assert_allclose(w.numpy().sum(-1), 1.0, rtol=1e-5)
    pads = src == PAD
    assert np.all(enc[0].numpy()[:, :, :, pads[0]][0] == 0) and np.all(dec["cross"][0].numpy()[1][..., pads[1]] == 0)
    assert np.all(np.triu(dec["self"][1].numpy()[0, 0], 1) == 0)  # no attention to the future


# ---- the whole model against a NumPy forward ---------------------------------------------------------------


def _numpy_loss(model: Transformer, src: np.ndarray, tgt_in: np.ndarray, tgt_out: np.ndarray,
                label_smoothing: float) -> float:
    """The model written out in NumPy (tests/nn/reference.py) from its state dict: embeddings times sqrt(D)
    plus sinusoids, the encoder and decoder layers, the tied projection, the label-smoothed loss summed."""
    P = as_float64(model.state_dict())
    D, H = model.d_model, model.n_heads
    pe = sinusoids(64, D).astype(np.float64)

    def embed(ids: np.ndarray) -> np.ndarray:
        return P["embedding.weight"][ids] * math.sqrt(D) + pe[: ids.shape[1]]

    src_allowed = (src != PAD)[:, None, :]
    x = embed(src)
    for i in range(model.n_encoder_layers):
        x = encoder_layer(x, P, f"encoder_layers.{i}.", H, src_allowed, model.norm_first)
    if model.norm_first:
        x = layer_norm(x, P, "encoder_norm.")
    y = embed(tgt_in)
    for i in range(model.n_decoder_layers):
        y = decoder_layer(y, x, P, f"decoder_layers.{i}.", H, causal(tgt_in.shape[1]), src_allowed, model.norm_first)
    if model.norm_first:
        y = layer_norm(y, P, "decoder_norm.")
    return label_smoothed_cross_entropy(y @ P["embedding.weight"].T, tgt_out, label_smoothing, PAD)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_label_smoothed_loss_equals_a_numpy_forward(norm_first, label_smoothing):
    """The summed loss of the whole model (float64, eval mode) equals the NumPy forward's, with and without
    label smoothing, post-LN and pre-LN; padded source keys and padded targets included."""
    ta.manual_seed(5)
    model = Transformer(V, d_model=12, n_heads=3, n_encoder_layers=2, n_decoder_layers=2, d_ff=20,
                        norm_first=norm_first).double().eval()
    rng = np.random.default_rng(6)
    with ta.no_grad():  # random biases and LayerNorm parameters too (they start at zeros and ones)
        for name, p in model.named_parameters():
            if name != "embedding.weight":
                p.data[...] = rng.standard_normal(p.shape) * 0.3
    src, tgt = random_batch(rng, 3, 7, 6)
    tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:].copy()
    tgt_out[2, -2:] = PAD
    loss, n = model.loss(model(src, tgt_in), tgt_out, label_smoothing=label_smoothing)
    assert n == 13
    np.testing.assert_allclose(loss.item(), _numpy_loss(model, src, tgt_in, tgt_out, label_smoothing), rtol=1e-10)


# ---- checkpoints written before the model was built from nn's blocks ----------------------------------------


def _old_state_dict(rng: np.random.Generator, D: int, d_ff: int) -> dict[str, np.ndarray]:
    """A state dict under the names the model had before (literal names; one layer per stack, pre-LN)."""
    def r(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    def ffn_and_norms(prefix: str, norms: int) -> dict[str, np.ndarray]:
        out = {prefix + "ffn.w_1.weight": r(d_ff, D), prefix + "ffn.w_1.bias": r(d_ff),
               prefix + "ffn.w_2.weight": r(D, d_ff), prefix + "ffn.w_2.bias": r(D)}
        for i in range(1, norms + 1):
            out.update({prefix + f"norm{i}.weight": r(D), prefix + f"norm{i}.bias": r(D)})
        return out

    return {
        "embedding.weight": r(V, D),
        "encoder_layers.0.self_attn.qkv_proj.weight": r(3 * D, D),
        "encoder_layers.0.self_attn.qkv_proj.bias": r(3 * D),
        "encoder_layers.0.self_attn.out_proj.weight": r(D, D),
        "encoder_layers.0.self_attn.out_proj.bias": r(D),
        **ffn_and_norms("encoder_layers.0.", 2),
        "decoder_layers.0.self_attn.qkv_proj.weight": r(3 * D, D),
        "decoder_layers.0.self_attn.qkv_proj.bias": r(3 * D),
        "decoder_layers.0.self_attn.out_proj.weight": r(D, D),
        "decoder_layers.0.self_attn.out_proj.bias": r(D),
        "decoder_layers.0.cross_attn.q_proj.weight": r(D, D),
        "decoder_layers.0.cross_attn.q_proj.bias": r(D),
        "decoder_layers.0.cross_attn.kv_proj.weight": r(2 * D, D),
        "decoder_layers.0.cross_attn.kv_proj.bias": r(2 * D),
        "decoder_layers.0.cross_attn.out_proj.weight": r(D, D),
        "decoder_layers.0.cross_attn.out_proj.bias": r(D),
        **ffn_and_norms("decoder_layers.0.", 3),
        "encoder_norm.weight": r(D), "encoder_norm.bias": r(D), "decoder_norm.weight": r(D), "decoder_norm.bias": r(D),
    }


def test_a_state_dict_with_the_old_names_loads():
    """Each old tensor lands under its new name; cross-attention's Q rows on top of its K/V rows, the layout
    of ``in_proj_weight`` ([W_q; W_k; W_v], as the old kv_proj was [W_k; W_v])."""
    old = _old_state_dict(np.random.default_rng(7), 8, 12)
    model = Transformer(V, d_model=8, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, d_ff=12, norm_first=True)
    model.load_state_dict(old)
    new = {k: v.numpy() for k, v in model.state_dict().items()}
    assert len(new) == len(old) - 2  # two pairs became two stacked tensors
    renamed = {
        "encoder_layers.0.self_attn.qkv_proj.weight": "encoder_layers.0.self_attn.in_proj_weight",
        "decoder_layers.0.self_attn.qkv_proj.bias": "decoder_layers.0.self_attn.in_proj_bias",
        "decoder_layers.0.cross_attn.out_proj.weight": "decoder_layers.0.multihead_attn.out_proj.weight",
        "encoder_layers.0.ffn.w_1.weight": "encoder_layers.0.linear1.weight",
        "decoder_layers.0.ffn.w_2.bias": "decoder_layers.0.linear2.bias",
        "decoder_layers.0.norm3.weight": "decoder_layers.0.norm3.weight",
        "encoder_norm.bias": "encoder_norm.bias",
    }
    for old_name, new_name in renamed.items():
        np.testing.assert_array_equal(new[new_name], old[old_name], err_msg=old_name)
    for part in ("weight", "bias"):
        np.testing.assert_array_equal(new[f"decoder_layers.0.multihead_attn.in_proj_{part}"], np.concatenate(
            [old[f"decoder_layers.0.cross_attn.q_proj.{part}"], old[f"decoder_layers.0.cross_attn.kv_proj.{part}"]]))
    assert set(OLD_NAMES.values()) <= {k.split(".", 2)[2] for k in new if k.startswith("decoder_layers.0.")}


def test_an_incomplete_old_state_dict_is_reported_by_name():
    old = _old_state_dict(np.random.default_rng(8), 8, 12)
    del old["decoder_layers.0.cross_attn.kv_proj.weight"]
    model = Transformer(V, d_model=8, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, d_ff=12, norm_first=True)
    with pytest.raises(RuntimeError, match=r"(?s)Missing.*multihead_attn\.in_proj_weight.*Unexpected.*q_proj\.weight"):
        model.load_state_dict(old)


def test_an_old_optimizer_state_is_renumbered_for_the_new_parameters():
    """Adam's state is keyed by parameter position; an old run's positions follow the old parameter order
    (that of ``_old_state_dict``). Each moment is filled with its old position, so where it lands shows."""
    old = _old_state_dict(np.random.default_rng(9), 8, 12)
    model = Transformer(V, d_model=8, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, d_ff=12, norm_first=True)
    optimizer = ta.optim.Adam(model.parameters())
    group = {**optimizer.state_dict()["param_groups"][0], "params": list(range(len(old)))}
    saved = {"state": {i: {"step": 3, "exp_avg": np.full(a.shape, float(i), np.float32),
                           "exp_avg_sq": np.full(a.shape, i + 0.5, np.float32)} for i, a in enumerate(old.values())},
             "param_groups": [group]}
    optimizer.load_state_dict(upgrade_optimizer_state_dict(saved, old, model))
    position = {name: float(i) for i, name in enumerate(old)}
    params = dict(model.named_parameters())

    def moment(name: str) -> np.ndarray:
        return optimizer.state[params[name]]["exp_avg"].numpy()

    np.testing.assert_array_equal(moment("encoder_layers.0.linear1.weight"),
                                  position["encoder_layers.0.ffn.w_1.weight"])
    np.testing.assert_array_equal(moment("decoder_layers.0.norm3.bias"), position["decoder_layers.0.norm3.bias"])
    np.testing.assert_array_equal(moment("decoder_layers.0.multihead_attn.in_proj_weight"), np.repeat(
        [position["decoder_layers.0.cross_attn.q_proj.weight"], position["decoder_layers.0.cross_attn.kv_proj.weight"]],
        [8, 16])[:, None] * np.ones((1, 8)))
    assert optimizer.state[params["decoder_layers.0.multihead_attn.in_proj_bias"]]["step"] == 3
    assert len(optimizer.state) == len(params)
    current = optimizer.state_dict()  # saved with the new names: passed through as it is
    assert upgrade_optimizer_state_dict(current, model.state_dict(), model) is current


# ---- gradients ---------------------------------------------------------------------------------------------


def _substitute(module: ta.nn.Module, name: str, tensor: ta.Tensor) -> None:
    """Make ``module.<name>`` read ``tensor`` (a gradcheck input) instead of its Parameter."""
    module._parameters[name] = tensor


def test_gradcheck_of_the_loss_in_float64():
    ta.manual_seed(1)
    model = Transformer(11, d_model=8, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, d_ff=12, dropout=0.0)
    model.double()
    src = np.array([[5, 6, 7, EOS], [8, EOS, PAD, PAD]])
    tgt_in = np.array([[BOS, 9, 4], [BOS, 10, PAD]])
    tgt_out = np.array([[9, 4, EOS], [10, EOS, PAD]])
    layer = model.decoder_layers[0]
    targets = [(layer.multihead_attn, "in_proj_weight"), (model.encoder_layers[0].norm1, "weight"),
               (model.embedding, "weight")]

    def loss(*weights: ta.Tensor) -> ta.Tensor:
        for (module, name), w in zip(targets, weights):
            _substitute(module, name, w)
        return model.loss(model(src, tgt_in), tgt_out, label_smoothing=0.1)[0]

    weights = [ta.tensor(getattr(m, n).numpy(), requires_grad=True) for m, n in targets]
    assert weights[0].dtype == np.float64
    assert ta.gradcheck(loss, weights, eps=1e-6, atol=1e-6, rtol=1e-4)


# ---- learning ----------------------------------------------------------------------------------------------


def _train(model: Transformer, batches: list[tuple[np.ndarray, np.ndarray, np.ndarray]], steps: int, lr: float,
           warmup: int = 0, decay: int = 0) -> float:
    """Adam for ``steps`` steps (linear warmup over ``warmup`` steps, linear decay over the last ``decay``);
    returns the last per-token loss (no label smoothing)."""
    opt = ta.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.98), eps=1e-9)
    model.train()
    per_token = float("inf")
    for step in range(1, steps + 1):
        factor = min(1.0, step / warmup if warmup else 1.0, (steps - step) / decay + 0.05 if decay else 1.0)
        for group in opt.param_groups:
            group["lr"] = lr * factor
        src, tgt_in, tgt_out = batches[step % len(batches)]
        loss, n = model.loss(model(src, tgt_in), tgt_out, label_smoothing=0.0)
        opt.zero_grad()
        (loss / n).backward()
        opt.step()
        per_token = loss.item() / n
    model.eval()
    return per_token


def _teacher_forcing(pairs: list[tuple[list[int], list[int]]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from models.translator.batching import pad_rows

    return (pad_rows([s + [EOS] for s, _ in pairs]), pad_rows([[BOS] + t for _, t in pairs]),
            pad_rows([t + [EOS] for _, t in pairs]))


def test_overfits_a_handful_of_sentence_pairs():
    ta.manual_seed(0)
    rng = np.random.default_rng(0)
    pairs = [(list(rng.integers(4, V, rng.integers(3, 8))), list(rng.integers(4, V, rng.integers(3, 8))))
             for _ in range(6)]
    model = Transformer(V, d_model=32, n_heads=4, n_encoder_layers=1, n_decoder_layers=1, d_ff=64, dropout=0.0)
    batch = _teacher_forcing(pairs)
    assert _train(model, [batch], steps=1, lr=0.0) > 2.0  # about log(V) before training
    assert _train(model, [batch], steps=150, lr=3e-3, warmup=10) < 0.02
    from models.translator.search import greedy_decode

    assert greedy_decode(model, batch[0], BOS, EOS) == [t for _, t in pairs]


def test_learns_to_reverse_sequences_exactly():
    """A synthetic task: output the source tokens in reverse order. Learned to 100% exact match on unseen
    sequences, greedy and beam: 600 steps of 64 sequences, about 10 s on one CPU core. (Under heavy load,
    multithreaded BLAS on such small matrices can take several times longer: OPENBLAS_NUM_THREADS=1 helps.)"""
    from models.translator.search import beam_search, greedy_decode

    ta.manual_seed(0)
    rng = np.random.default_rng(1)
    vocab = 14  # 10 "words"

    def sample(n: int) -> list[tuple[list[int], list[int]]]:
        seqs = [[int(w) for w in rng.integers(4, vocab, rng.integers(2, 7))] for _ in range(n)]
        return [(s, s[::-1]) for s in seqs]

    model = Transformer(vocab, d_model=32, n_heads=4, n_encoder_layers=2, n_decoder_layers=2, d_ff=64,
                        dropout=0.0)
    batches = [_teacher_forcing(sample(64)) for _ in range(600)]
    assert _train(model, batches, steps=600, lr=3e-3, warmup=30, decay=300) < 0.05
    test = sample(100)
    src = _teacher_forcing(test)[0]
    expected = [t for _, t in test]
    assert greedy_decode(model, src, BOS, EOS) == expected
    assert beam_search(model, src, BOS, EOS, beam_size=3) == expected


def _torch_transformer(torch, P: dict, src, tgt_in, n_heads: int, n_layers: int, d_model: int):
    """The same model written directly in PyTorch ops, reading the weights from ``P`` (name -> tensor)."""
    F = torch.nn.functional

    def linear(x, name):
        return x @ P[name + ".weight"].T + P[name + ".bias"]

    def norm(x, name):
        return F.layer_norm(x, (d_model,), P[name + ".weight"], P[name + ".bias"])

    def heads(x, n):
        B, T, _ = x.shape
        return x.reshape(B, T, n, n_heads, d_model // n_heads).permute(2, 0, 3, 1, 4)

    def attend(q, k, v, mask):
        B, _, T, _ = q.shape
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2).reshape(B, T, d_model)

    pe = torch.from_numpy(sinusoids(64, d_model))
    embed = lambda ids: P["embedding.weight"][ids] * math.sqrt(d_model) + pe[: ids.shape[1]]  # noqa: E731
    src_mask = (src != PAD)[:, None, None, :]
    x = embed(src)
    def packed(x, name, rows):  # rows of PyTorch's in_proj_weight: [0, D) W_q, [D, 2D) W_k, [2D, 3D) W_v
        return x @ P[name + ".in_proj_weight"][rows].T + P[name + ".in_proj_bias"][rows]

    every, query, key_value = slice(None), slice(0, d_model), slice(d_model, None)
    for i in range(n_layers):
        p = f"encoder_layers.{i}."
        q, k, v = heads(packed(x, p + "self_attn", every), 3)
        x = norm(x + linear(attend(q, k, v, src_mask), p + "self_attn.out_proj"), p + "norm1")
        x = norm(x + linear(torch.relu(linear(x, p + "linear1")), p + "linear2"), p + "norm2")
    T = tgt_in.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    y = embed(tgt_in)
    for i in range(n_layers):
        p = f"decoder_layers.{i}."
        q, k, v = heads(packed(y, p + "self_attn", every), 3)
        y = norm(y + linear(attend(q, k, v, causal), p + "self_attn.out_proj"), p + "norm1")
        (q,) = heads(packed(y, p + "multihead_attn", query), 1)
        k, v = heads(packed(x, p + "multihead_attn", key_value), 2)
        y = norm(y + linear(attend(q, k, v, src_mask), p + "multihead_attn.out_proj"), p + "norm2")
        y = norm(y + linear(torch.relu(linear(y, p + "linear1")), p + "linear2"), p + "norm3")
    return y @ P["embedding.weight"].T


def test_training_matches_a_pytorch_twin_step_by_step():
    """The whole stack (model, fused ops, autograd, Adam) against PyTorch: same initial weights, same
    batches, dropout off; the loss after every Adam step agrees to float32 precision."""
    torch = pytest.importorskip("torch")
    ta.manual_seed(2)
    model = Transformer(V, d_model=32, n_heads=4, n_encoder_layers=2, n_decoder_layers=2, d_ff=64, dropout=0.0)
    P = {name: torch.tensor(t.numpy(), requires_grad=True) for name, t in model.state_dict().items()}
    ours = ta.optim.Adam(model.parameters(), lr=3e-3, betas=(0.9, 0.98), eps=1e-9)
    theirs = torch.optim.Adam(P.values(), lr=3e-3, betas=(0.9, 0.98), eps=1e-9)
    rng = np.random.default_rng(3)
    for _ in range(12):
        src, tgt = random_batch(rng, 5, 9, 8)
        tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:].copy()
        tgt_out[rng.random(tgt_out.shape) < 0.15] = PAD  # some ignored positions
        loss, n = model.loss(model(src, tgt_in), tgt_out, label_smoothing=0.1)
        ours.zero_grad()
        (loss / n).backward()
        ours.step()
        logits = _torch_transformer(torch, P, torch.from_numpy(src), torch.from_numpy(tgt_in), 4, 2, 32)
        reference = torch.nn.functional.cross_entropy(logits.reshape(-1, V), torch.from_numpy(tgt_out).reshape(-1),
                                                      ignore_index=PAD, reduction="sum", label_smoothing=0.1)
        theirs.zero_grad()
        (reference / n).backward()
        theirs.step()
        np.testing.assert_allclose(loss.item(), reference.item(), rtol=2e-5)
    for name, p in model.named_parameters():
        ours_p, theirs_p = p.numpy(), P[name].detach().numpy()
        if name.endswith("in_proj_bias"):
            # The key bias adds q.b to every score of a query: softmax ignores it, its true gradient is 0,
            # and Adam turns each framework's rounding noise into steps of size lr. Compare the rest.
            ours_p, theirs_p = np.delete(ours_p, slice(32, 64)), np.delete(theirs_p, slice(32, 64))
        np.testing.assert_allclose(ours_p, theirs_p, rtol=1e-3, atol=1e-4, err_msg=name)


def test_attention_dropout_is_its_own_rate_and_off_in_the_presets():
    """Dropout on the attention weights is separate from the sublayer dropout; the presets leave it off,
    as the paper does."""
    model = Transformer(10, d_model=8, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, d_ff=8, dropout=0.1,
                        attention_dropout=0.2)
    rates = {name: m.dropout for name, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)}
    assert rates == {"encoder_layers.0.self_attn": 0.2, "decoder_layers.0.self_attn": 0.2,
                     "decoder_layers.0.multihead_attn": 0.2}
    sublayer_rates = {name: m.p for name, m in model.named_modules() if isinstance(m, nn.Dropout)}
    assert sublayer_rates == {"positional.dropout": 0.1, "encoder_layers.0.dropout": 0.0,  # none after the ReLU
                              "encoder_layers.0.dropout1": 0.1, "encoder_layers.0.dropout2": 0.1,
                              "decoder_layers.0.dropout": 0.0, "decoder_layers.0.dropout1": 0.1,
                              "decoder_layers.0.dropout2": 0.1, "decoder_layers.0.dropout3": 0.1}
    preset = build_model(10, preset="tiny", d_model=8, n_heads=2, d_ff=8)
    assert {m.dropout for m in preset.modules() if isinstance(m, nn.MultiheadAttention)} == {0.0}
