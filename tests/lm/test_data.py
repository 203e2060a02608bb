"""Tiny Shakespeare (models/lm/data.py) and the vocabularies (models/lm/vocab.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.lm import data
from models.lm.vocab import BPEVocab, CharVocab, load_vocab
from models.translator.data import ChecksumError, DataError

pytestmark = pytest.mark.skipif(not (data.SHARED_DIR / data.FILE_NAME).is_file(),
                                reason=f"shared Tiny Shakespeare copy not found at {data.SHARED_DIR}")


def test_nanogpt_split_and_vocabulary() -> None:
    text = data.load_text()
    train, val = data.split_text(text)
    assert (len(train), len(val)) == (1_003_854, 111_540)  # the shared README's (nanoGPT's prepare.py) figures
    assert train + val == text
    vocab = CharVocab.from_text(text)
    assert len(vocab) == 65 and vocab.decode(vocab.encode(val[:500])) == val[:500]


def test_get_batch_targets_are_inputs_shifted_by_one() -> None:
    tokens = np.arange(100) * 3
    x, y = data.get_batch(tokens, 8, 5, np.random.default_rng(0))
    assert x.shape == y.shape == (5, 8)
    np.testing.assert_array_equal(y[:, :-1], x[:, 1:])
    np.testing.assert_array_equal(np.diff(x, axis=1), 3)  # contiguous windows
    with pytest.raises(ValueError, match="block"):
        data.get_batch(tokens[:8], 8, 1, np.random.default_rng(0))


def test_a_corrupt_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / data.FILE_NAME).write_text("Not Shakespeare.\n", encoding="utf-8")
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        data.find_text(tmp_path)
    with pytest.raises(DataError, match="no input.txt"):
        data.find_text(tmp_path / "empty")


def test_char_vocab_names_unknown_characters() -> None:
    vocab = CharVocab.from_text("abc\n")
    with pytest.raises(ValueError, match="'xz'"):
        vocab.encode("axbz")
    assert load_vocab(vocab.to_bytes()).chars == vocab.chars


def test_bpe_vocab_keeps_line_breaks() -> None:
    text = data.split_text(data.load_text())[0][:100_000]
    vocab = BPEVocab.train(text, 300)
    sample = "ROMEO:\nWhat say you, my lord?\n\nJULIET:\nNothing."
    ids = vocab.encode(sample)
    assert len(ids) < len(sample) and vocab.decode(ids) == sample
    assert load_vocab(vocab.to_bytes()).decode(ids) == sample
