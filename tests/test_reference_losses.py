"""Forward values against NumPy references written from the definitions, with no PyTorch: weighted-mean
cross-entropy and NLL (ignore_index, label smoothing), and ``nn.LayerNorm`` with a non-trivial affine part and
an eps large enough to matter. These run where the PyTorch parity tests are skipped.
"""

from __future__ import annotations

import numpy as np
import pytest

import tinygrad_attn as ta
from tinygrad_attn import functional as F
from tinygrad_attn import nn

IGNORE = -1


def log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def reference_cross_entropy(x: np.ndarray, t: np.ndarray, w: np.ndarray, e: float) -> float:
    """The weighted mean of loss_i = -(1 - e) w_t log p_t - (e / C) sum_c w_c log p_c over the rows whose target
    is not ignored: sum_i loss_i / sum_i w[t_i] (not the row count)."""
    keep = t != IGNORE
    logp, tk = log_softmax(x[keep]), t[keep]
    n_classes = x.shape[-1]
    loss = -(1 - e) * w[tk] * logp[np.arange(len(tk)), tk] - (e / n_classes) * (logp * w).sum(-1)
    return float(loss.sum() / w[tk].sum())


def reference_nll(logp: np.ndarray, t: np.ndarray, w: np.ndarray) -> float:
    """sum_i -w[t_i] logp[i, t_i] / sum_i w[t_i], over the rows whose target is not ignored."""
    keep = t != IGNORE
    tk = t[keep]
    return float(-(w[tk] * logp[keep][np.arange(len(tk)), tk]).sum() / w[tk].sum())


def batch(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits (3, 4, 5) with classes last, targets (3, 4) with a quarter ignored, and uneven class weights."""
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 5, (3, 4))
    t[rng.random((3, 4)) < 0.25] = IGNORE
    t[0, 0] = 2
    return rng.standard_normal((3, 4, 5)) * 2, t, np.array([0.2, 3.0, 1.0, 0.5, 2.0])


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weighted_mean_cross_entropy_against_numpy(label_smoothing: float, seed: int) -> None:
    x, t, w = batch(seed)
    want = reference_cross_entropy(x, t, w, label_smoothing)
    got = F.cross_entropy(ta.tensor(x), ta.tensor(t), ta.tensor(w), ignore_index=IGNORE,
                          label_smoothing=label_smoothing)
    np.testing.assert_allclose(got.item(), want, rtol=1e-12)
    module = nn.CrossEntropyLoss(ta.tensor(w), ignore_index=IGNORE, label_smoothing=label_smoothing)
    np.testing.assert_allclose(module(ta.tensor(x), ta.tensor(t)).item(), want, rtol=1e-12)
    # float32 computes the same value, to float32 rounding
    got32 = F.cross_entropy(ta.tensor(x.astype(np.float32)), ta.tensor(t), ta.tensor(w.astype(np.float32)),
                            ignore_index=IGNORE, label_smoothing=label_smoothing)
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32.item(), want, rtol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weighted_mean_nll_loss_against_numpy(seed: int) -> None:
    x, t, w = batch(seed)
    logp = log_softmax(x)
    want = reference_nll(logp, t, w)
    got = F.nll_loss(ta.tensor(logp), ta.tensor(t), ta.tensor(w), ignore_index=IGNORE)
    np.testing.assert_allclose(got.item(), want, rtol=1e-12)
    module = nn.NLLLoss(ta.tensor(w), ignore_index=IGNORE)
    np.testing.assert_allclose(module(ta.tensor(logp), ta.tensor(t)).item(), want, rtol=1e-12)


def reference_layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float, n_dims: int) -> np.ndarray:
    """(x - mean) / sqrt(var + eps) * w + b, the biased variance over the last ``n_dims`` dims."""
    dims = tuple(range(x.ndim - n_dims, x.ndim))
    mean = x.mean(dims, keepdims=True)
    var = ((x - mean) ** 2).mean(dims, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


@pytest.mark.parametrize("normalized_shape", [(6,), (3, 6)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_layer_norm_module_with_affine_and_eps_against_numpy(normalized_shape: tuple[int, ...],
                                                             dtype: object) -> None:
    """eps = 0.1 against rows of variance ~0.3: dropping eps moves the output by ~15%, and a bias ~1 is visible."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 6)) * 0.5 + 4
    w, b = rng.standard_normal(normalized_shape) + 1.5, rng.standard_normal(normalized_shape)
    ln = nn.LayerNorm(normalized_shape, eps=0.1, dtype=dtype)
    ln.weight.data[...] = w
    ln.bias.data[...] = b
    got = ln(ta.tensor(x.astype(dtype)))
    assert got.dtype == dtype
    want = reference_layer_norm(x.astype(dtype).astype(np.float64), w.astype(dtype), b.astype(dtype), 0.1,
                                len(normalized_shape))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12 if dtype == np.float64 else 1e-5,
                               atol=1e-12 if dtype == np.float64 else 1e-5)
