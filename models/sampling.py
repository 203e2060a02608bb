"""Drawing the next token from a language model's logits: temperature, top-k and top-p (nucleus) sampling.

    p = softmax(logits / temperature)      (temperature < 1 sharpens the distribution, > 1 flattens it)
    top-k: keep the k most likely tokens;  top-p: keep the fewest most likely tokens whose probabilities
    sum to at least p (Holtzman et al., 2020); renormalise what is kept and draw from it.

Temperature 0 is the limit: always the most likely token (greedy decoding).
"""

from __future__ import annotations

import numpy as np

__all__ = ["next_token_probabilities", "sample_next"]


def next_token_probabilities(logits: np.ndarray, temperature: float = 1.0, top_k: int | None = None,
                             top_p: float | None = None) -> np.ndarray:
    """The distribution (B, V) to draw from, for logits (B, V) (float64; zero outside the kept support)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 to sample (0 means greedy), got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    scores = np.asarray(logits, dtype=np.float64) / temperature
    if top_k is not None and top_k < scores.shape[-1]:
        kth = np.partition(scores, -top_k, axis=-1)[:, -top_k, None]  # the k-th largest score of each row
        scores = np.where(scores < kth, -np.inf, scores)
    probs = np.exp(scores - scores.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-probs, axis=-1, kind="stable")
        sorted_probs = np.take_along_axis(probs, order, axis=-1)
        before = np.cumsum(sorted_probs, axis=-1) - sorted_probs  # mass of the more likely tokens
        keep_sorted = before < top_p  # the most likely token is always kept (before = 0)
        keep = np.zeros_like(keep_sorted)
        np.put_along_axis(keep, order, keep_sorted, axis=-1)
        probs = np.where(keep, probs, 0.0)
        probs /= probs.sum(axis=-1, keepdims=True)
    return probs


def sample_next(logits: np.ndarray, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                rng: np.random.Generator | None = None) -> np.ndarray:
    """One token id per row of ``logits`` (B, V): drawn with ``rng``, or the argmax when ``temperature == 0``."""
    logits = np.asarray(logits)
    if logits.ndim != 2:
        raise ValueError(f"sample_next: expected logits of shape (B, V), got {logits.shape}")
    if temperature == 0:
        return logits.argmax(axis=-1).astype(np.int64)
    probs = next_token_probabilities(logits, temperature, top_k, top_p)
    rng = rng if rng is not None else np.random.default_rng()
    u = rng.random((probs.shape[0], 1))  # inverse-CDF draw: the first token whose cumulative mass exceeds u
    cdf = np.cumsum(probs, axis=-1)
    token = (cdf < u * cdf[:, -1:]).sum(axis=-1)
    return np.minimum(token, probs.shape[-1] - 1).astype(np.int64)
