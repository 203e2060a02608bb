"""BERT's inputs: ``[CLS] a [SEP]`` or ``[CLS] a [SEP] b [SEP]`` with segment ids, and batches of them.

The vocabulary is the translator's joint SentencePiece model (``models.translator.vocab``) with one more
special piece, so BERT's five specials are::

    [PAD] = <pad> (0)   [UNK] = <unk> (1)   [CLS] = <s> (2)   [SEP] = </s> (3)   [MASK] = <mask> (4)

Segment ids are 0 for ``[CLS] a [SEP]`` and 1 for ``b [SEP]`` (§3 of the BERT paper, Figure 2).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from models.translator.vocab import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Vocab

MASK_PIECE = "<mask>"
CLS_ID, SEP_ID, MASK_ID = BOS_ID, EOS_ID, 4
SPECIAL_IDS = (PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID)
N_SPECIAL = len(SPECIAL_IDS)  # ids 0 .. 4; ordinary pieces follow


def train_vocab(sentences: Sequence[str], model_dir: str, vocab_size: int) -> Vocab:
    """A joint SentencePiece vocabulary with ``<mask>`` as id 4 (see the table above)."""
    vocab = Vocab.train(sentences, model_dir, vocab_size=vocab_size, extra_specials=[MASK_PIECE])
    check_vocab(vocab)
    return vocab


def check_vocab(vocab: Vocab) -> Vocab:
    """``vocab`` if it has BERT's specials at their ids, else ``ValueError``."""
    try:
        mask = vocab.piece_id(MASK_PIECE)
    except KeyError:
        mask = None
    if mask != MASK_ID:
        raise ValueError(f"the vocabulary has no {MASK_PIECE} piece at id {MASK_ID}: train it with "
                         "models.mlm.examples.train_vocab")
    return vocab


def sequence(first: Sequence[int], second: Sequence[int] | None, max_len: int) -> tuple[list[int], list[int]]:
    """``[CLS] first [SEP] (second [SEP])`` and its segment ids, the longer part cut first to fit ``max_len``."""
    first, second = list(first), (list(second) if second is not None else None)
    room = max_len - (3 if second is not None else 2)
    if room < 2:
        raise ValueError(f"max_len={max_len} leaves no room for tokens besides [CLS] and [SEP]")
    while len(first) + (len(second) if second is not None else 0) > room:
        if second is not None and len(second) > len(first):
            second.pop()
        else:
            first.pop()
    ids = [CLS_ID, *first, SEP_ID]
    segments = [0] * len(ids)
    if second is not None:
        ids += [*second, SEP_ID]
        segments += [1] * (len(second) + 1)
    return ids, segments


def pad(rows: Sequence[Sequence[int]], value: int = PAD_ID) -> np.ndarray:
    """Rows of different lengths as one (N, longest) int64 array, filled with ``value``."""
    out = np.full((len(rows), max(len(r) for r in rows)), value, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


@dataclass
class Batch:
    """Padded ids and segments (B, S), and the class labels (B,) of a classification batch (else None)."""

    ids: np.ndarray
    segments: np.ndarray
    labels: np.ndarray | None = None


class Batches:
    """Fixed-size batches of encoded sequences, shuffled per epoch by ``(seed, epoch)`` alone, so a resumed run
    sees the same order (``epoch(e, skip=k)`` starts after k batches)."""

    def __init__(self, sequences: Sequence[tuple[list[int], list[int]]], batch_size: int,
                 labels: Sequence[int] | None = None, seed: int = 0, shuffle: bool = True) -> None:
        if not sequences:
            raise ValueError("Batches: no sequences")
        if labels is not None and len(labels) != len(sequences):
            raise ValueError(f"Batches: {len(labels)} labels for {len(sequences)} sequences")
        self.sequences, self.labels = list(sequences), (np.asarray(labels, dtype=np.int64) if labels is not None
                                                         else None)
        self.batch_size, self.seed, self.shuffle = batch_size, seed, shuffle

    def __len__(self) -> int:
        return -(-len(self.sequences) // self.batch_size)

    def epoch(self, epoch: int, skip: int = 0) -> Iterator[Batch]:
        n = len(self.sequences)
        order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
        for start in range(skip * self.batch_size, n, self.batch_size):
            chosen = order[start:start + self.batch_size]
            yield Batch(pad([self.sequences[i][0] for i in chosen]), pad([self.sequences[i][1] for i in chosen], 0),
                        self.labels[chosen] if self.labels is not None else None)
