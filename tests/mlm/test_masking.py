"""models/mlm/masking.py: BERT's 15% / 80-10-10 corruption, measured on a fixed seed."""

import numpy as np
import pytest

from models.mlm.examples import MASK_ID, N_SPECIAL, SPECIAL_IDS, sequence
from models.mlm.masking import IGNORE, mask_tokens

V = 1000


def corpus(rng: np.random.Generator, n: int = 400, s: int = 60) -> np.ndarray:
    ids = rng.integers(N_SPECIAL, V, size=(n, s))
    ids[:, 0], ids[:, 30] = 2, 3  # [CLS], [SEP]
    ids[:, 50:] = 0  # padding
    ids[::7, 10] = 1  # some [UNK]
    return ids


def test_fifteen_percent_chosen_then_80_10_10():
    rng = np.random.default_rng(0)
    ids = corpus(rng)
    inputs, labels = mask_tokens(ids, V, rng)
    ordinary = ~np.isin(ids, SPECIAL_IDS)
    chosen = labels != IGNORE
    assert not (chosen & ~ordinary).any()  # never a special token or padding
    assert chosen.sum() / ordinary.sum() == pytest.approx(0.15, abs=0.01)
    np.testing.assert_array_equal(labels[chosen], ids[chosen])  # labels: the original tokens
    np.testing.assert_array_equal(inputs[~chosen], ids[~chosen])  # the rest is untouched
    masked = inputs[chosen] == MASK_ID
    kept = inputs[chosen] == ids[chosen]
    swapped = ~masked & ~kept
    n = chosen.sum()
    assert masked.sum() / n == pytest.approx(0.8, abs=0.02)
    assert swapped.sum() / n == pytest.approx(0.1, abs=0.02)  # (a random swap may draw the same token: ~0.1%)
    assert kept.sum() / n == pytest.approx(0.1, abs=0.02)
    assert (inputs[chosen][swapped] >= N_SPECIAL).all()  # random replacements are ordinary tokens


def test_every_sequence_gets_a_masked_token_and_the_seed_fixes_everything():
    ids = np.array([sequence([7, 8], None, 8)[0]] * 50)  # two ordinary tokens each: often none drawn at 15%
    _, labels = mask_tokens(ids, V, np.random.default_rng(1))
    assert ((labels != IGNORE).sum(axis=1) >= 1).all()
    a = mask_tokens(ids, V, np.random.default_rng(5))
    b = mask_tokens(ids, V, np.random.default_rng(5))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    with pytest.raises(ValueError, match="mask_prob"):
        mask_tokens(ids, V, np.random.default_rng(0), mask_prob=0.0)


def test_sequence_layout_and_truncation():
    ids, segments = sequence([10, 11, 12], [20, 21], 16)
    assert ids == [2, 10, 11, 12, 3, 20, 21, 3] and segments == [0, 0, 0, 0, 0, 1, 1, 1]
    ids, segments = sequence(list(range(10, 20)), [30, 31], 8)  # the longer side is cut first
    assert ids == [2, 10, 11, 12, 3, 30, 31, 3] and len(segments) == 8
