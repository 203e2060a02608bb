"""The translator on the strict stand-in for a GPU (tests/strict_device.py): a training step and greedy and beam
decoding give the CPU's results, and the reads from the device back to the host are pinned: none in a training
step (the loss is read at the logging cadence, by the caller), and exactly one per decoding step (greedy: the
chosen ids, argmax taken on the device; beam: the 2k best candidates of each row, tokens and log-probabilities,
found on the device and copied together), never the (rows, vocabulary) logits."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import tinygrad_attn as ta
from models.translator import search
from models.translator.batching import Batch
from models.translator.search import beam_search, greedy_decode
from models.translator.step import accumulate_gradients, build, make_optimizer, make_scaler, train_step
from tests import strict_device
from tests.strict_device import host_reads
from tests.translator.test_search import BOS, EOS, half_trained, sources
from tinygrad_attn.backend import device as as_device
from tinygrad_attn.nn.utils import clip_grad_norm_

VOCAB = 40


def _batches(seed: int, n: int = 2) -> list[Batch]:
    """``n`` micro-batches of random ids, right-padded (pad id 0), with </s> (3) last in each row."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        lengths = rng.integers(2, 7, size=3)
        width = int(lengths.max()) + 1
        src, tgt_in, tgt_out = (np.zeros((3, width), dtype=np.int64) for _ in range(3))
        for i, m in enumerate(lengths):
            src[i, :m] = rng.integers(4, VOCAB, m)
            src[i, m] = EOS
            tokens = rng.integers(4, VOCAB, m)
            tgt_in[i, : m + 1] = [BOS, *tokens]
            tgt_out[i, : m + 1] = [*tokens, EOS]
        out.append(Batch(src=src, tgt_in=tgt_in, tgt_out=tgt_out, indices=np.arange(3),
                         n_src_tokens=int((src != 0).sum()), n_tgt_tokens=int((tgt_out != 0).sum())))
    return out


def _model_and_optimizer(micro_config, device: str):
    # no dropout: the CPU's and the device's generators draw different masks
    config = micro_config("train.clip_norm=1.0", "train.label_smoothing=0.1", "train.max_steps=10", "model.dropout=0.0",
                          "model.attention_dropout=0.0")
    ta.manual_seed(0)
    model = build(config, VOCAB, as_device("cpu"))
    if device != "cpu":
        model = copy.deepcopy(model).to(device)
    optimizer, scheduler = make_optimizer(config, model)
    return config, model, optimizer, scheduler


def _step_parts(model, optimizer, scheduler, batches, config, device) -> None:
    """``train_step`` without reading the loss: accumulate (forward, loss, backward), clip, Adam, schedule."""
    model.train()
    optimizer.zero_grad()
    n_tokens = sum(b.n_tgt_tokens for b in batches)
    for b in batches:
        logits = model(ta.tensor(b.src, device=device), ta.tensor(b.tgt_in, device=device))
        loss_sum, n = model.loss(logits, ta.tensor(b.tgt_out, device=device), config.train.label_smoothing)
        (loss_sum / n_tokens).backward()
    clip_grad_norm_(model.parameters(), config.train.clip_norm)
    optimizer.step()
    scheduler.step()


def test_a_training_step_reads_nothing_from_the_device_and_matches_the_cpu(micro_config):
    """Two steps of two micro-batches each (the second with Adam's state made): embedding, attention with
    padding and causal masks, label-smoothed cross-entropy, clipping, Adam and the schedule read nothing."""
    runs = {}
    for device in ("cpu", "strict"):
        config, model, optimizer, scheduler = _model_and_optimizer(micro_config, device)
        counts = []
        for seed in (1, 2):
            batches = _batches(seed)
            with host_reads() as reads:
                _step_parts(model, optimizer, scheduler, batches, config, device)
            counts.append(reads)
        runs[device] = model, counts
    for reads in runs["strict"][1]:
        assert reads.count == 0, reads
    cpu, strict = runs["cpu"][0], runs["strict"][0]
    for (name, p), q in zip(cpu.named_parameters(), strict.parameters()):
        assert q.device == "strict"
        np.testing.assert_allclose(q.numpy(), p.numpy(), rtol=1e-4, atol=1e-6, err_msg=name)


def test_the_loss_counts_target_tokens_on_the_device():
    """``Transformer.loss``'s token count stays on the device for device targets (an int would be a read)."""
    model = copy.deepcopy(half_trained()).to("strict")
    batch = _batches(3, n=1)[0]
    batch.tgt_out[batch.tgt_out >= 14] = 5  # the half-trained model's vocabulary has 14 pieces
    batch.tgt_in[batch.tgt_in >= 14] = 5
    batch.src[batch.src >= 14] = 5
    with host_reads() as reads:
        loss, n = model.loss(model(batch.src, batch.tgt_in), ta.tensor(batch.tgt_out, device="strict"))
    assert reads.count == 0, reads
    assert isinstance(n, ta.Tensor) and n.device == "strict" and n.item() == batch.n_tgt_tokens
    assert model.loss(model(batch.src, batch.tgt_in), batch.tgt_out)[1] == batch.n_tgt_tokens  # host ids: an int


def test_train_step_reads_nothing_from_the_device(micro_config):
    """``train_step`` itself (two micro-batches, clipping, Adam) reads nothing: its summed loss stays a 0-d tensor
    on the device, the CPU's sum; with fp16 loss scaling the one read is the scaler's inf check."""
    losses = {}
    for device in ("cpu", "strict"):
        config, model, optimizer, scheduler = _model_and_optimizer(micro_config, device)
        for seed in (1, 2):
            with host_reads() as reads:
                loss, n_tokens = train_step(model, optimizer, scheduler, _batches(seed), config, as_device(device))
            assert reads.count == 0, reads
            assert isinstance(loss, ta.Tensor) and loss.device == device and loss.shape == ()
            assert n_tokens == sum(b.n_tgt_tokens for b in _batches(seed))
        losses[device] = loss.item()
    assert losses["strict"] == pytest.approx(losses["cpu"], rel=1e-5)
    config, model, optimizer, scheduler = _model_and_optimizer(micro_config, "strict")
    config.train.precision = "fp16"
    scaler = make_scaler(config)
    for seed in (1, 2):
        with host_reads() as reads:
            train_step(model, optimizer, scheduler, _batches(seed), config, as_device("strict"), scaler=scaler)
        assert reads.count == 1 and all("grad_scaler.py" in where for where in reads.where), reads


def test_accumulate_gradients_on_the_device_gives_the_cpu_loss(micro_config):
    totals = {}
    for device in ("cpu", "strict"):
        config, model, _, _ = _model_and_optimizer(micro_config, device)
        batches = _batches(4)
        with host_reads() as reads:
            total = accumulate_gradients(model, batches, sum(b.n_tgt_tokens for b in batches),
                                         config.train.label_smoothing, as_device(device))
        assert isinstance(total, ta.Tensor) and total.device == device and total.shape == ()
        assert reads.count == 0, reads  # the micro-batches' losses are summed on the device
        totals[device] = total.item()
    assert totals["strict"] == pytest.approx(totals["cpu"], rel=1e-5)


def _decode_on_strict(monkeypatch, decode):
    """Run ``decode(model)`` on the stand-in: its output, the host reads, the decoding steps (logits calls) and
    the shapes of the arrays copied to the host."""
    steps, shapes = [], []
    logits, to_numpy = search._Decoder.logits, strict_device.BACKEND.to_numpy

    def counted(self):
        steps.append(1)
        return logits(self)

    def recorded(array):
        shapes.append(array.shape)
        return to_numpy(array)

    monkeypatch.setattr(search._Decoder, "logits", counted)
    monkeypatch.setattr(strict_device.BACKEND, "to_numpy", recorded)
    model = copy.deepcopy(half_trained()).to("strict")
    with host_reads() as reads:
        out = decode(model)
    return out, reads, len(steps), shapes


@pytest.mark.parametrize("use_cache", [True, False])
def test_greedy_decoding_reads_the_chosen_ids_once_per_step(monkeypatch, use_cache):
    src = sources(5, 9)
    expected = greedy_decode(half_trained(), src, BOS, EOS, use_cache=use_cache)
    out, reads, steps, shapes = _decode_on_strict(
        monkeypatch, lambda m: greedy_decode(m, src, BOS, EOS, use_cache=use_cache))
    assert out == expected
    assert steps > 3 and reads.count == steps, reads  # encoding and the cache read nothing
    assert all("search.py" in where for where in reads.where), reads
    assert all(len(shape) == 1 for shape in shapes), shapes  # the chosen ids, not the (rows, V) logits


@pytest.mark.parametrize("beam_size", [2, 4])
@pytest.mark.parametrize("use_cache", [True, False])
def test_beam_search_reads_the_candidates_once_per_step(monkeypatch, beam_size, use_cache):
    src = sources(6, 9)
    expected = beam_search(half_trained(), src, BOS, EOS, beam_size=beam_size, use_cache=use_cache)
    out, reads, steps, shapes = _decode_on_strict(
        monkeypatch, lambda m: beam_search(m, src, BOS, EOS, beam_size=beam_size, use_cache=use_cache))
    assert out == expected
    assert steps > 3 and reads.count == steps, reads  # the candidates; reordering the cache reads nothing
    assert all("search.py" in where for where in reads.where), reads
    # 2k tokens and 2k log-probabilities per row (beam 2: 8 < V = 14 columns), not the (rows, V) logits
    assert all(len(shape) == 2 and shape[1] == 4 * beam_size for shape in shapes), shapes


def test_beam_candidates_on_the_device_are_the_cpu_candidates():
    """The (rows, 2k) candidates found on the device: the CPU's tokens and log-probabilities, ties included
    (the lower token first, as argmax)."""
    rng = np.random.default_rng(7)
    logits = rng.standard_normal((6, 30)).astype(np.float32)
    logits[0, [3, 9, 17]] = 5.0  # a three-way tie for the best token
    logits[1, :] = 1.0  # all tied
    cpu = search._candidates(ta.tensor(logits.copy()), 8)
    with host_reads() as reads:
        strict = search._candidates(ta.tensor(logits.copy(), device="strict"), 8)
    assert reads.count == 1, reads
    np.testing.assert_array_equal(strict[0], cpu[0])
    np.testing.assert_allclose(strict[1], cpu[1], rtol=1e-6)
    np.testing.assert_array_equal(cpu[0][0, :3], [3, 9, 17])
    np.testing.assert_array_equal(cpu[0][1], np.arange(8))
