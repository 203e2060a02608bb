"""nn.init: each initialiser's statistics against its formula, in-place semantics, and layer defaults."""

from __future__ import annotations

import math

import numpy as np
import pytest

import tinygrad_attn as ta
from tinygrad_attn import nn
from tinygrad_attn.nn import init

SHAPE = (300, 400)  # 120k samples: the sample std is within ~0.5% of the true one


def _check_uniform(x: np.ndarray, bound: float) -> None:
    assert np.abs(x).max() <= bound
    assert np.abs(x).max() > 0.99 * bound  # the whole range is used
    assert abs(x.mean()) < 5 * bound / math.sqrt(3 * x.size)
    assert x.std() == pytest.approx(bound / math.sqrt(3), rel=0.02)


def _check_normal(x: np.ndarray, mean: float, std: float) -> None:
    assert abs(x.mean() - mean) < 5 * std / math.sqrt(x.size)
    assert x.std() == pytest.approx(std, rel=0.02)


@pytest.mark.parametrize("nonlinearity, param, gain", [
    ("linear", None, 1.0), ("conv2d", None, 1.0), ("sigmoid", None, 1.0), ("tanh", None, 5 / 3),
    ("relu", None, math.sqrt(2)), ("leaky_relu", None, math.sqrt(2 / (1 + 0.01**2))),
    ("leaky_relu", 0.2, math.sqrt(2 / 1.04)), ("leaky_relu", math.sqrt(5), math.sqrt(2 / 6)), ("selu", None, 0.75)])
def test_calculate_gain(nonlinearity, param, gain):
    assert init.calculate_gain(nonlinearity, param) == pytest.approx(gain)


def test_calculate_gain_rejects_unknown():
    with pytest.raises(ValueError, match="swish"):
        init.calculate_gain("swish")


def test_fans():
    assert init._calculate_fan_in_and_fan_out(ta.empty(5, 3)) == (3, 5)
    assert init._calculate_fan_in_and_fan_out(ta.empty(8, 4, 3, 2)) == (24, 48)  # receptive field 3 * 2
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init._calculate_fan_in_and_fan_out(ta.empty(5))


def test_uniform_and_normal_statistics():
    t = ta.empty(*SHAPE)
    x = init.uniform_(t, -2.0, 6.0).numpy()
    assert x.min() >= -2 and x.max() < 6
    assert x.mean() == pytest.approx(2.0, abs=0.05) and x.std() == pytest.approx(8 / math.sqrt(12), rel=0.02)
    _check_normal(init.normal_(t, 1.5, 0.3).numpy(), 1.5, 0.3)
    _check_normal(init.normal_(t).numpy(), 0.0, 1.0)


@pytest.mark.parametrize("shape", [SHAPE, (200, 30, 5, 4)])
def test_xavier(shape):
    fan_in, fan_out = shape[1] * math.prod(shape[2:]), shape[0] * math.prod(shape[2:])
    _check_uniform(init.xavier_uniform_(ta.empty(*shape), gain=2.0).numpy(), 2.0 * math.sqrt(6 / (fan_in + fan_out)))
    _check_normal(init.xavier_normal_(ta.empty(*shape)).numpy(), 0.0, math.sqrt(2 / (fan_in + fan_out)))


@pytest.mark.parametrize("a, mode, nonlinearity", [
    (0, "fan_in", "leaky_relu"), (math.sqrt(5), "fan_in", "leaky_relu"), (0, "fan_out", "relu"), (0.1, "fan_out",
                                                                                                    "leaky_relu")])
def test_kaiming(a, mode, nonlinearity):
    fan = SHAPE[1] if mode == "fan_in" else SHAPE[0]
    gain = math.sqrt(2.0) if nonlinearity == "relu" else math.sqrt(2 / (1 + a * a))
    _check_uniform(init.kaiming_uniform_(ta.empty(*SHAPE), a=a, mode=mode, nonlinearity=nonlinearity).numpy(),
                   gain * math.sqrt(3 / fan))
    _check_normal(init.kaiming_normal_(ta.empty(*SHAPE), a=a, mode=mode, nonlinearity=nonlinearity).numpy(), 0.0,
                  gain / math.sqrt(fan))


def test_kaiming_rejects_bad_mode():
    with pytest.raises(ValueError, match="fan_avg"):
        init.kaiming_uniform_(ta.empty(3, 3), mode="fan_avg")


def test_constant_zeros_ones():
    t = ta.empty(3, 4)
    np.testing.assert_array_equal(init.constant_(t, 2.5).numpy(), np.full((3, 4), 2.5))
    np.testing.assert_array_equal(init.zeros_(t).numpy(), np.zeros((3, 4)))
    np.testing.assert_array_equal(init.ones_(t).numpy(), np.ones((3, 4)))


@pytest.mark.parametrize("dtype", [ta.float32, ta.float64])
def test_in_place_on_a_parameter_without_recording(dtype):
    p = nn.Parameter(ta.zeros(20, 10, dtype=dtype))
    version, memory = p._version.value, p.data
    for fill in (init.xavier_uniform_, init.kaiming_normal_, init.normal_, init.uniform_, init.ones_):
        assert fill(p) is p
    assert p.data is memory and p.dtype == dtype
    assert p.is_leaf and p.grad_fn is None and p.requires_grad
    assert p._version.value == version + 5


def test_reproducible_with_manual_seed():
    ta.manual_seed(3)
    a = init.normal_(ta.empty(5, 5)).numpy()
    ta.manual_seed(3)
    np.testing.assert_array_equal(a, init.normal_(ta.empty(5, 5)).numpy())


def test_integer_tensors_are_refused():
    with pytest.raises(TypeError, match="floating"):
        init.normal_(ta.zeros(3, dtype=ta.int64))


# ---- layers start as PyTorch's do ------------------------------------------------------------------------------


def test_linear_default_init():
    lin = nn.Linear(400, 300)
    bound = 1 / math.sqrt(400)  # kaiming_uniform_(a=sqrt 5): gain sqrt(1/3), so sqrt(3) gain / sqrt(fan) = 1/sqrt(fan)
    _check_uniform(lin.weight.numpy(), bound)
    b = lin.bias.numpy()
    assert np.abs(b).max() <= bound and b.std() > 0.4 * bound


def test_embedding_default_init_and_padding_row():
    emb = nn.Embedding(500, 200, padding_idx=-1)
    assert emb.padding_idx == 499
    w = emb.weight.numpy()
    assert not w[499].any()
    _check_normal(w[:499], 0.0, 1.0)


def test_multihead_attention_default_init():
    mha = nn.MultiheadAttention(64, 4)
    _check_uniform(mha.in_proj_weight.numpy(), math.sqrt(6 / (64 + 192)))
    assert not mha.in_proj_bias.numpy().any() and not mha.out_proj.bias.numpy().any()
    assert np.abs(mha.out_proj.weight.numpy()).max() <= 1 / 8


def test_layer_norm_and_transformer_init():
    ln = nn.LayerNorm((3, 4))
    np.testing.assert_array_equal(ln.weight.numpy(), np.ones((3, 4)))
    np.testing.assert_array_equal(ln.bias.numpy(), np.zeros((3, 4)))
    model = nn.Transformer(d_model=32, nhead=4, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=64)
    w = model.encoder.layers[0].linear1.weight.numpy()  # xavier_uniform_ over every matrix
    assert np.abs(w).max() <= math.sqrt(6 / (32 + 64)) and np.abs(w).max() > 0.9 * math.sqrt(6 / 96)
