"""The gradient engines that share each batch between processes, one set of tests for all: forked helpers
(``train.workers: 2``, parallel.py) and MPI ranks (``mpiexec -n 2 python -m models.translator train``, ranks.py).
Each must train as one process does on the same global batches, evaluate as one process does (MPI spreads
validation batches and decoding over its ranks), and resume exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import tinygrad_attn as ta
from models.translator import checkpoints as ckpt
from models.translator import train as T
from models.translator.batching import TokenBatcher
from models.translator.ranks import Ranks
from models.translator.step import build
from tests.distributed.launch import require_mpi, run_ranks
from tests.translator.conftest import MICRO

pytest.importorskip("threadpoolctl")
from models.translator import parallel as P  # noqa: E402

CPU = ta.device("cpu")
ENGINES = ["fork", "mpi"]
STEPS = 4


def train_with(engine: str, micro_config, run_dir: Path, *overrides: str, resume: bool = False) -> None:
    """Train the micro model with two processes sharing each batch, by ``engine``."""
    if engine == "fork":
        T.train(micro_config("train.workers=2", *overrides), run_dir, resume=resume, console=False)
        return
    require_mpi()
    config = micro_config(*overrides)
    sets = [a for o in [*MICRO, f"data.data_dir={config.data.data_dir}", *overrides] for a in ("--set", o)]
    done = run_ranks(2, ["-m", "models.translator", "train", "--run-dir", str(run_dir), *sets,
                         *(["--resume"] if resume else [])], timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr


def records(run_dir: Path, kind: str) -> list[dict]:
    lines = (run_dir / T.METRICS_NAME).read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def comparable(name: str, value: np.ndarray) -> np.ndarray:
    """The values that must agree between two summation orders: all but the key projection's bias, whose
    gradient is zero in exact arithmetic (softmax ignores a shift of all scores), so rounding noise is all it
    gets, and Adam turns any noise into steps of the learning rate's size."""
    if not name.endswith("in_proj_bias"):
        return value
    d = len(value) // 3
    return np.concatenate([value[:d], value[2 * d:]])


@pytest.fixture
def two_processes(monkeypatch):
    monkeypatch.setattr(P, "usable_workers", lambda wanted, setting="": wanted)  # two processes even on one core


@pytest.mark.parametrize("engine", ENGINES)
def test_two_processes_train_and_evaluate_as_one(engine, micro_config, tmp_path, two_processes):
    common = ["model.dropout=0", "model.attention_dropout=0", f"train.max_steps={STEPS}",
              f"train.checkpoint_every={STEPS}", "train.eval_every=0", "train.log_every=1", "train.eval_subset=12"]
    train_with(engine, micro_config, tmp_path / engine, *common)
    T.train(micro_config(*common), tmp_path / "one", console=False)
    shared = ckpt.load_checkpoint(tmp_path / engine / f"ckpt_step{STEPS}.safetensors")
    one = ckpt.load_checkpoint(tmp_path / "one" / f"ckpt_step{STEPS}.safetensors")
    for k in one.model:
        np.testing.assert_allclose(comparable(k, shared.model[k].numpy()), comparable(k, one.model[k].numpy()),
                                   rtol=1e-4, atol=1e-6, err_msg=k)
    losses = [r["loss"] for r in records(tmp_path / engine, "train")]
    assert len(losses) == STEPS
    np.testing.assert_allclose(losses, [r["loss"] for r in records(tmp_path / "one", "train")], rtol=1e-5)
    (shared_eval,), (one_eval,) = records(tmp_path / engine, "eval"), records(tmp_path / "one", "eval")
    np.testing.assert_allclose(shared_eval["val_loss"], one_eval["val_loss"], rtol=1e-4)
    assert (shared_eval["n_sentences"], shared_eval["chrf"]) == (one_eval["n_sentences"], one_eval["chrf"])


@pytest.mark.parametrize("engine", ENGINES)
def test_two_processes_resume_exactly(engine, micro_config, tmp_path, two_processes):
    half = STEPS // 2
    common = [f"train.checkpoint_every={half}", "train.eval_every=0", "model.dropout=0.3"]
    train_with(engine, micro_config, tmp_path / "straight", *common, f"train.max_steps={STEPS}")
    train_with(engine, micro_config, tmp_path / "split", *common, f"train.max_steps={half}")
    train_with(engine, micro_config, tmp_path / "split", *common, f"train.max_steps={STEPS}", resume=True)
    a = ckpt.load_checkpoint(tmp_path / "straight" / f"ckpt_step{STEPS}.safetensors")
    b = ckpt.load_checkpoint(tmp_path / "split" / f"ckpt_step{STEPS}.safetensors")
    for k in a.model:
        np.testing.assert_array_equal(a.model[k].numpy(), b.model[k].numpy(), err_msg=k)
    assert [r["step"] for r in records(tmp_path / "split", "train")] == list(range(2, STEPS + 1, 2))


class _OneOfTwoRanks(Ranks):
    """Rank ``rank`` of two, alone: its sums are its own (what it would send to the all-reduce)."""

    def sum(self, values):
        return list(values)


def test_each_rank_computes_every_other_validation_batch(micro_config, tmp_path):
    config = micro_config("train.max_steps=1")
    model = build(config, 50, CPU)
    rng = np.random.default_rng(0)
    pairs = [(rng.integers(4, 50, 6).tolist(), rng.integers(4, 50, 5).tolist()) for _ in range(30)]
    batcher = TokenBatcher(pairs, max_tokens=60, shuffle=False)
    assert len(batcher) >= 4
    n_tokens = [b.n_tgt_tokens for b in batcher.epoch(0)]
    mean = T.validation_loss(model, batcher, config, CPU)[0]
    shares = [T.validation_loss(model, batcher, config, CPU, _OneOfTwoRanks(r, 2))[0] for r in (0, 1)]
    tokens = [sum(n_tokens[r::2]) for r in (0, 1)]
    # Each rank's share is its own batches' mean; weighted by their tokens, the shares make the whole mean.
    assert shares[0] != pytest.approx(shares[1])
    np.testing.assert_allclose((shares[0] * tokens[0] + shares[1] * tokens[1]) / sum(tokens), mean, rtol=1e-6)


def test_an_error_under_mpi_ends_every_rank_with_its_message(tmp_path):
    require_mpi()
    sets = [a for o in [*MICRO, "train.max_steps=2"] for a in ("--set", o)]
    done = run_ranks(2, ["-m", "models.translator", "train", "--run-dir", str(tmp_path / "run"), "--data-dir",
                         str(tmp_path / "no_data_here"), *sets], timeout=120)
    assert done.returncode != 0
    assert "python -m models.translator train: error:" in done.stderr, done.stderr
    assert "no_data_here" in done.stderr
