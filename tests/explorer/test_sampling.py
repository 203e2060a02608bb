"""Next-token probabilities under temperature, top-k and top-p: the bars the page draws."""

import numpy as np

from models.explorer.sampling import next_token


def softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def test_next_token_bars_sum_to_one_and_follow_the_filters(session):
    _, logits = session.next_token_logits("A", "Ein Hund.")
    for temperature, top_k, top_p in [(1.0, 0, 1.0), (0.5, 5, 1.0), (2.0, 0, 0.5), (1.0, 0, 0.999)]:
        result = next_token(session, "A", "Ein Hund.", temperature, top_k, top_p, shown=4)
        assert len(result["candidates"]) <= 4
        assert np.isclose(sum(c["prob"] for c in result["candidates"]) + result["other"], 1.0)
        full = softmax(logits.astype(np.float64) / temperature)
        best = np.argsort(-full)
        assert [c["id"] for c in result["candidates"]] == list(best[: len(result["candidates"])])
        kept = result["kept"]
        assert kept == (top_k or np.searchsorted(np.cumsum(full[best]), min(top_p, 1.0)) + 1 if top_p < 1 else
                        top_k or len(full))
        for c in result["candidates"]:  # renormalised over what is kept
            assert np.isclose(c["prob"], full[c["id"]] / full[best[:kept]].sum(), rtol=1e-5)
            assert np.isclose(c["raw"], softmax(logits.astype(np.float64))[c["id"]], rtol=1e-5)
