"""Token-count batching: sizes, coverage, reproducible order, skipping, and decode batches."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.translator.batching import Batch, TokenBatcher, decode_batches, pad_rows, restore_order

PAD, BOS, EOS = 0, 2, 3


def random_pairs(n: int, seed: int = 0, max_len: int = 60) -> list[tuple[list[int], list[int]]]:
    """Pairs of random token ids (>= 4, so never a special id) with random lengths."""
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(n):
        s, t = rng.integers(1, max_len, size=2)
        pairs.append((rng.integers(4, 1000, size=s).tolist(), rng.integers(4, 1000, size=t).tolist()))
    return pairs


def check_batch(batch: Batch, pairs, max_tokens: int) -> None:
    """Everything a training step relies on, checked against the original pairs."""
    for name in ("src", "tgt_in", "tgt_out"):
        a = getattr(batch, name)
        assert a.dtype == np.int64 and a.ndim == 2 and a.shape[0] == len(batch)
        assert a.size <= max_tokens
    assert batch.tgt_in.shape == batch.tgt_out.shape
    for row, i in enumerate(batch.indices):
        src, tgt = pairs[i]
        s, ti, to = batch.src[row], batch.tgt_in[row], batch.tgt_out[row]
        assert s[: len(src) + 1].tolist() == list(src) + [EOS] and (s[len(src) + 1 :] == PAD).all()
        assert ti[: len(tgt) + 1].tolist() == [BOS] + list(tgt) and (ti[len(tgt) + 1 :] == PAD).all()
        assert to[: len(tgt) + 1].tolist() == list(tgt) + [EOS] and (to[len(tgt) + 1 :] == PAD).all()
    assert batch.n_tgt_tokens == int((batch.tgt_out != PAD).sum())
    assert batch.n_src_tokens == int((batch.src != PAD).sum())
    assert batch.src.shape[1] == max(len(pairs[i][0]) + 1 for i in batch.indices)  # no all-pad column


def test_batches_respect_max_tokens_and_cover_every_pair_once():
    pairs = random_pairs(1500)
    batcher = TokenBatcher(pairs, max_tokens=500, max_len=256, seed=1)
    seen = []
    for batch in batcher.epoch(0):
        check_batch(batch, pairs, 500)
        seen.extend(batch.indices.tolist())
    assert sorted(seen) == list(range(len(pairs)))
    assert batcher.n_pairs == len(pairs) and len(batcher) == len(batcher.epoch_plan(0))


def test_length_sorting_keeps_padding_low():
    pairs = random_pairs(2000, seed=3)
    batches = list(TokenBatcher(pairs, max_tokens=1000).epoch(0))
    real = sum(b.n_tgt_tokens for b in batches)
    padded = sum(b.tgt_out.size for b in batches)
    assert real / padded > 0.9


def test_same_seed_and_epoch_give_the_same_batches():
    pairs = random_pairs(800, seed=5)
    a = TokenBatcher(pairs, max_tokens=400, seed=7).epoch_plan(3)
    b = TokenBatcher(pairs, max_tokens=400, seed=7).epoch_plan(3)
    assert [x.tolist() for x in a] == [x.tolist() for x in b]


def test_epochs_and_seeds_change_the_order_but_not_the_batch_count():
    pairs = random_pairs(800, seed=5)
    batcher = TokenBatcher(pairs, max_tokens=400, seed=7)
    plans = [[x.tolist() for x in batcher.epoch_plan(e)] for e in range(3)]
    other_seed = [x.tolist() for x in TokenBatcher(pairs, max_tokens=400, seed=8).epoch_plan(0)]
    assert plans[0] != plans[1] and plans[1] != plans[2] and plans[0] != other_seed
    assert len({len(p) for p in plans}) == 1 == len({len(batcher)} | {len(p) for p in plans})
    # Not only the order of batches: their composition changes too (equal-length pairs are reshuffled).
    assert {tuple(sorted(x)) for x in plans[0]} != {tuple(sorted(x)) for x in plans[1]}


def test_skip_reproduces_the_tail_of_an_epoch():
    pairs = random_pairs(600, seed=9)
    batcher = TokenBatcher(pairs, max_tokens=300, seed=2)
    full = list(batcher.epoch(4))
    k = len(full) // 3
    resumed = list(TokenBatcher(pairs, max_tokens=300, seed=2).epoch(4, skip=k))
    assert len(resumed) == len(full) - k
    for a, b in zip(full[k:], resumed):
        assert np.array_equal(a.indices, b.indices) and np.array_equal(a.src, b.src)
        assert np.array_equal(a.tgt_in, b.tgt_in) and np.array_equal(a.tgt_out, b.tgt_out)
    assert list(batcher.epoch(4, skip=len(full) + 5)) == []


def test_no_shuffle_is_the_same_every_epoch():
    pairs = random_pairs(300, seed=4)
    batcher = TokenBatcher(pairs, max_tokens=300, shuffle=False)
    assert [x.tolist() for x in batcher.epoch_plan(0)] == [x.tolist() for x in batcher.epoch_plan(1)]


def test_too_long_and_empty_pairs_are_skipped_and_counted():
    pairs = [
        ([5] * 9, [6] * 9),  # exactly max_len with eos/bos: kept
        ([5] * 10, [6] * 3),  # source one token too long
        ([5] * 3, [6] * 10),  # target one token too long
        ([], [6, 7]),  # empty source
        ([5], []),  # empty target
        ([], []),
        ([5, 6], [7]),
    ]
    batcher = TokenBatcher(pairs, max_tokens=100, max_len=10)
    assert batcher.n_skipped_too_long == 2 and batcher.n_skipped_empty == 3 and batcher.n_pairs == 2
    kept = sorted(i for b in batcher.epoch(0) for i in b.indices.tolist())
    assert kept == [0, 6]


def test_pair_larger_than_max_tokens_is_skipped_not_oversized():
    pairs = [([5] * 30, [6] * 4), ([5] * 3, [6] * 4)]
    batcher = TokenBatcher(pairs, max_tokens=20, max_len=256)
    batches = list(batcher.epoch(0))
    assert batcher.n_skipped_too_long == 1
    assert [b.indices.tolist() for b in batches] == [[1]]


def test_nothing_left_gives_no_batches():
    batcher = TokenBatcher([([], [1]), ([4] * 50, [4])], max_tokens=100, max_len=10)
    assert len(batcher) == 0 and list(batcher.epoch(0)) == []
    assert len(TokenBatcher([], max_tokens=100)) == 0


def test_max_sentences_caps_rows():
    pairs = [([5], [6])] * 100
    batches = list(TokenBatcher(pairs, max_tokens=10_000, max_sentences=16).epoch(0))
    assert max(len(b) for b in batches) == 16 and sum(len(b) for b in batches) == 100


def test_invalid_settings():
    with pytest.raises(ValueError):
        TokenBatcher([], max_tokens=0)
    with pytest.raises(ValueError):
        TokenBatcher([], max_sentences=0)


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), max_size=120),
    max_tokens=st.integers(1, 300),
    max_len=st.integers(1, 50),
    seed=st.integers(0, 2**32 - 1),
    epoch=st.integers(0, 1000),
)
def test_batching_properties(lengths, max_tokens, max_len, seed, epoch):
    pairs = [(list(range(4, 4 + s)), list(range(100, 100 + t))) for s, t in lengths]
    batcher = TokenBatcher(pairs, max_tokens=max_tokens, max_len=max_len, seed=seed)
    seen = []
    for batch in batcher.epoch(epoch):
        check_batch(batch, pairs, max_tokens)
        assert batch.src.shape[1] <= max_len and batch.tgt_out.shape[1] <= max_len
        seen.extend(batch.indices.tolist())
    assert len(seen) == len(set(seen)) == batcher.n_pairs
    assert batcher.n_pairs + batcher.n_skipped_empty + batcher.n_skipped_too_long == len(pairs)
    expected = [
        i
        for i, (s, t) in enumerate(lengths)
        if s and t and s + 1 <= min(max_len, max_tokens) and t + 1 <= min(max_len, max_tokens)
    ]
    assert sorted(seen) == expected


def test_pad_rows():
    a = pad_rows([[1, 2, 3], [4], []], pad_id=9)
    assert a.dtype == np.int64 and a.tolist() == [[1, 2, 3], [4, 9, 9], [9, 9, 9]]
    assert pad_rows([]).shape == (0, 0)


def test_decode_batches_sort_batch_and_restore():
    sources = [list(range(4, 4 + n)) for n in [3, 0, 7, 1, 7, 12, 2]]
    batches, order = decode_batches(sources, batch_size=3)
    assert [len(b.indices) for b in batches] == [3, 3, 1]
    assert sorted(order.tolist()) == list(range(len(sources)))
    assert np.array_equal(np.concatenate([b.indices for b in batches]), order)
    lengths = [len(sources[i]) for i in order]
    assert lengths == sorted(lengths, reverse=True)
    for b in batches:
        assert b.src.dtype == np.int64
        for row, i in zip(b.src, b.indices):
            src = sources[i]
            assert row[: len(src) + 1].tolist() == src + [EOS] and (row[len(src) + 1 :] == PAD).all()
    # Pretend each row's translation is its input position, then put outputs back in order.
    outputs = [f"out{i}" for b in batches for i in b.indices]
    assert restore_order(outputs, order) == [f"out{i}" for i in range(len(sources))]
    with pytest.raises(ValueError):
        restore_order(outputs[:-1], order)


def test_decode_batches_truncates_to_max_len_and_handles_nothing():
    batches, order = decode_batches([[5] * 20, [6] * 2], batch_size=8, max_len=10)
    assert batches[0].src.shape == (2, 10) and batches[0].src[0, -1] == EOS
    batches, order = decode_batches([], batch_size=4)
    assert batches == [] and order.tolist() == [] and restore_order([], order) == []
