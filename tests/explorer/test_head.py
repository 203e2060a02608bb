"""Inside one head: the step-by-step numbers give the weights the model itself computed in its pass."""

import math

import numpy as np
import pytest

from models.explorer.decoding import translate_watched
from models.explorer.head import inside_head, positional_encoding

SENTENCE = "Ein Hund läuft im Schnee."


@pytest.mark.parametrize("attention", ["encoder", "decoder", "cross"])
def test_the_steps_give_the_models_own_attention_weights(session, attention):
    watched = translate_watched(session, SENTENCE, 1)
    maps = watched[attention]  # (L, H, Q, K) from the decoding pass itself
    for layer in range(maps.shape[0]):
        for head in range(maps.shape[1]):
            for query in (0, maps.shape[2] - 1):
                r = inside_head(session, SENTENCE, watched["target_ids"], attention, layer, head, query)
                K = len(r["key_tokens"])
                expected = maps[layer, head, query][:K] if attention != "decoder" else \
                    np.pad(maps[layer, head, query], (0, K - maps.shape[3]))
                np.testing.assert_allclose(r["weights"], expected, atol=1e-4)
                # each step from the one before, as the page shows them
                np.testing.assert_allclose(r["dots"], np.array(r["keys"]) @ np.array(r["q"]), atol=1e-3)
                np.testing.assert_allclose(r["scaled"], np.array(r["dots"]) / math.sqrt(r["d_k"]), atol=1e-4)
                np.testing.assert_allclose(r["output"], np.array(r["weights"]) @ np.array(r["values"]), atol=1e-3)
                assert r["mask"] == [attention == "decoder" and j > query for j in range(K)]


def test_positional_encoding_is_the_papers_formula():
    table = np.array(positional_encoding(7, 8))
    pos, i = np.arange(7)[:, None], np.arange(4)[None, :]
    np.testing.assert_allclose(table[:, 0::2], np.sin(pos / 10000 ** (2 * i / 8)), atol=1e-5)
    np.testing.assert_allclose(table[:, 1::2], np.cos(pos / 10000 ** (2 * i / 8)), atol=1e-5)
