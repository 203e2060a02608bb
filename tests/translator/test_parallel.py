"""Data parallelism over processes (train.workers): the split of a batch, gradients equal to one process's,
helpers that see the optimiser's updates, errors that name the worker (training equal to one process and
exact resume: test_engines.py, for the MPI engine too)."""

import multiprocessing
import os
import time

import numpy as np
import pytest

import tinygrad_attn as ta
from models.translator import config as C
from models.translator import step as S
from models.translator.batching import TokenBatcher
from models.translator.vocab import PAD_ID

pytest.importorskip("threadpoolctl")
from models.transformer import build_model  # noqa: E402
from models.translator import parallel as P  # noqa: E402
from models.translator.parallel import GradientWorkers  # noqa: E402

CPU = ta.device("cpu")


def synthetic_batch(seed=0, n_pairs=40, vocab=50):
    rng = np.random.default_rng(seed)
    ids = lambda: rng.integers(4, vocab, rng.integers(1, 12)).tolist()  # noqa: E731
    pairs = [(ids(), ids()) for _ in range(n_pairs)]
    batcher = TokenBatcher(pairs, max_tokens=10_000, seed=seed)
    (indices,) = batcher.epoch_plan(0)
    return batcher.make_batch(indices)


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_split_covers_every_row_once_with_tight_padding(n):
    batch = synthetic_batch(n_pairs=30)
    parts = batch.split(n)
    assert len(parts) == n
    np.testing.assert_array_equal(np.concatenate([p.indices for p in parts]), batch.indices)
    assert sum(p.n_tgt_tokens for p in parts) == batch.n_tgt_tokens
    assert sum(p.n_src_tokens for p in parts) == batch.n_src_tokens
    row = 0
    for p in parts:
        for name in ("src", "tgt_in", "tgt_out"):
            whole, part = getattr(batch, name)[row: row + len(p)], getattr(p, name)
            np.testing.assert_array_equal(part, whole[:, : part.shape[1]])
            assert (whole[:, part.shape[1]:] == PAD_ID).all()  # only padding was cut off...
            assert (part[:, -1] != PAD_ID).any()  # ...and all of it
        row += len(p)
    cost = [p.n_src_tokens + p.n_tgt_tokens for p in parts]
    assert max(cost) - min(cost) <= 2 * (batch.src.shape[1] + batch.tgt_out.shape[1])  # within a row of equal


def test_split_of_a_short_batch_gives_fewer_parts():
    batch = synthetic_batch(n_pairs=2)
    assert [len(p) for p in batch.split(5)] == [1, 1]
    with pytest.raises(ValueError, match="n must be positive"):
        batch.split(0)


def tiny_model(dropout=0.0):
    ta.manual_seed(3)
    return build_model(50, pad_id=PAD_ID, d_model=16, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, d_ff=32,
                       dropout=dropout)


def one_process_grads(model, batches):
    for p in model.parameters():
        p.grad = None
    S.accumulate_gradients(model, batches, sum(b.n_tgt_tokens for b in batches), 0.1, CPU)
    return [p.grad.numpy().copy() for p in model.parameters()]


@pytest.mark.parametrize("n_workers", [2, 3])
def test_workers_sum_to_the_gradient_of_one_process_and_follow_parameter_updates(n_workers):
    model, reference = tiny_model(), tiny_model()
    batches = [synthetic_batch(seed=1), synthetic_batch(seed=2)]  # two batches: gradient accumulation too
    n_tokens = sum(b.n_tgt_tokens for b in batches)
    with GradientWorkers(model, n_workers, 0.1, CPU) as workers:
        for _ in range(2):  # the second round after an update of the parameters
            for p in model.parameters():
                p.grad = None
            loss = workers.gradients(batches, n_tokens)
            expected = one_process_grads(reference, batches)
            ref_loss = sum(float(reference.loss(reference(ta.tensor(b.src), ta.tensor(b.tgt_in)),
                                                ta.tensor(b.tgt_out), 0.1)[0].item()) for b in batches)
            assert loss == pytest.approx(ref_loss, rel=1e-5)
            for p, g in zip(model.parameters(), expected):
                np.testing.assert_allclose(p.grad.numpy(), g, rtol=1e-4, atol=1e-6)
            # An in-place update in this process (what the optimiser does) must reach the helpers.
            with ta.no_grad():
                for p, q in zip(model.parameters(), reference.parameters()):
                    p.data *= 0.5
                    q.data *= 0.5


def test_a_failing_worker_is_reported_by_number():
    model = tiny_model()
    batch = synthetic_batch(seed=4)
    batch.src[-1, 0] = 10_000  # a token id beyond the vocabulary, in the rows of the second process only
    with GradientWorkers(model, 2, 0.1, CPU) as workers:
        with pytest.raises(RuntimeError, match="gradient worker 1 failed"):
            workers.gradients([batch], batch.n_tgt_tokens)


def test_gradient_workers_refuse_bad_settings():
    with pytest.raises(ValueError, match="at least 2"):
        GradientWorkers(tiny_model(), 1, 0.1, CPU)


def test_config_checks_workers():
    with pytest.raises(C.ConfigError, match="train.workers"):
        C.load(overrides=["train.workers=0"])
    assert C.load(overrides=["train.workers=2", "device=cuda"]).train.workers == 2  # one process there (train.py)


def test_workers_are_capped_by_the_cores_available(monkeypatch, caplog):
    monkeypatch.setattr(P, "_warned", set())  # it warns once per setting: forget earlier warnings
    monkeypatch.setattr(P.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert P.usable_workers(1) == 1
    assert P.usable_workers(2) == 1
    assert "only 1 core(s)" in caplog.text
    monkeypatch.setattr(P.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert P.usable_workers(3) == 3


def test_no_helpers_from_a_daemonic_process(monkeypatch, caplog):
    monkeypatch.setattr(P, "_warned", set())
    monkeypatch.setattr(P.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(P.multiprocessing, "current_process", lambda: type("Daemon", (), {"daemon": True})())
    assert P.usable_workers(2, "decode.workers") == 1
    assert "decode.workers = 2 but this is a daemonic process" in caplog.text
    caplog.clear()
    assert P.usable_workers(2, "decode.workers") == 1
    assert caplog.text == ""  # said once


def _slow_pid(item):
    time.sleep(0.02)  # long enough for the helpers to start and take items too
    return item, os.getpid()


def test_map_in_processes_keeps_the_order_and_shares_the_items():
    items = list(range(25))
    out = P.map_in_processes(_slow_pid, items, 3)
    assert [item for item, _ in out] == items
    pids = {pid for _, pid in out}
    assert os.getpid() in pids and len(pids) == 3  # this process and both helpers took items
    assert P.map_in_processes(_slow_pid, items[:1], 3) == [(0, os.getpid())]  # one item: no helper
    assert P.map_in_processes(_slow_pid, [], 2) == []


def test_map_in_processes_reports_a_failing_helper_with_its_traceback():
    main = os.getpid()

    def fails_in_helpers(item):
        time.sleep(0.02)
        if os.getpid() != main:
            raise ValueError(f"item {item} went wrong")
        return item

    with pytest.raises(RuntimeError, match=r"worker process 1 failed:(.|\n)*ValueError: item \d+ went wrong"):
        P.map_in_processes(fails_in_helpers, list(range(10)), 2)


def test_map_in_processes_raises_an_error_of_this_process_and_stops_the_helpers():
    main = os.getpid()

    def fails_here(item):
        time.sleep(0.02)
        if os.getpid() == main:
            raise KeyError("here")
        return item

    with pytest.raises(KeyError, match="here"):
        P.map_in_processes(fails_here, list(range(10)), 2)
    assert not multiprocessing.active_children()  # every helper was joined


def test_config_checks_decode_workers():
    with pytest.raises(C.ConfigError, match="decode.workers"):
        C.load(overrides=["decode.workers=0"])
    assert C.load(overrides=["decode.workers=2", "device=cuda"]).decode.workers == 2  # a GPU ignores it

