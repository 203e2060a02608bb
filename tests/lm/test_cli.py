"""``python -m models.lm``: train, exact resume, sample, evaluate, and the errors a user can fix."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from models.lm import data
from models.lm.__main__ import main
from models.translator import checkpoints as ckpt

pytestmark = pytest.mark.skipif(not (data.SHARED_DIR / data.FILE_NAME).is_file(),
                                reason=f"shared Tiny Shakespeare copy not found at {data.SHARED_DIR}")

TINY = ["--set", "model.n_layer=1", "--set", "model.n_embd=16", "--set", "model.n_head=2", "--set",
        "model.dropout=0.1", "--set", "data.block_size=8", "--set", "data.batch_size=4", "--set", "train.eval_iters=2",
        "--set", "train.eval_every=3", "--set", "train.checkpoint_every=3", "--set", "train.warmup=2",
        "--set", "train.log_every=1", "--max-iters", "6", "--no-progress"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("lm") / "run"
    assert main(["train", "--run-dir", str(run_dir), *TINY]) == 0
    return run_dir


def _params(path: Path) -> dict[str, np.ndarray]:
    return {k: np.asarray(v.numpy()) for k, v in ckpt.load_checkpoint(path).model.items()}


def test_a_run_writes_its_files(run: Path) -> None:
    for name in ("config.yaml", "metrics.jsonl", "train.log", "curves.png", "results.json", "best.safetensors",
                 "ckpt_step3.safetensors", "ckpt_step6.safetensors"):
        assert (run / name).is_file(), name
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [3, 6]
    assert all(math.isclose(r["val_bpc"], r["val_loss"] / math.log(2), rel_tol=1e-3) for r in evals)
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4, 5, 6]


def test_resume_is_exact(run: Path, tmp_path: Path) -> None:
    """A run killed after its step-3 checkpoint and resumed ends with the parameters of the run that went on
    (dropout is on, so the dropout generator must resume too, and the batch generator for the data order)."""
    killed = tmp_path / "killed"
    shutil.copytree(run, killed)
    for name in ("ckpt_step6.safetensors", "best.safetensors", "results.json"):
        (killed / name).unlink()
    assert main(["train", "--run-dir", str(killed), "--resume", "--no-progress"]) == 0
    resumed, straight = _params(killed / "ckpt_step6.safetensors"), _params(run / "ckpt_step6.safetensors")
    assert resumed.keys() == straight.keys()
    for name in straight:
        np.testing.assert_array_equal(resumed[name], straight[name], err_msg=name)
    steps = [json.loads(line)["step"] for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps.count(3) == 2  # a train and an eval record, not repeated


def test_sample_is_reproducible_and_stops(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["sample", "-c", str(run), "--prompt", "ROMEO:", "--max-new-tokens", "40", "--seed", "3", "--top-k", "5"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out == first and first.startswith("ROMEO:") and len(first) == len("ROMEO:") + 41
    stop = first[len("ROMEO:") + 2]  # a character the sample produced third: the output ends at its first occurrence
    assert main([*args, "--stop", stop]) == 0
    out = capsys.readouterr().out[:-1]
    assert out.endswith(stop) and stop not in out[len("ROMEO:") : -1] and len(out) <= len("ROMEO:") + 3


def test_attention_picture(run: Path, tmp_path: Path) -> None:
    png = tmp_path / "att.png"
    assert main(["sample", "-c", str(run), "--prompt", "ROMEO:", "--max-new-tokens", "0", "--attention", str(png)]) == 0
    assert png.stat().st_size > 1000


def test_evaluate(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "-c", str(run)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["tokens"] == 111_540 - 1
    assert math.isclose(result["val_bpc"], result["val_loss"] / math.log(2), rel_tol=1e-4)


@pytest.mark.parametrize("argv, message", [
    (["--prompt", ""], "the prompt is empty"),
    (["--prompt", "ROMEO€"], "outside the vocabulary: '€'"),
    (["--prompt", "ROMEO: and more", "--attention", "x.png"], "more than the model's block size (8)"),
    (["--prompt", "A", "--top-p", "2"], "--top-p"),
])
def test_sample_errors(run: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sample", "-c", str(run), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_missing_run_and_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sample", "-c", str(tmp_path / "nothing"), "--prompt", "A"]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert main(["train", "--run-dir", str(tmp_path / "r"), "--set", "model.n_head=3", "--no-progress"]) == 2
    assert "model.n_head = 3 is not allowed: must divide model.n_embd = 128" in capsys.readouterr().err
    assert main(["train", "--run-dir", str(tmp_path / "r"), "--set", "data.blocksize=3"]) == 2
    assert "unknown key 'data.blocksize'" in capsys.readouterr().err


def test_a_finished_run_is_not_overwritten_by_accident(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--run-dir", str(run), *TINY]) == 2
    assert "--resume" in capsys.readouterr().err


def test_bpe_vocabulary_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same pipeline over SentencePiece pieces: bits per character count characters, not pieces."""
    run_dir = tmp_path / "bpe"
    argv = [a for a in TINY if a not in ("6", "--max-iters")] + ["--max-iters", "2"]
    assert main(["train", "--run-dir", str(run_dir), *argv, "--set", "data.vocab=bpe",
                 "--set", "data.vocab_size=200"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "-c", str(run_dir)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["tokens"] < 111_540 / 1.5  # pieces are longer than one character
    assert result["val_bpc"] < result["val_loss"] / math.log(2)  # ... so a piece's loss is spread over its characters
    assert main(["sample", "-c", str(run_dir), "--prompt", "ROMEO:", "--max-new-tokens", "5", "--seed", "0"]) == 0
    assert capsys.readouterr().out.startswith("ROMEO:")


def test_the_shipped_config_loads() -> None:
    from models.lm import config as lmcfg

    config = lmcfg.load(Path(__file__).resolve().parents[2] / "configs" / "shakespeare_char.yaml")
    assert (config.train.max_minutes, config.model.gelu, config.data.block_size) == (15, "tanh", 64)
