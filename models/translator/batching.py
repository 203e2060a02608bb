"""Turn tokenized sentence pairs into padded numpy batches of roughly equal token count.

Sentences vary a lot in length. Batching a fixed *number* of sentences wastes memory on padding
and makes the cost of a step swing; instead we batch by *token count*, as in "Attention Is All
You Need": pairs are sorted by length (so a batch holds sentences of similar length, which is
what "bucketing" achieves) and packed greedily until the padded size would exceed ``max_tokens``.

What the model sees, for a pair ``(src_ids, tgt_ids)`` without special tokens::

    src      = src_ids + [eos]          (encoder input)
    tgt_in   = [bos] + tgt_ids          (decoder input, "teacher forcing")
    tgt_out  = tgt_ids + [eos]          (what the decoder must predict at each position)

Each row is padded with ``pad_id`` up to the longest row of its batch, so for every batch
``batch_size * src_len <= max_tokens`` and ``batch_size * tgt_len <= max_tokens``.

Pairs are skipped, never crashed on, and counted in ``TokenBatcher.n_skipped_empty`` /
``n_skipped_too_long``:

* empty pairs (no tokens on one side or both);
* too-long pairs: ``len(src_ids) + 1`` or ``len(tgt_ids) + 1`` above ``max_len`` (the model's
  longest sequence, i.e. the size of its positional table), or above ``max_tokens`` (such a pair
  would not fit into any batch).

Order is reproducible: the batches of epoch ``e`` depend only on ``(seed, e)``. Pairs of exactly
equal lengths are shuffled before packing (so batches differ from epoch to epoch), the number of
batches is the same in every epoch, and the batch order is shuffled. A resumed run that already
did ``k`` batches of an epoch continues with ``batcher.epoch(e, skip=k)``.

``decode_batches`` does the simpler job for translation: sort sources by length, batch them by
count, and give back the permutation that restores the input order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np

from models.translator.vocab import BOS_ID, EOS_ID, PAD_ID

B = TypeVar("B", covariant=True)  # a batch, of whatever kind a batcher makes


@dataclass
class Batch:
    """One training batch: int64 arrays of shape (batch, time), padded with the pad id."""

    src: np.ndarray  # source ids + eos
    tgt_in: np.ndarray  # bos + target ids
    tgt_out: np.ndarray  # target ids + eos
    indices: np.ndarray  # position of each row's pair in the list given to TokenBatcher
    n_src_tokens: int  # non-pad entries of src
    n_tgt_tokens: int  # non-pad entries of tgt_out: the number of predictions the loss averages over

    def __len__(self) -> int:
        """Number of sentence pairs in the batch."""
        return self.src.shape[0]

    def split(self, n: int, pad_id: int = PAD_ID) -> list[Batch]:
        """At most ``n`` batches of consecutive rows with about equal token counts (source plus target),
        each cut to its own longest row: the shares of data-parallel workers. Fewer than ``n`` when the
        batch has fewer rows; together they hold every row once, in order."""
        if n < 1:
            raise ValueError(f"Batch.split: n must be positive, got {n}")
        # Running token totals before each row and after the last: part i ends where the total is nearest i/n
        # of the whole (so each part is within a row of an equal share).
        cost = np.concatenate(([0], np.cumsum((self.src != pad_id).sum(axis=1) + (self.tgt_out != pad_id).sum(axis=1))))
        ends = [int(np.abs(cost - cost[-1] * i / n).argmin()) for i in range(1, n)]
        bounds = sorted({0, *ends, len(self)})
        return [self._rows(lo, hi, pad_id) for lo, hi in zip(bounds, bounds[1:]) if hi > lo]

    def _rows(self, lo: int, hi: int, pad_id: int) -> Batch:
        src, tgt_in, tgt_out = self.src[lo:hi], self.tgt_in[lo:hi], self.tgt_out[lo:hi]
        src_width = int((src != pad_id).any(axis=0).sum())  # rows are right-padded: real columns come first
        tgt_width = int((tgt_out != pad_id).any(axis=0).sum())
        return Batch(src=src[:, :src_width], tgt_in=tgt_in[:, :tgt_width], tgt_out=tgt_out[:, :tgt_width],
                     indices=self.indices[lo:hi], n_src_tokens=int((src != pad_id).sum()),
                     n_tgt_tokens=int((tgt_out != pad_id).sum()))


def pad_rows(rows: Sequence[Sequence[int]], pad_id: int = PAD_ID) -> np.ndarray:
    """Stack rows of different lengths into an int64 array, padding on the right with ``pad_id``."""
    width = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), width), pad_id, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


class TokenBatcher:
    """Token-count batches of a fixed list of tokenized pairs, reshuffled each epoch."""

    def __init__(
        self,
        pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
        max_tokens: int = 4000,
        max_len: int = 256,
        *,
        seed: int = 0,
        shuffle: bool = True,
        max_sentences: int | None = None,
        pad_id: int = PAD_ID,
        bos_id: int = BOS_ID,
        eos_id: int = EOS_ID,
    ):
        """Index ``pairs`` of (source ids, target ids), both without bos/eos.

        ``shuffle=False`` gives the same length-sorted batches in the same order every epoch
        (for validation loss). ``max_sentences`` optionally caps the rows per batch.
        """
        if max_tokens < 1 or max_len < 1:
            raise ValueError(f"max_tokens and max_len must be positive, got {max_tokens} and {max_len}")
        if max_sentences is not None and max_sentences < 1:
            raise ValueError(f"max_sentences must be positive, got {max_sentences}")
        self.pairs = pairs
        self.max_tokens, self.max_len = max_tokens, max_len
        self.seed, self.shuffle, self.max_sentences = seed, shuffle, max_sentences
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id

        # Lengths as the model sees them (one special token added on each side).
        src_len = np.array([len(s) + 1 for s, _ in pairs], dtype=np.int64)
        tgt_len = np.array([len(t) + 1 for _, t in pairs], dtype=np.int64)
        empty = (src_len == 1) | (tgt_len == 1)
        limit = min(max_len, max_tokens)
        too_long = ~empty & ((src_len > limit) | (tgt_len > limit))
        self.n_skipped_empty = int(empty.sum())
        self.n_skipped_too_long = int(too_long.sum())
        keep = np.flatnonzero(~empty & ~too_long)
        self._keep, self._src_len, self._tgt_len = keep, src_len[keep], tgt_len[keep]
        # Sorted by (target length, source length). Shuffling only among exactly equal lengths
        # leaves the sequence of lengths, hence the batch boundaries, the same in every epoch.
        self._order = np.lexsort((self._src_len, self._tgt_len))
        self._bounds = self._pack(self._src_len[self._order], self._tgt_len[self._order])

    def _pack(self, src_len: np.ndarray, tgt_len: np.ndarray) -> list[tuple[int, int]]:
        """Greedy packing of length-sorted pairs: ``[start, end)`` ranges, one per batch."""
        bounds, start, longest = [], 0, 0
        for i in range(len(src_len)):
            need = max(longest, int(src_len[i]), int(tgt_len[i]))
            rows = i - start + 1
            too_many = self.max_sentences is not None and rows > self.max_sentences
            if rows * need > self.max_tokens or too_many:
                bounds.append((start, i))
                start, need = i, max(int(src_len[i]), int(tgt_len[i]))
            longest = need
        if start < len(src_len):
            bounds.append((start, len(src_len)))
        return bounds

    @property
    def n_pairs(self) -> int:
        """Pairs that go into batches (the input minus the skipped ones)."""
        return len(self._keep)

    def __len__(self) -> int:
        """Batches per epoch (the same for every epoch)."""
        return len(self._bounds)

    def epoch_plan(self, epoch: int) -> list[np.ndarray]:
        """The pair indices (into ``pairs``) of each batch of ``epoch``, in the order served."""
        order = self._order
        batch_order = np.arange(len(self._bounds))
        if self.shuffle:
            rng = np.random.default_rng([self.seed, epoch])
            # A random permutation, then a stable sort by length: equal-length pairs end up shuffled.
            perm = rng.permutation(len(self._keep))
            order = perm[np.lexsort((self._src_len[perm], self._tgt_len[perm]))]
            batch_order = rng.permutation(len(self._bounds))
        return [self._keep[order[self._bounds[b][0] : self._bounds[b][1]]] for b in batch_order]

    def epoch(self, epoch: int, skip: int = 0) -> Iterator[Batch]:
        """Yield the batches of ``epoch``, leaving out its first ``skip`` (to resume mid-epoch)."""
        for indices in self.epoch_plan(epoch)[skip:]:
            yield self.make_batch(indices)

    def make_batch(self, indices: np.ndarray) -> Batch:
        """Build the padded arrays for the pairs at ``indices``."""
        srcs = [list(self.pairs[i][0]) + [self.eos_id] for i in indices]
        tgts = [list(self.pairs[i][1]) for i in indices]
        src = pad_rows(srcs, self.pad_id)
        tgt_in = pad_rows([[self.bos_id] + t for t in tgts], self.pad_id)
        tgt_out = pad_rows([t + [self.eos_id] for t in tgts], self.pad_id)
        return Batch(
            src=src,
            tgt_in=tgt_in,
            tgt_out=tgt_out,
            indices=np.asarray(indices, dtype=np.int64),
            n_src_tokens=sum(len(s) for s in srcs),
            n_tgt_tokens=sum(len(t) + 1 for t in tgts),
        )


@dataclass
class SourceBatch:
    """Sources to translate: ``src`` (batch, time) int64 padded with pad id, each row ending in eos."""

    src: np.ndarray
    indices: np.ndarray  # position of each row in the list given to decode_batches


def decode_batches(
    sources: Sequence[Sequence[int]],
    batch_size: int = 64,
    max_len: int | None = None,
    *,
    pad_id: int = PAD_ID,
    eos_id: int = EOS_ID,
) -> tuple[list[SourceBatch], np.ndarray]:
    """Batch tokenized sources (without eos) for translation, longest first.

    Sorting by length keeps padding small. Every source gets a row, an empty one included (it is
    just ``[eos]``); with ``max_len`` set, longer sources are cut to ``max_len - 1`` tokens + eos.

    Returns ``(batches, order)``: ``order[j]`` is the input position of the ``j``-th row when
    the batches are concatenated; ``restore_order(outputs, order)`` puts outputs back in input order.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if max_len is not None and max_len < 1:
        raise ValueError(f"max_len must be positive, got {max_len}")
    keep = None if max_len is None else max_len - 1
    rows = [list(s)[:keep] + [eos_id] for s in sources]
    order = np.argsort([-len(r) for r in rows], kind="stable").astype(np.int64)
    batches = []
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batches.append(SourceBatch(src=pad_rows([rows[i] for i in idx], pad_id), indices=idx))
    return batches, order


def restore_order(outputs: Sequence, order: np.ndarray) -> list:
    """Undo the sorting of ``decode_batches``: ``outputs[j]`` belongs to input ``order[j]``."""
    if len(outputs) != len(order):
        raise ValueError(f"{len(outputs)} outputs for {len(order)} inputs")
    restored: list = [None] * len(order)
    for out, i in zip(outputs, order):
        restored[int(i)] = out
    return restored


class Position(Protocol):
    """Where training stands in the data: the epoch, and the batches of it already handed out."""

    epoch: int
    batch_in_epoch: int


class EpochBatches(Protocol[B]):
    """Batches in a fixed order per epoch: ``TokenBatcher``, or another model's batcher of the same shape."""

    def __len__(self) -> int: ...

    def epoch(self, epoch: int, skip: int = 0) -> Iterator[B]: ...


def batch_stream(batcher: EpochBatches[B], progress: Position) -> Iterator[B]:
    """Batches forever from the position in ``progress``, advancing it as each batch is handed out (so a
    checkpoint of ``progress`` resumes the data exactly where it stopped)."""
    while True:
        for batch in batcher.epoch(progress.epoch, skip=progress.batch_in_epoch):
            progress.batch_in_epoch += 1
            if progress.batch_in_epoch == len(batcher):
                progress.epoch, progress.batch_in_epoch = progress.epoch + 1, 0
            yield batch
        if progress.batch_in_epoch:  # the epoch was already exhausted (resumed at its very end)
            progress.epoch, progress.batch_in_epoch = progress.epoch + 1, 0
