"""NumPy reference forwards of the Transformer's blocks, written out the long way (one head at a time,
float64), for tests that need no PyTorch. Weights are read from a state dict (name -> array) with
PyTorch's names, so the same reference checks ``nn``'s layers and the translator's model.

Names are prefixes, ending in "." (or "" for the module itself): ``linear(x, P, "linear1.")``. Masks here are
boolean arrays, True where attention IS allowed, broadcastable to (N, L, S).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

State = Mapping[str, np.ndarray]


def linear(x: np.ndarray, P: State, name: str) -> np.ndarray:
    out = x @ P[name + "weight"].T
    return out + P[name + "bias"] if name + "bias" in P else out


def layer_norm(x: np.ndarray, P: State, name: str, eps: float = 1e-5) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * P[name + "weight"] + P[name + "bias"]


def softmax_rows(scores: np.ndarray, allowed: np.ndarray | None) -> np.ndarray:
    """softmax over the last axis where ``allowed``; a row allowed nowhere gives zeros."""
    if allowed is not None:
        scores = np.where(allowed, scores, -np.inf)
    top = scores.max(-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    e = np.exp(scores - top)
    total = e.sum(-1, keepdims=True)
    return e / np.where(total == 0, 1.0, total)


def multihead_attention(query: np.ndarray, key: np.ndarray, P: State, name: str, heads: int,
                        allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Batch-first (N, L, E) queries attending to (N, S, E) keys (= values): each head i with its own rows
    [i d, (i + 1) d) of W_q, W_k, W_v (rows [0, E), [E, 2E), [2E, 3E) of ``in_proj_weight``), then
    concat(head_0, ..., head_{h-1}) W_o^T + b_o. Returns the output (N, L, E) and weights (N, H, L, S)."""
    E = query.shape[-1]
    d = E // heads
    W, b = P[name + "in_proj_weight"], P[name + "in_proj_bias"]
    outputs, weights = [], []
    for i in range(heads):
        rows = slice(i * d, (i + 1) * d)
        q = query @ W[:E][rows].T + b[:E][rows]
        k = key @ W[E : 2 * E][rows].T + b[E : 2 * E][rows]
        v = key @ W[2 * E :][rows].T + b[2 * E :][rows]
        p = softmax_rows(q @ k.swapaxes(-1, -2) / np.sqrt(d), allowed)
        outputs.append(p @ v)
        weights.append(p)
    concat = np.concatenate(outputs, axis=-1)  # head 0's d features first, then head 1's, ...
    return linear(concat, P, name + "out_proj."), np.stack(weights, axis=1)


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def _sublayer(x: np.ndarray, P: State, norm: str, norm_first: bool, f: Callable[[np.ndarray], np.ndarray]
              ) -> np.ndarray:
    if norm_first:
        return x + f(layer_norm(x, P, norm))
    return layer_norm(x + f(x), P, norm)


def encoder_layer(x: np.ndarray, P: State, prefix: str, heads: int, allowed: np.ndarray | None = None,
                  norm_first: bool = False) -> np.ndarray:
    """Self-attention then ReLU FFN, post-LN (or pre-LN), no dropout; batch-first (N, S, E)."""
    x = _sublayer(x, P, prefix + "norm1.", norm_first,
                  lambda h: multihead_attention(h, h, P, prefix + "self_attn.", heads, allowed)[0])
    return _sublayer(x, P, prefix + "norm2.", norm_first,
                     lambda h: linear(relu(linear(h, P, prefix + "linear1.")), P, prefix + "linear2."))


def decoder_layer(y: np.ndarray, memory: np.ndarray, P: State, prefix: str, heads: int,
                  self_allowed: np.ndarray | None, memory_allowed: np.ndarray | None,
                  norm_first: bool = False) -> np.ndarray:
    """Self-attention, attention over ``memory``, ReLU FFN; each post-LN (or pre-LN), no dropout."""
    y = _sublayer(y, P, prefix + "norm1.", norm_first,
                  lambda h: multihead_attention(h, h, P, prefix + "self_attn.", heads, self_allowed)[0])
    y = _sublayer(y, P, prefix + "norm2.", norm_first,
                  lambda h: multihead_attention(h, memory, P, prefix + "multihead_attn.", heads, memory_allowed)[0])
    return _sublayer(y, P, prefix + "norm3.", norm_first,
                     lambda h: linear(relu(linear(h, P, prefix + "linear1.")), P, prefix + "linear2."))


def causal(length: int) -> np.ndarray:
    """(L, L): True where query i may see key j <= i."""
    return np.tril(np.ones((length, length), dtype=bool))


def label_smoothed_cross_entropy(logits: np.ndarray, targets: np.ndarray, eps: float, ignore: int) -> float:
    """Sum over the positions whose target is not ``ignore`` of -sum_c q_c log p_c, with the target
    distribution q = (1 - eps) one_hot(target) + eps / C (PyTorch's ``label_smoothing``)."""
    C = logits.shape[-1]
    z = logits - logits.max(-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
    q = np.full(log_p.shape, eps / C)
    np.put_along_axis(q, targets[..., None], 1 - eps + eps / C, axis=-1)
    per_position = -(q * log_p).sum(-1)
    return float(per_position[targets != ignore].sum())


def as_float64(state: Mapping[str, object]) -> dict[str, np.ndarray]:
    """A module's state dict as float64 NumPy arrays."""
    return {k: np.asarray(v.numpy() if hasattr(v, "numpy") else v, dtype=np.float64) for k, v in state.items()}
