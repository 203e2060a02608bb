"""The GPT model (models/gpt.py): shape facts against nanoGPT, causality, the key/value cache, tying, init."""

from __future__ import annotations

import math

import numpy as np
import pytest

import tinygrad_attn as ta
from models.gpt import GPT, GPTConfig, count_parameters

TINY = dict(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16)


def _ids(shape: tuple[int, int], seed: int = 0, vocab: int = 11) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, vocab, shape)


def test_parameter_count_is_nanogpts() -> None:
    """nanoGPT's shakespeare_char CPU model (bias=True) prints "number of parameters: 0.80M": 801,664 without
    the position table (its get_num_params), from 4 x (12 E^2 + 13 E) + V E + 2 E with E = 128, V = 65."""
    model = GPT(GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128))
    assert model.num_parameters(non_embedding=True) == 4 * (12 * 128**2 + 13 * 128) + 65 * 128 + 2 * 128 == 801_664
    assert model.num_parameters() == 801_664 + 64 * 128


@pytest.mark.parametrize("kw", [{}, {"bias": False}, {"norm_first": False}, {"positions": "sinusoidal"},
                                {"bias": False, "norm_first": False}])
def test_count_parameters_matches_the_model(kw: dict) -> None:
    config = GPTConfig(**{**TINY, **kw})
    assert GPT(config).num_parameters() == count_parameters(config)


@pytest.mark.parametrize("kw", [{}, {"norm_first": False}, {"positions": "sinusoidal"}])
def test_the_future_never_leaks(kw: dict) -> None:
    """Changing token t + 1 changes no logit at positions <= t (and does change position t + 1's)."""
    ta.manual_seed(0)
    model = GPT(GPTConfig(**{**TINY, **kw})).eval()
    idx = _ids((2, 8))
    changed = idx.copy()
    t = 4
    changed[:, t + 1] = (changed[:, t + 1] + 1) % 11
    with ta.no_grad():
        a, b = model(ta.tensor(idx)).numpy(), model(ta.tensor(changed)).numpy()
    np.testing.assert_array_equal(a[:, : t + 1], b[:, : t + 1])
    assert np.abs(a[:, t + 1] - b[:, t + 1]).max() > 1e-4


@pytest.mark.parametrize("kw", [{}, {"norm_first": False}, {"positions": "sinusoidal"}, {"gelu": "tanh"}])
def test_cache_equals_recomputation(kw: dict) -> None:
    """The prompt through the cache, then one position at a time: the logits of the whole sequence at once."""
    ta.manual_seed(1)
    model = GPT(GPTConfig(**{**TINY, **kw})).eval()
    idx = _ids((3, 8), seed=1)
    with ta.no_grad():
        full = model(ta.tensor(idx)).numpy()
        cache = ta.nn.DecoderCache(2, cross_attention=False)
        steps = [model(ta.tensor(idx[:, :3]), cache=cache).numpy()]
        steps += [model(ta.tensor(idx[:, t : t + 1]), cache=cache).numpy() for t in range(3, 8)]
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, rtol=1e-5, atol=1e-5)


def test_generate_with_cache_equals_generate_without() -> None:
    """Same seed, same tokens, with the cache or recomputing every step, also past the block size (where the
    window slides)."""
    ta.manual_seed(2)
    model = GPT(GPTConfig(**TINY))
    prompt = _ids((2, 3), seed=2)
    cached = model.generate(prompt, 12, temperature=1.0, top_k=5, seed=7)
    recomputed = model.generate(prompt, 12, temperature=1.0, top_k=5, seed=7, use_cache=False)
    np.testing.assert_array_equal(cached, recomputed)
    assert cached.shape == (2, 15) and (cached[:, :3] == prompt).all()
    assert model.training  # generate restores the mode it found


def test_generate_costs_one_position_per_token_with_the_cache() -> None:
    """After the prompt, every forward call gets one position (while the context fits the block)."""
    ta.manual_seed(3)
    model = GPT(GPTConfig(**TINY))
    lengths: list[int] = []
    forward = model.forward

    def spy(idx, **kw):  # type: ignore[no-untyped-def]
        lengths.append(idx.shape[1])
        return forward(idx, **kw)

    model.forward = spy  # type: ignore[method-assign]
    list(model.generate_tokens(_ids((1, 4)), 4, seed=0))
    assert lengths == [4, 1, 1, 1, 1]


def test_block_size_limit_and_crop() -> None:
    model = GPT(GPTConfig(**TINY))
    with pytest.raises(ValueError, match="longer than the model's block_size"):
        model(ta.tensor(_ids((1, 9))))
    model.crop_block_size(4)
    assert model.config.block_size == 4 and model.position_embedding.weight.shape == (4, 16)
    with pytest.raises(ValueError, match="block_size"):
        model(ta.tensor(_ids((1, 5))))
    with pytest.raises(ValueError, match="crop_block_size"):
        model.crop_block_size(9)
    # A prompt longer than the block keeps its last block_size tokens.
    assert model.generate(_ids((1, 7)), 2, seed=0).shape == (1, 9)


def test_output_projection_is_the_token_embedding() -> None:
    """One Parameter: a token that never occurs in the input still gets a gradient (through the output
    projection), and the logits are the hidden states times the embedding matrix."""
    ta.manual_seed(4)
    model = GPT(GPTConfig(**TINY))
    idx = np.array([[1, 2, 3, 4]])
    loss = model.loss(model(ta.tensor(idx)), ta.tensor(np.array([[2, 3, 4, 5]])))
    loss.backward()
    grad = model.token_embedding.weight.grad.numpy()
    assert np.abs(grad[10]).max() > 0  # token 10: neither in the input nor a target
    assert not any(p.ndim == 2 and p.shape[0] == 11 for n, p in model.named_parameters() if "token_embedding" not in n)


def test_gpt2_initialisation() -> None:
    ta.manual_seed(5)
    model = GPT(GPTConfig(vocab_size=500, block_size=64, n_layer=3, n_head=4, n_embd=128))
    params = dict(model.named_parameters())
    assert abs(params["token_embedding.weight"].numpy().std() - 0.02) < 0.002
    assert abs(params["blocks.layers.0.self_attn.in_proj_weight"].numpy().std() - 0.02) < 0.002
    residual = 0.02 / math.sqrt(2 * 3)
    for name in ("blocks.layers.1.self_attn.out_proj.weight", "blocks.layers.1.linear2.weight"):
        assert abs(params[name].numpy().std() - residual) < 0.1 * residual
    assert (params["blocks.layers.2.norm1.weight"].numpy() == 1).all()
    assert (params["blocks.norm.weight"].numpy() == 1).all()
    assert (params["blocks.layers.0.linear1.bias"].numpy() == 0).all()
    assert (params["blocks.layers.0.self_attn.in_proj_bias"].numpy() == 0).all()


def test_overfits_one_batch() -> None:
    ta.manual_seed(6)
    model = GPT(GPTConfig(**TINY))
    idx = _ids((4, 9), seed=6)
    x, y = ta.tensor(idx[:, :-1]), ta.tensor(idx[:, 1:])
    optimizer = ta.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    for _ in range(150):
        loss = model.loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(loss.item()) < 0.2  # from ln(11) = 2.4


def test_attention_weights_are_causal() -> None:
    ta.manual_seed(7)
    model = GPT(GPTConfig(**TINY))
    w = model.attention_weights(ta.tensor(_ids((1, 6))))
    assert w.shape == (2, 2, 6, 6)
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-5)
    assert (w[..., np.triu_indices(6, 1)[0], np.triu_indices(6, 1)[1]] == 0).all()
