"""Next-token probabilities as a sampler sees them: temperature, then top-k, then top-p (nucleus).

    p_i = softmax(logits / T)_i          T < 1 sharpens the distribution, T > 1 flattens it
    top-k: keep the k most probable tokens
    top-p: keep the fewest most probable tokens whose probabilities add up to at least p

and renormalise what is kept, so that it sums to 1 again (the order of the filters is nanoGPT's and
Hugging Face's: temperature first). ``next_token`` returns the most probable candidates and the mass of
all the others, so that the bars the page draws always add up to 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.explorer.sessions import Session

__all__ = ["filtered_probabilities", "next_token"]


def filtered_probabilities(logits: np.ndarray, temperature: float = 1.0, top_k: int = 0,
                           top_p: float = 1.0) -> np.ndarray:
    """(V,) probabilities after temperature, top-k (0: off) and top-p (1: off), renormalised (float64)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    order = np.argsort(-p, kind="stable")  # most probable first; ties: lower id first
    keep = np.zeros(len(p), dtype=bool)
    n = len(p) if top_k <= 0 else min(top_k, len(p))
    if top_p < 1.0:
        cumulative = np.cumsum(p[order[:n]])
        n = min(n, int(np.searchsorted(cumulative, top_p)) + 1)  # the first prefix that reaches p
    keep[order[:n]] = True
    p = np.where(keep, p, 0.0)
    return p / p.sum()


def next_token(session: Session, prefix: str, source: str | None, temperature: float, top_k: int, top_p: float,
               shown: int = 15) -> dict[str, Any]:
    """The ``shown`` most probable next tokens after ``prefix`` (given ``source``, for a translator): each
    with its probability before the filters (at T = 1) and after them, plus ``other``, the filtered
    probability of everything not shown."""
    context, logits = session.next_token_logits(prefix, source)
    raw = filtered_probabilities(logits)
    probs = filtered_probabilities(logits, temperature, top_k, top_p)
    best = np.argsort(-probs, kind="stable")[:shown]
    best = best[probs[best] > 0]
    candidates = [{"id": int(i), "piece": session.piece(int(i)), "prob": float(probs[i]), "raw": float(raw[i]),
                   "logit": float(logits[i])} for i in best]
    return {"context": context, "candidates": candidates, "other": float(np.delete(probs, best).sum()),
            "kept": int(np.count_nonzero(probs)), "vocab_size": len(logits)}
