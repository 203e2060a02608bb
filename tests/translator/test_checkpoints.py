"""Checkpoint files: round trip, pruning to the last K, best kept, averaging, corruption, lookup."""

import numpy as np
import pytest

import tinygrad_attn as ta
from models.translator import checkpoints as C
from models.translator.checkpoints import CheckpointError, CheckpointManager

CONFIG = {"model": {"preset": "tiny", "d_model": 4}, "train": {"seed": 1}}
VOCAB = bytes(range(256)) * 3  # any bytes: the checkpoint must not care


def state(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {"embedding.weight": ta.from_numpy(rng.standard_normal((5, 4)).astype(np.float32)),
            "layers.0.bias": ta.from_numpy(rng.standard_normal(4).astype(np.float32)),
            "steps_buffer": ta.from_numpy(np.array([seed], dtype=np.int64))}


def contents(seed: int, step: int) -> dict:
    optimizer = {"state": {0: {"step": step, "exp_avg": ta.from_numpy(np.full((5, 4), seed, np.float32))}},
                 "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.98), "params": [0]}]}
    return dict(model_state=state(seed), config=CONFIG, vocab_bytes=VOCAB,
                progress={"step": step, "epoch": 1, "batch_in_epoch": 7, "train_seconds": 1.5},
                optimizer=optimizer, scheduler={"last_epoch": step}, rng={"seed": 3, "cpu": {"state": 2**100}},
                scaler={"scale": 2.0**15, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000,
                        "_growth_tracker": step})


def test_round_trip(tmp_path):
    path = C.save_checkpoint(tmp_path / "a.safetensors", **contents(1, 10))
    c = C.load_checkpoint(path)
    for k, v in state(1).items():
        np.testing.assert_array_equal(c.model[k].numpy(), v.numpy())
        assert c.model[k].dtype == v.dtype
    assert c.config == CONFIG and c.vocab_bytes == VOCAB and c.step == 10
    assert c.progress["batch_in_epoch"] == 7
    assert c.optimizer["state"][0]["step"] == 10 and c.optimizer["param_groups"][0]["betas"] == (0.9, 0.98)
    assert c.rng["cpu"]["state"] == 2**100 and c.scheduler == {"last_epoch": 10}
    assert c.scaler == {"scale": 2.0**15, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000,
                        "_growth_tracker": 10}
    assert [p.name for p in tmp_path.iterdir()] == ["a.safetensors"]  # atomic write left no temp file


def test_manager_keeps_last_k_and_best(tmp_path):
    m = CheckpointManager(tmp_path, keep_last=2)
    for step in (5, 10, 100, 15):  # numeric, not lexical, order: 100 is the newest
        m.save(step, **contents(step, step))
        if step == 10:
            m.save_best(**contents(step, step))
    assert [p.name for p in C.list_checkpoints(tmp_path)] == ["ckpt_step15.safetensors", "ckpt_step100.safetensors"]
    assert m.latest().name == "ckpt_step100.safetensors"
    assert C.load_checkpoint(tmp_path / C.BEST_NAME).step == 10  # best survives pruning
    assert C.resolve_checkpoint(tmp_path) == tmp_path / C.BEST_NAME  # a run dir means its best ...
    (tmp_path / C.BEST_NAME).unlink()
    assert C.resolve_checkpoint(tmp_path).name == "ckpt_step100.safetensors"  # ... else its newest


def test_average_is_the_mean(tmp_path):
    paths = [C.save_checkpoint(tmp_path / f"c{s}.safetensors", **contents(s, s)) for s in (1, 2, 3)]
    avg = C.average_checkpoints(paths)
    for key in ("embedding.weight", "layers.0.bias"):
        expected = np.mean([state(s)[key].numpy().astype(np.float64) for s in (1, 2, 3)], axis=0)
        np.testing.assert_allclose(avg[key].numpy(), expected, rtol=1e-6, atol=1e-7)
        assert avg[key].dtype == np.float32
    assert avg["steps_buffer"].numpy().tolist() == [3]  # integer buffers: the newest, not averaged
    out = C.write_averaged(paths, tmp_path / "avg.safetensors")
    c = C.load_checkpoint(out)
    assert c.optimizer is None and c.vocab_bytes == VOCAB and c.progress["averaged_from"] == [p.name for p in paths]
    np.testing.assert_array_equal(c.model["layers.0.bias"].numpy(), avg["layers.0.bias"].numpy())


def test_average_of_one_is_itself(tmp_path):
    path = C.save_checkpoint(tmp_path / "c.safetensors", **contents(4, 4))
    np.testing.assert_array_equal(C.average_checkpoints([path])["embedding.weight"].numpy(),
                                  state(4)["embedding.weight"].numpy())


def test_average_rejects_different_models(tmp_path):
    a = C.save_checkpoint(tmp_path / "a.safetensors", **contents(1, 1))
    other = contents(2, 2)
    other["model_state"]["embedding.weight"] = ta.zeros(6, 4)
    b = C.save_checkpoint(tmp_path / "b.safetensors", **other)
    with pytest.raises(CheckpointError, match=r"embedding\.weight has shape \(5, 4\) vs \(6, 4\)"):
        C.average_checkpoints([a, b])
    with pytest.raises(ValueError, match="no checkpoints"):
        C.average_checkpoints([])


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_corrupted_checkpoint_is_a_clear_error(tmp_path, damage):
    path = C.save_checkpoint(tmp_path / "ckpt_step3.safetensors", **contents(1, 3))
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[-3] ^= 0xFF  # inside the last tensor's bytes: caught by the checksum
    else:
        data = bytearray(b"not a checkpoint at all")
    path.write_bytes(bytes(data))
    pattern = r"(?s)cannot read checkpoint .*ckpt_step3\.safetensors.*truncated or corrupt"
    with pytest.raises(CheckpointError, match=pattern):
        C.load_checkpoint(path)


def test_missing_checkpoint_and_foreign_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"checkpoint not found: .*nope\.safetensors"):
        C.load_checkpoint(tmp_path / "nope.safetensors")
    with pytest.raises(CheckpointError, match=r"no checkpoint in .*best\.safetensors or ckpt_step"):
        C.load_checkpoint(tmp_path)
    ta.save({"weight": ta.zeros(2)}, tmp_path / "plain.safetensors")
    with pytest.raises(CheckpointError, match="not a translator checkpoint: it lacks model, config, vocab"):
        C.load_checkpoint(tmp_path / "plain.safetensors")


def test_step_names():
    assert C.step_of("runs/x/ckpt_step120.safetensors") == 120
    assert C.step_of("best.safetensors") is None and C.step_of("ckpt_step12.safetensors.tmp") is None
    with pytest.raises(ValueError, match="keep_last"):
        CheckpointManager("x", keep_last=0)
