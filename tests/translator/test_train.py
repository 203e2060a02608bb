"""The training loop on a micro model and 200 real sentence pairs: resume is exact, stopping rules hold."""

import json

import numpy as np
import pytest

import tinygrad_attn as ta
from models.translator import checkpoints as ckpt
from models.translator import config as C
from models.translator import run_dir as R
from models.translator import step as S
from models.translator import train as T
from models.translator.batching import TokenBatcher
from models.translator.data import load_pairs
from models.translator.vocab import Vocab


def model_state(path) -> dict:
    return {k: v.numpy() for k, v in ckpt.load_checkpoint(path).model.items()}


def test_resume_continues_exactly(micro_config, tmp_path):
    n = 4
    common = [f"train.checkpoint_every={n}", f"train.eval_every={n}"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    T.train(micro_config(*common, f"train.max_steps={2 * n}"), straight, console=False)
    T.train(micro_config(*common, f"train.max_steps={n}"), split, console=False)
    # The first run "dies" here; the resumed one must end where the uninterrupted one did.
    T.train(micro_config(*common, f"train.max_steps={2 * n}"), split, resume=True, console=False)

    a, b = ckpt.load_checkpoint(straight / f"ckpt_step{2 * n}.safetensors"), \
        ckpt.load_checkpoint(split / f"ckpt_step{2 * n}.safetensors")
    assert a.model.keys() == b.model.keys()
    for k in a.model:
        np.testing.assert_array_equal(a.model[k].numpy(), b.model[k].numpy(), err_msg=k)
    for i, state in a.optimizer["state"].items():
        np.testing.assert_array_equal(state["exp_avg_sq"].numpy(), b.optimizer["state"][i]["exp_avg_sq"].numpy())
    assert a.progress["epoch"] == b.progress["epoch"] and a.progress["batch_in_epoch"] == b.progress["batch_in_epoch"]
    assert a.rng == b.rng and a.scheduler == b.scheduler
    # The parameters did move during the second half (resume did not just reload step n).
    first_half = model_state(split / f"ckpt_step{n}.safetensors")
    assert any(not np.array_equal(first_half[k], a.model[k].numpy()) for k in first_half)
    # One metrics history, no duplicates, the same training losses either way.
    rows = [json.loads(line) for line in (split / R.METRICS_NAME).read_text().splitlines()]
    ref = [json.loads(line) for line in (straight / R.METRICS_NAME).read_text().splitlines()]
    assert [(r["kind"], r["step"]) for r in rows] == [(r["kind"], r["step"]) for r in ref]
    assert [r.get("loss") for r in rows] == [r.get("loss") for r in ref]


def test_fp16_resume_continues_exactly_and_keeps_the_loss_scale(micro_config, tmp_path):
    n = 3
    common = [f"train.checkpoint_every={n}", "train.eval_every=0", "train.precision=fp16"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    T.train(micro_config(*common, f"train.max_steps={2 * n}"), straight, console=False)
    T.train(micro_config(*common, f"train.max_steps={n}"), split, console=False)
    T.train(micro_config(*common, f"train.max_steps={2 * n}"), split, resume=True, console=False)

    a, b = ckpt.load_checkpoint(straight / f"ckpt_step{2 * n}.safetensors"), \
        ckpt.load_checkpoint(split / f"ckpt_step{2 * n}.safetensors")
    for k in a.model:
        assert a.model[k].dtype == ta.float32, k  # master weights stay float32
        np.testing.assert_array_equal(a.model[k].numpy(), b.model[k].numpy(), err_msg=k)
    assert a.scaler is not None and a.scaler == b.scaler
    assert a.scaler["_growth_tracker"] == 2 * n  # every step was clean: the tracker counts through the resume
    half = ckpt.load_checkpoint(split / f"ckpt_step{n}.safetensors")
    assert half.scaler["_growth_tracker"] == n
    assert "mixed precision: fp16 autocast" in (split / R.LOG_NAME).read_text()


def test_fp16_resume_restores_a_changed_scale(micro_config, tmp_path, monkeypatch):
    """A scale that moved (here: set by hand in the checkpoint) is the one the resumed run uses."""
    run = tmp_path / "run"
    T.train(micro_config("train.max_steps=2", "train.checkpoint_every=2", "train.eval_every=0",
                         "train.precision=fp16"), run, console=False)
    path = run / "ckpt_step2.safetensors"
    saved = ta.load(path)
    saved["scaler"]["scale"] = 128.0
    ta.save(saved, path)
    seen = []
    real_step = S.train_step

    def spy(*args, **kwargs):
        scaler = args[7] if len(args) > 7 else kwargs["scaler"]
        seen.append(scaler.get_scale())
        return real_step(*args, **kwargs)

    monkeypatch.setattr(T, "train_step", spy)
    T.train(micro_config("train.max_steps=3", "train.checkpoint_every=3", "train.eval_every=0",
                         "train.precision=fp16"), run, resume=True, console=False)
    assert seen == [128.0]
    assert ckpt.load_checkpoint(run / "ckpt_step3.safetensors").scaler["scale"] == 128.0


def test_fp16_train_step_is_close_to_fp32_and_skips_an_overflowing_step(micro_config, tmp_path):
    config = C.resolve(micro_config("model.dropout=0.0", "train.max_steps=1"))
    pairs = load_pairs(config.data.direction, "train", config.data.data_dir, 40)
    vocab = Vocab.train([s for p in pairs for s in p], tmp_path, vocab_size=200)
    batcher = TokenBatcher(T.encode_pairs(vocab, pairs), max_tokens=10_000, max_len=256, shuffle=False)
    batches = [batcher.make_batch(np.arange(len(pairs)))]
    grads = {}
    for precision in ("fp32", "fp16"):
        config.train.precision = precision
        ta.manual_seed(0)
        model = S.build(config, len(vocab), ta.device("cpu"))
        opt, sched = S.make_optimizer(config, model)
        scaler = S.make_scaler(config)
        assert scaler.is_enabled() == (precision == "fp16")
        loss, _ = S.train_step(model, opt, sched, batches, config, ta.device("cpu"), scaler=scaler)
        grads[precision] = (loss.item(), {k: p.grad.numpy() for k, p in model.named_parameters()})
        assert all(p.dtype == ta.float32 for p in model.parameters())
    (loss32, g32), (loss16, g16) = grads["fp32"], grads["fp16"]
    assert loss16 == pytest.approx(loss32, rel=1e-2) and loss16 != loss32  # close, and float16 really ran
    for k in g32:
        scale = np.abs(g32[k]).max() + 1e-6
        np.testing.assert_allclose(g16[k] / scale, g32[k] / scale, atol=5e-2, err_msg=k)

    # A scale so large that the scaled gradients overflow: the step is skipped and the scale halves.
    before = {k: p.numpy().copy() for k, p in model.named_parameters()}
    scaler.update(new_scale=2.0**120)
    S.train_step(model, opt, sched, batches, config, ta.device("cpu"), scaler=scaler)
    assert scaler.get_scale() == 2.0**119
    for k, p in model.named_parameters():
        np.testing.assert_array_equal(p.numpy(), before[k], err_msg=k)


def test_resume_drops_metrics_logged_after_the_checkpoint(micro_config, tmp_path):
    run = tmp_path / "run"
    T.train(micro_config("train.max_steps=4", "train.checkpoint_every=2", "train.eval_every=0"),
            run, console=False)
    (run / "ckpt_step4.safetensors").unlink()  # as if killed between step 2's checkpoint and the end
    T.train(micro_config("train.max_steps=4", "train.checkpoint_every=2", "train.eval_every=0"),
            run, resume=True, console=False)
    steps = [(r["kind"], r["step"]) for r in map(json.loads, (run / R.METRICS_NAME).read_text().splitlines())]
    assert steps == [("train", 2), ("train", 4), ("eval", 4)]  # step 4's first records were dropped
    assert "resumed from ckpt_step2.safetensors at step 2" in (run / R.LOG_NAME).read_text()


def test_accumulation_equals_one_big_batch(micro_config, tmp_path):
    """Two batches accumulated = the same pairs in one batch (up to float rounding of padding)."""
    config = C.resolve(micro_config("model.dropout=0.0", "train.max_steps=1"))
    pairs = load_pairs(config.data.direction, "train", config.data.data_dir, 40)
    vocab = Vocab.train([s for p in pairs for s in p], tmp_path, vocab_size=200)
    batcher = TokenBatcher(T.encode_pairs(vocab, pairs), max_tokens=10_000, max_len=256, shuffle=False)
    idx = np.arange(len(pairs))
    halves = [batcher.make_batch(idx[:15]), batcher.make_batch(idx[15:])]
    whole = [batcher.make_batch(idx)]
    results = []
    for batches in (halves, whole):
        ta.manual_seed(0)
        model = S.build(config, len(vocab), ta.device("cpu"))
        opt, sched = S.make_optimizer(config, model)
        loss, n = S.train_step(model, opt, sched, batches, config, ta.device("cpu"))
        # Compare gradients (left in .grad by the step): Adam's first update is ~lr * sign(g), which
        # would blow up rounding noise in gradients that are zero in exact arithmetic (key biases).
        results.append((loss.item(), n, {k: p.grad.numpy() for k, p in model.named_parameters()}))
    (loss_a, n_a, grads_a), (loss_b, n_b, grads_b) = results
    assert n_a == n_b == sum(len(t) + 1 for _, t in T.encode_pairs(vocab, pairs))
    assert loss_a == pytest.approx(loss_b, rel=1e-5)
    for k in grads_a:
        np.testing.assert_allclose(grads_a[k], grads_b[k], rtol=1e-3, atol=1e-6, err_msg=k)


def test_stops_after_max_epochs(micro_config, tmp_path):
    config = micro_config("train.max_epochs=1", "train.eval_every=0", "train.checkpoint_every=0",
                          "data.max_tokens=1500")
    T.train(config, tmp_path / "run", console=False)
    c = ckpt.load_checkpoint(tmp_path / "run")
    vocab = Vocab.from_bytes(c.vocab_bytes)
    pairs = load_pairs(config.data.direction, "train", config.data.data_dir, 200)
    n_batches = len(TokenBatcher(T.encode_pairs(vocab, pairs), 1500, 256))
    assert n_batches > 1
    assert (c.step, c.progress["epoch"], c.progress["batch_in_epoch"]) == (n_batches, 1, 0)
    assert "max_epochs = 1 done" in (tmp_path / "run" / R.LOG_NAME).read_text()


def test_time_budget_stops_training(micro_config, tmp_path):
    config = micro_config("train.max_minutes=0.001", "train.max_steps=100000", "train.eval_every=0")
    T.train(config, tmp_path / "run", console=False)
    c = ckpt.load_checkpoint(tmp_path / "run")
    assert 1 <= c.step < 100000 and c.progress["train_seconds"] >= 0.06
    assert "time budget of 0.001 minutes used" in (tmp_path / "run" / R.LOG_NAME).read_text()


class StepClock:
    """A stand-in for the ``time`` module whose clock moves only while a training step computes, 20 ms a step:
    the run's training time then counts steps, not the speed of a machine that other work may slow down."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


def test_cosine_over_minutes_ends_at_zero_when_the_time_is_up(micro_config, tmp_path, monkeypatch):
    """schedule=cosine with max_minutes and no max_steps: the decay follows the training clock, whatever the
    step rate, and the lr set after the last step (the one logged with it) is 0."""
    config = micro_config("train.schedule=cosine", "train.warmup=2", "train.max_minutes=0.01",
                          "train.log_every=1", "train.eval_every=0", "train.checkpoint_every=0")
    clock, step = StepClock(), T.train_step

    def step_of_20_ms(*args, **kwargs):
        clock.now += 0.02
        return step(*args, **kwargs)

    monkeypatch.setattr(T, "time", clock)
    monkeypatch.setattr(T, "train_step", step_of_20_ms)
    T.train(config, tmp_path / "run", console=False)
    records = [json.loads(line) for line in (tmp_path / "run" / R.METRICS_NAME).read_text().splitlines()]
    lrs = [r["lr"] for r in records if r["kind"] == "train"]
    assert len(lrs) > 5 and lrs[-1] == 0.0 and all(lr > 0 for lr in lrs[:-1])
    assert lrs[1] == pytest.approx(C.peak_lr(C.resolve(config)))  # the lr of step 3, set right after the warmup
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:]))  # then down the cosine
    assert ckpt.load_checkpoint(tmp_path / "run").progress["train_seconds"] >= 0.6


def test_existing_run_needs_resume_or_overwrite(micro_config, tmp_path):
    config = micro_config("train.max_steps=1", "train.eval_every=0")
    T.train(config, tmp_path / "run", console=False)
    with pytest.raises(R.RunDirError, match="--resume.*--overwrite"):
        T.train(config, tmp_path / "run", console=False)
    T.train(config, tmp_path / "run", overwrite=True, console=False)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path / "run")] == ["ckpt_step1.safetensors"]


def test_resume_refuses_a_different_model(micro_config, tmp_path):
    T.train(micro_config("train.max_steps=1", "train.eval_every=0"), tmp_path / "run", console=False)
    with pytest.raises(C.ConfigError, match=r"cannot resume: model\.d_ff is 128 but the checkpoint .* 64"):
        T.train(micro_config("train.max_steps=2", "model.d_ff=128"), tmp_path / "run", resume=True,
                console=False)


def test_workers_share_batches_only_on_the_cpu_in_fp32(monkeypatch, caplog):
    monkeypatch.setattr(T, "usable_workers", lambda n: n)  # this machine's core count is not the point here
    assert T.training_processes(2, "cpu", "fp32") == 2
    with caplog.at_level("INFO", logger=T.log.name):
        assert T.training_processes(2, "cuda", "fp32") == 1
        assert T.training_processes(2, "cpu", "fp16") == 1
        assert T.training_processes(1, "cuda", "fp16") == 1
    said = [r.getMessage() for r in caplog.records if "applies to the CPU in fp32" in r.getMessage()]
    assert said == ["train.workers = 2 applies to the CPU in fp32: one process on cuda in fp32",
                    "train.workers = 2 applies to the CPU in fp32: one process on cpu in fp16"]
