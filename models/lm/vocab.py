"""A language model's vocabulary: characters (nanoGPT's ``shakespeare_char``) or SentencePiece BPE pieces.

Both turn text into ids and back and serialise to bytes (stored in every checkpoint):

- ``CharVocab``: one id per distinct character of the corpus, in sorted order (Tiny Shakespeare: 65). Text
  with a character outside it is an error that names the characters.
- ``BPEVocab``: the translator's SentencePiece BPE model (``models.translator.vocab.Vocab``) trained on the
  corpus's lines. SentencePiece works on lines, so each line is encoded on its own and ``</s>`` stands for
  the newline between lines: ``decode(encode(text))`` gives back the (NFKC-normalised) text, line breaks included.

``load_vocab(kind, data)`` reads either kind back from its bytes.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.translator.vocab import EOS_ID, Vocab

KINDS = ("char", "bpe")

__all__ = ["CharVocab", "BPEVocab", "load_vocab", "KINDS"]


class CharVocab:
    """Characters <-> ids: id i is the i-th distinct character of the corpus in sorted order."""

    kind = "char"

    def __init__(self, chars: Sequence[str]) -> None:
        if len(set(chars)) != len(chars) or any(len(c) != 1 for c in chars):
            raise ValueError("CharVocab: expected distinct single characters")
        self.chars = list(chars)
        self.index = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str) -> CharVocab:
        return cls(sorted(set(text)))

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        unknown = sorted(set(text) - self.index.keys())
        if unknown:
            raise ValueError(f"characters outside the vocabulary: {''.join(unknown)!r} (the model knows "
                             f"{len(self)} characters: {''.join(self.chars)!r})")
        return [self.index[c] for c in text]

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        return "".join(self.chars[int(i)] for i in np.asarray(ids).reshape(-1))

    def pieces(self, ids: Sequence[int] | np.ndarray) -> list[str]:
        """One label per id (for attention plots)."""
        return [self.chars[int(i)] for i in np.asarray(ids).reshape(-1)]

    def to_bytes(self) -> bytes:
        return json.dumps({"kind": self.kind, "chars": self.chars}).encode("utf-8")


class BPEVocab:
    """SentencePiece BPE pieces <-> ids, line by line, ``</s>`` for a newline."""

    kind = "bpe"

    def __init__(self, vocab: Vocab) -> None:
        self.vocab = vocab

    @classmethod
    def train(cls, text: str, vocab_size: int) -> BPEVocab:
        """A BPE model of ``vocab_size`` pieces (4 special ones included) trained on the lines of ``text``."""
        with tempfile.TemporaryDirectory() as folder:
            return cls(Vocab.train(text.split("\n"), Path(folder), vocab_size=vocab_size))

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for i, line in enumerate(text.split("\n")):
            if i:
                ids.append(EOS_ID)
            ids.extend(self.vocab.encode(line))
        return ids

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        lines: list[list[int]] = [[]]
        for i in np.asarray(ids).reshape(-1):
            if int(i) == EOS_ID:
                lines.append([])
            else:
                lines[-1].append(int(i))
        return "\n".join(self.vocab.decode(line) for line in lines)

    def pieces(self, ids: Sequence[int] | np.ndarray) -> list[str]:
        return ["\\n" if int(i) == EOS_ID else p for i, p in zip(np.asarray(ids).reshape(-1), self.vocab.pieces(ids))]

    def to_bytes(self) -> bytes:
        return b"bpe:" + self.vocab.to_bytes()


def load_vocab(data: bytes) -> Any:
    """A ``CharVocab`` or ``BPEVocab`` from ``to_bytes()``'s output."""
    if data.startswith(b"bpe:"):
        return BPEVocab(Vocab.from_bytes(data[4:]))
    try:
        obj = json.loads(data.decode("utf-8"))
        return CharVocab(obj["chars"])
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"not a language-model vocabulary ({type(e).__name__}: {e})") from None
