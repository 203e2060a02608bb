"""Next-token probabilities as a sampler sees them: temperature, then top-k, then top-p (nucleus), by
``models.sampling.next_token_probabilities`` (the function the language model samples with)::

    p_i = softmax(logits / T)_i          T < 1 sharpens the distribution, T > 1 flattens it
    top-k: keep the k most probable tokens
    top-p: keep the fewest most probable tokens whose probabilities add up to at least p

then renormalise what is kept, so that it sums to 1 again. ``next_token`` returns the most probable
candidates and the mass of all the others, so that the bars the page draws always add up to 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.explorer.sessions import Session
from models.sampling import next_token_probabilities

__all__ = ["next_token"]


def next_token(session: Session, prefix: str, source: str | None, temperature: float, top_k: int, top_p: float,
               shown: int = 15) -> dict[str, Any]:
    """The ``shown`` most probable next tokens after ``prefix`` (given ``source``, for a translator): each
    with its probability before the filters (at T = 1) and after them (``top_k`` 0 and ``top_p`` 1: off),
    plus ``other``, the filtered probability of everything not shown."""
    context, logits = session.next_token_logits(prefix, source)
    raw = next_token_probabilities(logits[None])[0]
    probs = next_token_probabilities(logits[None], temperature, top_k or None, top_p if top_p < 1 else None)[0]
    best = np.argsort(-probs, kind="stable")[:shown]
    best = best[probs[best] > 0]
    candidates = [{"id": int(i), "piece": session.piece(int(i)), "prob": float(probs[i]), "raw": float(raw[i]),
                   "logit": float(logits[i])} for i in best]
    return {"context": context, "candidates": candidates, "other": float(np.delete(probs, best).sum()),
            "kept": int(np.count_nonzero(probs)), "vocab_size": len(logits)}
