"""Translating while watching: the same output as plain decoding, attention maps equal to those of a
separate teacher-forced pass, and beam-tree scores equal to brute-force log-probabilities."""

import itertools

import numpy as np
import pytest

import tinygrad_attn as ta
from models.explorer.decoding import StepRecorder, translate_watched
from models.transformer import Transformer
from models.translator.search import attention_maps, beam_search, length_penalty, translate_sentences

SENTENCES = ["Ein Hund läuft im Schnee.", "Zwei Männer spielen Fußball auf einer Wiese."]


@pytest.mark.parametrize("beam", [1, 3])
def test_watching_changes_nothing_and_the_maps_match_a_second_pass(session, beam):
    for sentence in SENTENCES:
        watched = translate_watched(session, sentence, beam)
        plain = translate_sentences(session.model, session.vocab, [sentence], beam_size=beam, alpha=session.alpha,
                                    max_len_a=session.max_len_a, max_len_b=session.max_len_b)[0]
        assert watched["translation"] == plain
        # attention_maps re-runs the model on the output (teacher forcing, no cache): an independent pass
        again = attention_maps(session.model, session.vocab, sentence, translation=watched["target_ids"])
        T = watched["cross"].shape[2]  # len(output) + 1, or len(output) when the length limit stopped it
        assert T in (len(watched["target_ids"]), len(watched["target_ids"]) + 1)
        np.testing.assert_allclose(watched["cross"], again["cross"][:, :, :T], atol=1e-5)
        np.testing.assert_allclose(watched["decoder"], again["decoder"][:, :, :T, :T], atol=1e-5)
        np.testing.assert_allclose(watched["encoder"], again["encoder"], atol=1e-6)
        L, H = session.model.n_decoder_layers, session.model.n_heads
        assert watched["cross"].shape == (L, H, T, len(watched["source_tokens"]))
        assert watched["target_tokens"] == again["target_tokens"][:T]


class Pieces:
    def piece(self, token_id: int) -> str:
        return f"t{token_id}"


BOS, EOS, V = 2, 3, 6


@pytest.mark.parametrize("seed, alpha", [(2, 0.0), (2, 0.6), (10, 0.6), (10, 2.0)])
def test_the_beam_tree_scores_are_the_hypotheses_log_probabilities(seed, alpha):
    """Every node's summed log-probability, and every finished hypothesis's score / lp, recomputed by full
    decoder passes; the chosen output is the best finished one (seeds where three hypotheses finish)."""
    ta.manual_seed(seed)
    model = Transformer(V, d_model=16, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, d_ff=16).eval()
    model.embedding.weight.data *= 3  # peaky distributions, so that </s> comes up within 3 steps
    src = np.array([[4, 5, 4, EOS]])
    recorders = []

    def observe(decoder):
        recorders.append(StepRecorder(decoder, EOS, 3, alpha))
        return recorders[-1]

    (best,) = beam_search(model, src, BOS, EOS, beam_size=3, alpha=alpha, max_len_a=0.0, max_len_b=4, observe=observe)
    (recorder,) = recorders
    with ta.no_grad():
        memory, keep = model.encode(src)

        def logp(prefix, token):
            logits = model.decode(np.array([[BOS, *prefix]]), memory, keep).numpy()[0, -1].astype(np.float64)
            return logits[token] - np.logaddexp.reduce(logits)

        nodes = recorder.tree(Pieces(), best)
        assert nodes[0]["id"] == "" and nodes[0]["best"]
        finished = [n for n in nodes if n["finished"]]
        assert finished, "no hypothesis finished: the test case needs one"
        for node in nodes[1:]:
            seq = [int(t) for t in node["id"].split()]
            total = sum(logp(seq[:i], t) for i, t in enumerate(seq))
            assert node["score"] == pytest.approx(total, abs=2e-3), node
            if node["finished"]:
                assert node["normalised"] == pytest.approx(total / length_penalty(len(seq), alpha), abs=2e-3)
        assert len(finished) == 3  # the beam's size: the search stopped there, before the length limit
        top = max(finished, key=lambda n: n["normalised"])
        assert top["best"] and [int(t) for t in top["id"].split()][:-1] == best
        assert all(n["parent"] in {m["id"] for m in nodes} for n in nodes[1:])  # a tree
        on_path = [n for n in nodes if n["best"]]
        assert [n["step"] for n in on_path if not n["finished"]] == list(range(len(best) + 1))


def test_the_search_of_the_explorer_is_the_translators():
    """The recorder passes calls through: with and without it, beam search picks the same hypotheses."""
    ta.manual_seed(5)
    model = Transformer(V, d_model=16, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, d_ff=16).eval()
    model.embedding.weight.data *= 3
    for src, k in itertools.product(([[4, 5, EOS]], [[5, 5, 4, 4, EOS]]), (1, 2, 4)):
        plain = beam_search(model, np.array(src), BOS, EOS, beam_size=k, max_len_a=0.0, max_len_b=5)
        watched = beam_search(model, np.array(src), BOS, EOS, beam_size=k, max_len_a=0.0, max_len_b=5,
                              observe=lambda d, k=k: StepRecorder(d, EOS, k, 0.6))
        assert watched == plain
