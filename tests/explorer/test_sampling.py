"""Next-token probabilities under temperature, top-k and top-p, against the definitions written out here."""

import numpy as np
import pytest

from models.explorer.sampling import filtered_probabilities, next_token

LOGITS = np.array([2.0, 1.0, 0.5, 0.0, -1.0, 3.0, 0.25], dtype=np.float32)


def softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


@pytest.mark.parametrize("temperature", [0.3, 1.0, 2.5])
def test_temperature_divides_the_logits(temperature):
    np.testing.assert_allclose(filtered_probabilities(LOGITS, temperature), softmax(LOGITS / temperature), rtol=1e-6)


def test_top_k_keeps_the_k_most_probable():
    p = filtered_probabilities(LOGITS, top_k=3)
    assert set(np.flatnonzero(p)) == {5, 0, 1}
    np.testing.assert_allclose(p[[5, 0, 1]], softmax(LOGITS[[5, 0, 1]]), rtol=1e-6)


@pytest.mark.parametrize("top_p", [0.3, 0.6, 0.8, 0.95, 0.999])
def test_top_p_keeps_the_fewest_tokens_that_reach_p(top_p):
    full = softmax(LOGITS.astype(np.float64))
    p = filtered_probabilities(LOGITS, top_p=top_p)
    kept = np.flatnonzero(p)
    assert full[kept].sum() >= top_p  # reaches p ...
    assert full[kept].sum() - full[kept].min() < top_p  # ... and without its least probable token it would not
    assert full[kept].min() >= full[np.setdiff1d(np.arange(len(full)), kept)].max(initial=0)  # the most probable
    assert np.isclose(p.sum(), 1.0)


def test_next_token_bars_sum_to_one(session):
    for settings in [(1.0, 0, 1.0), (0.5, 5, 1.0), (2.0, 0, 0.5)]:
        result = next_token(session, "A", "Ein Hund.", *settings, shown=4)
        assert len(result["candidates"]) <= 4
        assert np.isclose(sum(c["prob"] for c in result["candidates"]) + result["other"], 1.0)
    assert next_token(session, "A", "Ein Hund.", 1.0, 3, 1.0)["kept"] == 3
