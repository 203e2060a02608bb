"""BERT's masked-language-model corruption (§3.1, "Task #1: Masked LM").

Of the ordinary tokens of each sequence (not [PAD], [CLS], [SEP], [MASK], [UNK]), 15% are chosen; the model
must predict the original token at each chosen position. A chosen token is replaced by [MASK] 80% of the
time, by a random ordinary token 10% of the time, and left as it is 10% of the time, so the model cannot
assume that only [MASK] positions matter (at fine-tuning time there is no [MASK]). The loss is computed at
the chosen positions only; ``labels`` holds the original token there and ``IGNORE`` everywhere else.
"""

from __future__ import annotations

import numpy as np

from models.mlm.examples import MASK_ID, N_SPECIAL, SPECIAL_IDS

IGNORE = -1  # label of a position the loss does not score


def mask_tokens(ids: np.ndarray, vocab_size: int, rng: np.random.Generator, mask_prob: float = 0.15,
                mask_share: float = 0.8, random_share: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """``(inputs, labels)`` from ids (B, S): each ordinary token is chosen with probability ``mask_prob``
    (at least one per sequence that has any), then replaced by [MASK] (``mask_share``), by a random ordinary
    token (``random_share``) or kept (the rest). ``labels`` is the original id at chosen positions, else IGNORE."""
    if not 0.0 < mask_prob <= 1.0 or mask_share < 0 or random_share < 0 or mask_share + random_share > 1:
        raise ValueError(f"mask_tokens: need 0 < mask_prob <= 1 and mask_share + random_share <= 1, got "
                         f"{mask_prob}, {mask_share}, {random_share}")
    ids = np.asarray(ids)
    ordinary = ~np.isin(ids, SPECIAL_IDS)
    chosen = ordinary & (rng.random(ids.shape) < mask_prob)
    for row in np.flatnonzero(~chosen.any(axis=1) & ordinary.any(axis=1)):  # a sequence with nothing chosen
        chosen[row, rng.choice(np.flatnonzero(ordinary[row]))] = True
    labels = np.where(chosen, ids, IGNORE)
    u = rng.random(ids.shape)
    inputs = ids.copy()
    inputs[chosen & (u < mask_share)] = MASK_ID
    swap = chosen & (u >= mask_share) & (u < mask_share + random_share)
    inputs[swap] = rng.integers(N_SPECIAL, vocab_size, size=int(swap.sum()))
    return inputs, labels
