"""The joint SentencePiece vocabulary: special ids, round trips, determinism, edge cases."""

import unicodedata

import numpy as np
import pytest
import sentencepiece as spm
from hypothesis import given, settings
from hypothesis import strategies as st

from models.translator.data import read_lines
from models.translator.vocab import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Vocab

N_LINES = 3000
SIZE = 500


@pytest.fixture(scope="module")
def corpus(multi30k_dir):
    de = read_lines(multi30k_dir / "train.de.gz")[:N_LINES]
    en = read_lines(multi30k_dir / "train.en.gz")[:N_LINES]
    return de + en


@pytest.fixture(scope="module")
def vocab_dir(corpus, tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    Vocab.train(corpus, folder, vocab_size=SIZE)
    return folder


@pytest.fixture(scope="module")
def vocab(vocab_dir):
    return Vocab.load(vocab_dir)


def is_normalized(s: str) -> bool:
    """Text that SentencePiece's nmt_nfkc normalisation leaves unchanged."""
    return unicodedata.normalize("NFKC", s) == s and "  " not in s and s == s.strip()


def test_special_ids_and_size(vocab, vocab_dir):
    assert (vocab.pad_id, vocab.unk_id, vocab.bos_id, vocab.eos_id) == (0, 1, 2, 3)
    assert (PAD_ID, UNK_ID, BOS_ID, EOS_ID) == (0, 1, 2, 3)
    assert vocab.pieces([0, 1, 2, 3]) == ["<pad>", "<unk>", "<s>", "</s>"]
    assert len(vocab) == SIZE
    assert (vocab_dir / "spm.model").is_file()
    assert len((vocab_dir / "spm.vocab").read_text(encoding="utf-8").splitlines()) == SIZE


def test_round_trip_training_and_validation_sentences(vocab, corpus, multi30k_dir):
    seen = set("".join(corpus))
    val = read_lines(multi30k_dir / "val.de.gz") + read_lines(multi30k_dir / "val.en.gz")
    candidates = [s for s in corpus[::7] + val if is_normalized(s) and set(s) <= seen]
    assert len(candidates) > 0.9 * (len(corpus[::7]) + len(val))  # the filter keeps almost everything
    for s in candidates:
        ids = vocab.encode(s)
        assert ids and min(ids) > EOS_ID  # no specials, no unknowns
        assert vocab.decode(ids) == s


def test_encode_batch_matches_encode(vocab, corpus):
    sentences = corpus[:50] + [""]
    assert vocab.encode_batch(sentences) == [vocab.encode(s) for s in sentences]
    assert vocab.encode("") == []


def test_decode_stops_at_eos_and_skips_bos_and_pad(vocab):
    ids = vocab.encode("Ein Hund rennt über die Wiese.")
    tail = vocab.encode("Zwei Katzen.")
    messy = [BOS_ID] + ids[:2] + [PAD_ID] + ids[2:] + [EOS_ID] + tail + [PAD_ID, PAD_ID]
    assert vocab.decode(messy) == vocab.decode(ids) == "Ein Hund rennt über die Wiese."
    assert vocab.decode(np.array(messy, dtype=np.int64)) == vocab.decode(ids)
    assert vocab.decode([EOS_ID] + ids) == ""
    rows = np.full((2, len(messy)), PAD_ID, dtype=np.int64)
    rows[0] = messy
    assert vocab.decode_batch(rows) == ["Ein Hund rennt über die Wiese.", ""]


def test_pieces_spell_the_sentence(vocab):
    s = "Ein kleines Mädchen klettert."
    ids = vocab.encode(s)
    pieces = vocab.pieces(np.array([BOS_ID] + ids + [EOS_ID]))
    assert len(pieces) == len(ids) + 2
    assert pieces[0] == "<s>" and pieces[-1] == "</s>"
    assert "".join(pieces[1:-1]).replace("\u2581", " ").strip() == s


def test_unknown_character_maps_to_unk(vocab):
    assert UNK_ID in vocab.encode("Ein \u2603 im Schnee.")  # a snowman never appears in Multi30k


def test_training_is_deterministic_and_quiet(corpus, vocab, tmp_path, capfd):
    again = Vocab.train(corpus, tmp_path, vocab_size=SIZE)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert again.to_bytes() == vocab.to_bytes()
    assert (tmp_path / "spm.model").read_bytes() == vocab.to_bytes()


def test_load_variants_agree(vocab, vocab_dir, corpus, tmp_path):
    from_file = Vocab.load(vocab_dir / "spm.model")
    from_bytes = Vocab.from_bytes(vocab.to_bytes())
    for s in corpus[:20]:
        assert from_file.encode(s) == from_bytes.encode(s) == vocab.encode(s)
    with pytest.raises(FileNotFoundError):
        Vocab.load(tmp_path / "nothing-here")


def test_model_with_other_special_ids_is_rejected(corpus, tmp_path):
    prefix = tmp_path / "plain"
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus[:500]), model_prefix=str(prefix), vocab_size=200, minloglevel=2
    )
    with pytest.raises(ValueError, match="special ids"):
        Vocab.load(prefix.with_suffix(".model"))


def test_vocab_too_big_for_a_tiny_corpus(tmp_path):
    tiny = ["Ein Hund läuft.", "A dog runs.", "Zwei Katzen schlafen.", "Two cats sleep."]
    with pytest.raises(ValueError, match="hard_vocab_limit=False"):
        Vocab.train(tiny, tmp_path, vocab_size=5000)
    small = Vocab.train(tiny, tmp_path, vocab_size=5000, hard_vocab_limit=False)
    assert 4 < len(small) < 5000
    assert all(small.decode(small.encode(s)) == s for s in tiny)


def test_vocab_too_small_for_the_characters(tmp_path):
    with pytest.raises(ValueError, match="vocab_size"):
        Vocab.train(["Ein Hund läuft.", "A dog runs."], tmp_path, vocab_size=6)


def test_default_size_on_the_full_training_data(multi30k_dir, tmp_path):
    sentences = read_lines(multi30k_dir / "train.de.gz") + read_lines(multi30k_dir / "train.en.gz")
    vocab = Vocab.train(sentences, tmp_path)
    assert len(vocab) == 8000
    s = "Zwei junge Männer spielen Fußball im Park."
    assert vocab.decode(vocab.encode(s)) == s


@settings(max_examples=200, deadline=None)
@given(draw=st.data())
def test_round_trip_property(vocab, corpus, draw):
    """Any words over letters/digits seen in training, joined by single spaces, survive a round trip."""
    alphabet = "".join(sorted(c for c in set("".join(corpus)) if c.isalnum() and is_normalized(c)))
    words = draw.draw(st.lists(st.text(alphabet=alphabet, min_size=1, max_size=12), min_size=1, max_size=8))
    s = " ".join(words)
    assert vocab.decode(vocab.encode(s)) == s
