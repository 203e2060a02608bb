"""models/bert.py: BERT learns, attends both ways, ignores padding, and scores only the chosen positions."""

import numpy as np
import pytest

import tinygrad_attn as ta
import tinygrad_attn.functional as F
from models.bert import BERT, build_bert
from models.mlm.masking import IGNORE, mask_tokens

V = 40


def micro(**kw) -> BERT:
    ta.manual_seed(0)
    return BERT(V, **{**dict(d_model=32, n_heads=2, n_layers=2, d_ff=64, dropout=0.0, attention_dropout=0.0,
                             max_positions=16), **kw})


def batch(rng: np.random.Generator, b: int = 4, s: int = 10) -> np.ndarray:
    ids = rng.integers(5, V, size=(b, s))
    ids[:, 0], ids[:, -1] = 2, 3  # [CLS] ... [SEP]
    return ids


def test_overfits_one_masked_batch_and_one_classification_batch():
    rng = np.random.default_rng(0)
    model = micro()
    ids = batch(rng)
    inputs, labels = mask_tokens(ids, V, rng, mask_prob=0.3)
    opt = ta.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        loss = model.mlm_loss(inputs, None, labels)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
    _, logits, targets = model.mlm_loss(inputs, None, labels)
    assert loss.item() < 0.05
    assert (logits.numpy().argmax(-1) == targets).all()

    y = np.array([0, 1, 1, 0])
    for _ in range(60):
        loss = model.classification_loss(ids, None, y)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert (model.classify(ids).numpy().argmax(-1) == y).all()


def test_the_loss_is_cross_entropy_at_the_chosen_positions_only():
    rng = np.random.default_rng(1)
    model = micro()
    model.eval()
    ids = batch(rng)
    inputs, labels = mask_tokens(ids, V, rng)
    loss, _, _ = model.mlm_loss(inputs, None, labels)
    # Oracle: the head at every position, then only the chosen rows count.
    every = model.mlm_logits(model.encode(inputs), np.arange(ids.size)).numpy()
    chosen = labels.reshape(-1) != IGNORE
    top = every.max(-1, keepdims=True)
    logp = every - top - np.log(np.exp(every - top).sum(-1, keepdims=True))
    expected = -logp[chosen, labels.reshape(-1)[chosen]].mean()
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # The positions not chosen play no part: scoring the original token there too gives another loss.
    everywhere = -logp[np.arange(ids.size), ids.reshape(-1)].mean()
    assert abs(everywhere - loss.item()) > 1e-3
    other = labels.copy()
    first = np.flatnonzero(chosen)[0]
    other.reshape(-1)[first] = (labels.reshape(-1)[first] + 1 - 5) % (V - 5) + 5
    assert model.mlm_loss(inputs, None, other)[0].item() != pytest.approx(loss.item())


def test_gradients_reach_only_the_chosen_rows():
    model = micro()
    hidden = ta.randn(3, 7, 32, requires_grad=True)
    positions = np.array([1, 9, 20])
    logits = model.mlm_logits(hidden, positions)
    assert tuple(logits.shape) == (3, V)
    F.cross_entropy(logits, ta.tensor([4, 5, 6])).backward()
    rows = np.abs(hidden.grad.numpy()).reshape(-1, 32).sum(-1)
    assert set(np.flatnonzero(rows)) == {1, 9, 20}
    # the output projection is the token embedding (tied): it gets the head's gradient
    assert np.abs(model.token_embedding.weight.grad.numpy()).sum() > 0


def test_padding_never_changes_the_outputs_at_real_positions():
    rng = np.random.default_rng(2)
    model = micro()
    model.eval()
    ids = batch(rng, b=1, s=6)
    padded = np.concatenate([ids, np.zeros((1, 5), dtype=ids.dtype)], axis=1)
    segments = np.concatenate([np.zeros((1, 3)), np.ones((1, 8))], axis=1).astype(np.int64)
    with ta.no_grad():
        alone = model.encode(ids, segments[:, :6]).numpy()
        with_padding = model.encode(padded, segments).numpy()
        logits_alone = model.classify(ids, segments[:, :6]).numpy()
        logits_padded = model.classify(padded, segments).numpy()
    np.testing.assert_allclose(with_padding[:, :6], alone, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(logits_padded, logits_alone, rtol=1e-5, atol=1e-5)


def test_attention_is_bidirectional_and_segments_count():
    rng = np.random.default_rng(3)
    model = micro()
    model.eval()
    ids = batch(rng, b=1, s=8)
    later = ids.copy()
    later[0, 6] = 5 if ids[0, 6] != 5 else 6  # change a token near the end
    with ta.no_grad():
        a, b = model.encode(ids).numpy(), model.encode(later).numpy()
        seg = model.encode(ids, np.ones_like(ids)).numpy()
    assert np.abs(a[0, 1] - b[0, 1]).max() > 1e-4  # an earlier position sees a later token (no causal mask)
    assert np.abs(a - seg).max() > 1e-4
    _, weights = model.encode(ids, return_attention=True)
    w = weights[0].numpy()[0]
    assert w.shape == (2, 8, 8) and (np.triu(w, 1) > 0).any()  # weight above the diagonal: the full matrix


def test_bert_initialisation_and_presets():
    model = build_bert(500, "mini")
    w = model.layers[0].linear1.weight.numpy()
    assert abs(w.std() - 0.02) < 0.003 and abs(model.token_embedding.weight.numpy()[1:].std() - 0.02) < 0.003
    assert not model.token_embedding.weight.numpy()[0].any()  # [PAD]
    assert not model.layers[0].linear1.bias.numpy().any()
    assert build_bert(500, "mini", norm_first=True).layers[0].norm_first
    with pytest.raises(ValueError, match="unknown preset"):
        build_bert(500, "huge")
    with pytest.raises(ValueError, match="d_model=30 must be divisible by n_heads=4"):
        BERT(500, d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="longer than max_positions=16"):
        micro().encode(np.full((1, 17), 7))


def test_load_encoder_keeps_the_pretrained_body_and_starts_the_classifier_afresh():
    pretrained, fresh = micro(), micro(n_classes=2)
    for p in pretrained.parameters():
        p.data += 1.0
    loaded = fresh.load_encoder(pretrained.state_dict())
    assert "token_embedding.weight" in loaded and not any(k.startswith(("pooler.", "classifier.")) for k in loaded)
    np.testing.assert_array_equal(fresh.layers[1].linear2.weight.numpy(), pretrained.layers[1].linear2.weight.numpy())
    assert not np.array_equal(fresh.pooler.weight.numpy(), pretrained.pooler.weight.numpy())
