"""Temperature, top-k and top-p sampling (models/sampling.py)."""

from __future__ import annotations

import numpy as np
import pytest

from models.sampling import next_token_probabilities, sample_next

LOGITS = np.log(np.array([[0.5, 0.2, 0.15, 0.1, 0.05]]))


def test_plain_softmax_and_temperature() -> None:
    np.testing.assert_allclose(next_token_probabilities(LOGITS), [[0.5, 0.2, 0.15, 0.1, 0.05]], rtol=1e-12)
    p = np.array([0.5, 0.2, 0.15, 0.1, 0.05]) ** 2
    np.testing.assert_allclose(next_token_probabilities(LOGITS, temperature=0.5), [p / p.sum()], rtol=1e-12)


def test_top_k_keeps_the_k_most_likely() -> None:
    probs = next_token_probabilities(LOGITS, top_k=2)
    np.testing.assert_allclose(probs, [[0.5 / 0.7, 0.2 / 0.7, 0, 0, 0]], rtol=1e-12)
    draws = np.concatenate([sample_next(LOGITS, 1.0, top_k=2, rng=np.random.default_rng(s)) for s in range(200)])
    assert set(draws) == {0, 1}


def test_top_p_keeps_the_smallest_set_reaching_p() -> None:
    """0.5 + 0.2 = 0.7 < 0.75, so the nucleus for p = 0.75 is the three most likely tokens; for p = 0.69 two."""
    np.testing.assert_allclose(next_token_probabilities(LOGITS, top_p=0.75),
                               [[0.5 / 0.85, 0.2 / 0.85, 0.15 / 0.85, 0, 0]], rtol=1e-12)
    np.testing.assert_allclose(next_token_probabilities(LOGITS, top_p=0.69), [[0.5 / 0.7, 0.2 / 0.7, 0, 0, 0]],
                               rtol=1e-12)
    assert next_token_probabilities(LOGITS, top_p=0.1)[0, 0] == 1.0  # the most likely token always stays
    draws = np.concatenate([sample_next(LOGITS, 1.0, top_p=0.75, rng=np.random.default_rng(s)) for s in range(300)])
    assert set(draws) == {0, 1, 2}


def test_draws_follow_the_distribution_and_repeat_with_a_seed() -> None:
    logits = np.repeat(LOGITS, 20000, axis=0)
    draws = sample_next(logits, 1.0, rng=np.random.default_rng(0))
    np.testing.assert_allclose(np.bincount(draws, minlength=5) / len(draws), [0.5, 0.2, 0.15, 0.1, 0.05], atol=0.01)
    np.testing.assert_array_equal(draws, sample_next(logits, 1.0, rng=np.random.default_rng(0)))


def test_temperature_zero_is_greedy() -> None:
    logits = np.random.default_rng(1).normal(size=(4, 9))
    np.testing.assert_array_equal(sample_next(logits, 0.0), logits.argmax(-1))


@pytest.mark.parametrize("kw, match", [({"temperature": -1.0}, "temperature"), ({"top_k": 0}, "top_k"),
                                       ({"top_p": 0.0}, "top_p"), ({"top_p": 1.5}, "top_p")])
def test_bad_settings_are_named(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        next_token_probabilities(LOGITS, **kw)
