"""Decoding (models/translator/search.py): greedy, beam search, the cache, batching, translate_sentences.

Most tests use a small model half-trained on reversing sequences: its outputs vary in length and content
and it does emit ``</s>``, unlike a random model, so agreements between decoders are not trivial.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest

import tinygrad_attn as ta
from models.transformer import Transformer
from models.translator import search
from models.translator.batching import pad_rows
from models.translator.search import (
    attention_maps,
    beam_search,
    greedy_decode,
    length_penalty,
    translate_ids,
    translate_sentences,
)

PAD, UNK, BOS, EOS = 0, 1, 2, 3
V = 14


def _pairs(rng: np.random.Generator, n: int) -> list[tuple[list[int], list[int]]]:
    seqs = [[int(w) for w in rng.integers(4, V, rng.integers(1, 8))] for _ in range(n)]
    return [(s, s[::-1]) for s in seqs]


@functools.cache
def half_trained() -> Transformer:
    """60 Adam steps on the reverse task: far from perfect, so outputs are varied."""
    ta.manual_seed(0)
    rng = np.random.default_rng(0)
    model = Transformer(V, d_model=32, n_heads=4, n_encoder_layers=2, n_decoder_layers=2, d_ff=64, dropout=0.1)
    opt = ta.optim.Adam(model.parameters(), lr=3e-3, betas=(0.9, 0.98), eps=1e-9)
    for _ in range(60):
        pairs = _pairs(rng, 32)
        src = pad_rows([s + [EOS] for s, _ in pairs])
        loss, n = model.loss(model(src, pad_rows([[BOS] + t for _, t in pairs])),
                             pad_rows([t + [EOS] for _, t in pairs]))
        opt.zero_grad()
        (loss / n).backward()
        opt.step()
    return model.eval()


def sources(seed: int, n: int) -> np.ndarray:
    return pad_rows([s + [EOS] for s, _ in _pairs(np.random.default_rng(seed), n)])


def test_the_half_trained_model_gives_varied_outputs():
    out = greedy_decode(half_trained(), sources(1, 12), BOS, EOS)
    assert len({len(o) for o in out}) > 2 and len({tuple(o) for o in out}) > 8
    assert sum(len(o) < 15 for o in out) >= 10  # mostly stopped by </s>, not by the length limit
    assert all(EOS not in o and BOS not in o for o in out)


@pytest.mark.parametrize("use_cache", [True, False])
def test_beam_size_one_is_greedy(use_cache):
    model = half_trained()
    src = sources(2, 16)
    assert beam_search(model, src, BOS, EOS, beam_size=1, use_cache=use_cache) == \
        greedy_decode(model, src, BOS, EOS, use_cache=use_cache)


@pytest.mark.parametrize("beam_size", [1, 4])
def test_the_cache_gives_the_same_translations_as_recomputation(beam_size):
    model = half_trained()
    src = sources(3, 10)
    with_cache = beam_search(model, src, BOS, EOS, beam_size=beam_size, use_cache=True)
    assert with_cache == beam_search(model, src, BOS, EOS, beam_size=beam_size, use_cache=False)


@pytest.mark.parametrize("beam_size", [1, 3])
def test_batched_decoding_equals_one_by_one(beam_size):
    model = half_trained()
    src = sources(4, 9)
    decode = greedy_decode if beam_size == 1 else functools.partial(beam_search, beam_size=beam_size)
    batched = decode(model, src, BOS, EOS)
    for i in range(len(src)):
        n = int((src[i] != PAD).sum())
        assert decode(model, src[i : i + 1, :n], BOS, EOS) == [batched[i]]


def test_translate_ids_sorts_batches_and_restores_the_order():
    model = half_trained()
    seqs = [s for s, _ in _pairs(np.random.default_rng(5), 11)]
    alone = [greedy_decode(model, np.array([s + [EOS]]), BOS, EOS)[0] for s in seqs]
    assert translate_ids(model, seqs, BOS, EOS, beam_size=1, batch_size=4) == alone
    alone_beam = [beam_search(model, np.array([s + [EOS]]), BOS, EOS, beam_size=2)[0] for s in seqs]
    assert translate_ids(model, seqs, BOS, EOS, beam_size=2, batch_size=3) == alone_beam


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
def test_beam_search_with_a_wide_beam_finds_the_best_hypothesis(alpha):
    """Against exhaustive search: every sequence of at most 3 tokens, ended by </s> or by the length limit,
    scored by log p / lp(length), the log-probabilities from full decoder passes (no cache)."""
    ta.manual_seed(4)
    vocab = 6
    model = Transformer(vocab, d_model=16, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, d_ff=16).eval()
    model.embedding.weight.data *= 3  # peakier, more varied distributions than at initialisation
    src = np.array([[4, 5, 4, EOS]])
    best_score, best = -np.inf, None
    with ta.no_grad():
        memory, src_keep = model.encode(src)
        for length in (1, 2, 3):
            for seq in itertools.product(range(vocab), repeat=length):
                if EOS in seq[:-1] or (length < 3 and seq[-1] != EOS):
                    continue
                logits = model.decode(np.array([[BOS, *seq[:-1]]]), memory, src_keep)
                logp = ta.functional.log_softmax(logits, dim=-1).numpy()[0]
                score = sum(float(logp[t, w]) for t, w in enumerate(seq)) / ((5 + length) / 6) ** alpha
                if score > best_score:
                    best_score, best = score, [w for w in seq if w != EOS]
    found = beam_search(model, src, BOS, EOS, beam_size=vocab**3, alpha=alpha, max_len_a=0.0, max_len_b=3)
    assert found == [best]


class TableDecoder:
    """A decoder whose next-token logits are a fixed random function of (sentence, prefix): the search can be
    checked by brute force on a case chosen so that the best hypothesis depends on the length penalty.
    Tokens 0-2 (pad, unk, <s>) are never likely; 4, 5 and </s> are."""

    SEED = 7

    def __init__(self, n_sentences: int, copies: int):
        self.sentence = np.repeat(np.arange(n_sentences), copies)  # the sentence of each row
        self.tokens = np.full((len(self.sentence), 1), BOS, dtype=np.int64)

    @staticmethod
    def log_probs(sentence: int, prefix: tuple[int, ...]) -> np.ndarray:
        logits = np.random.default_rng([TableDecoder.SEED, sentence, *prefix]).normal(0.0, 2.0, 6)
        logits[:3] = -1e9
        return logits - np.logaddexp.reduce(logits)

    def logits(self) -> ta.Tensor:
        rows = [self.log_probs(int(s), tuple(int(t) for t in prefix)) for s, prefix in zip(self.sentence, self.tokens)]
        return ta.tensor(np.stack(rows).astype(np.float32))

    def advance(self, tokens: np.ndarray, rows: np.ndarray | None = None, same_sources: bool = True) -> None:
        if rows is not None:
            self.tokens, self.sentence = self.tokens[rows], self.sentence[rows]
        self.tokens = np.concatenate([self.tokens, tokens[:, None]], axis=1)


def brute_force(sentence: int, alpha: float, max_len: int = 3) -> list[int]:
    """The best of every hypothesis of at most ``max_len`` tokens, ended by </s> or by the length limit, by
    log p / lp(length) (length counting </s>)."""
    best_score, best = -np.inf, None
    for length in range(1, max_len + 1):
        for seq in itertools.product(range(6), repeat=length):
            if EOS in seq[:-1] or (length < max_len and seq[-1] != EOS):
                continue
            logp = sum(TableDecoder.log_probs(sentence, (BOS, *seq[:t]))[w] for t, w in enumerate(seq))
            if logp / length_penalty(length, alpha) > best_score:
                best_score, best = logp / length_penalty(length, alpha), [w for w in seq if w != EOS]
    return best


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
def test_beam_search_applies_the_length_penalty_as_brute_force_does(alpha, monkeypatch):
    """``beam_search`` on the table decoder, with a beam wide enough to keep every hypothesis, finds what
    brute force finds, for three sentences whose best translation changes with alpha."""
    assert all(brute_force(s, 0.0) != brute_force(s, 2.0) for s in range(3))  # the case does depend on alpha
    monkeypatch.setattr(search, "_Decoder", lambda model, memory, src_keep, bos_id, use_cache, copies=1:
                        TableDecoder(memory.shape[0], copies))
    model = Transformer(V, d_model=8, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, d_ff=8).eval()
    found = beam_search(model, sources(9, 3), BOS, EOS, beam_size=6**3, alpha=alpha, max_len_a=0.0, max_len_b=3)
    assert found == [brute_force(s, alpha) for s in range(3)]


def test_gnmt_length_penalty():
    assert length_penalty(1, 0.6) == 1.0 and length_penalty(7, 1.0) == 2.0 and length_penalty(13, 0.5) == 3 ** 0.5


def test_output_length_is_limited_by_the_source_length():
    model = half_trained()
    src = sources(6, 8)
    src_len = (src != PAD).sum(1)
    for out in (greedy_decode(model, src, BOS, EOS, max_len_a=0.5, max_len_b=1),
                beam_search(model, src, BOS, EOS, beam_size=3, max_len_a=0.5, max_len_b=1)):
        assert all(len(o) <= int(np.floor(0.5 * n + 1)) for o, n in zip(out, src_len))
        assert any(len(o) == int(np.floor(0.5 * n + 1)) for o, n in zip(out, src_len))


def test_decoding_restores_the_training_mode_and_records_no_graph():
    model = half_trained()
    model.train()
    try:
        out = greedy_decode(model, sources(7, 3), BOS, EOS)
        assert model.training and all(isinstance(t, int) for o in out for t in o)
    finally:
        model.eval()
    assert greedy_decode(model, np.zeros((0, 3), np.int64), BOS, EOS) == []
    assert beam_search(model, np.zeros((0, 3), np.int64), BOS, EOS) == []
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(model, sources(7, 1), BOS, EOS, beam_size=0)


class WordVocab:
    """A stand-in for ``Vocab``: one id per word "w4" .. "w13"."""

    pad_id, unk_id, bos_id, eos_id = PAD, UNK, BOS, EOS

    def __len__(self) -> int:
        return V

    def encode(self, text: str) -> list[int]:
        return [int(w[1:]) for w in text.split()]

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids: list[int]) -> str:
        return " ".join(f"w{i}" for i in ids)

    def decode_batch(self, rows: list[list[int]]) -> list[str]:
        return [self.decode(r) for r in rows]

    def pieces(self, ids: list[int]) -> list[str]:
        return ["</s>" if i == EOS else f"w{i}" for i in ids]


def test_translate_sentences_keeps_the_input_order():
    model, vocab = half_trained(), WordVocab()
    sentences = [vocab.decode(s) for s, _ in _pairs(np.random.default_rng(8), 7)]
    one_by_one = [translate_sentences(model, vocab, [s])[0] for s in sentences]
    assert translate_sentences(model, vocab, sentences, batch_size=3) == one_by_one
    assert len(translate_sentences(model, vocab, sentences, beam_size=3, batch_size=2)) == 7


def test_translate_sentences_rejects_a_vocabulary_of_another_size():
    class Bigger(WordVocab):
        def __len__(self) -> int:
            return V + 1

    with pytest.raises(ValueError, match="spm.model"):
        translate_sentences(half_trained(), Bigger(), ["w4 w5"])


def test_attention_maps_for_one_sentence():
    model, vocab = half_trained(), WordVocab()
    maps = attention_maps(model, vocab, "w4 w5 w6 w7")
    out = greedy_decode(model, np.array([[4, 5, 6, 7, EOS]]), BOS, EOS)[0]
    assert maps["translation"] == vocab.decode(out)
    S, T = 5, len(out) + 1
    assert maps["source_tokens"] == ["w4", "w5", "w6", "w7", "</s>"] and len(maps["target_tokens"]) == T
    assert maps["encoder"].shape == (2, 4, S, S) and maps["cross"].shape == (2, 4, T, S)
    assert maps["decoder"].shape == (2, 4, T, T)
    for w in maps.values():
        if isinstance(w, np.ndarray):
            assert w.dtype == np.float32
            np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-5)
    given = attention_maps(model, vocab, "w4 w5 w6 w7", translation=[9, 9])
    assert given["cross"].shape == (2, 4, 3, S) and given["translation"] == "w9 w9"


@pytest.mark.parametrize("beam_size", [1, 3])
def test_decoding_in_two_processes_gives_the_same_translations(beam_size, monkeypatch):
    pytest.importorskip("threadpoolctl")
    from models.translator import parallel

    monkeypatch.setattr(parallel, "usable_workers", lambda wanted, setting="": wanted)  # even on one core
    model = half_trained()
    seqs = [s for s, _ in _pairs(np.random.default_rng(6), 23)]
    one = translate_ids(model, seqs, BOS, EOS, beam_size=beam_size, batch_size=4)
    assert translate_ids(model, seqs, BOS, EOS, beam_size=beam_size, batch_size=4, workers=2) == one
    assert model.training is False  # the processes leave the model as they found it
