"""The masked-LM command line end to end: train a micro BERT, resume it exactly, fill, evaluate, fine-tune,
classify; and the errors a user can make."""

import json
from pathlib import Path

import numpy as np
import pytest

from models.mlm import config as C
from models.mlm.__main__ import main
from models.mlm.checkpoint import load_bert
from models.mlm.pairs import load_splits
from models.mlm.train import train
from models.translator import checkpoints as ckpt
from tests.mlm.conftest import MICRO


def sets(*overrides: str) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


@pytest.fixture(scope="module")
def run_dir(multi30k_dir, tmp_path_factory):
    """One micro pre-training run shared by the tests of this module: 6 steps."""
    run = tmp_path_factory.mktemp("mlm") / "run"
    assert main(["train", "--run-dir", str(run), "--data-dir", str(multi30k_dir), "--no-progress",
                 *sets(*MICRO)]) == 0
    return run


def test_train_writes_a_complete_run_dir(run_dir, capsys):
    for name in ("config.yaml", "spm.model", "metrics.jsonl", "train.log", "curves.png", "results.json",
                 "best.safetensors", "ckpt_step6.safetensors"):
        assert (run_dir / name).is_file(), name
    results = json.loads((run_dir / "results.json").read_text())
    assert results["task"] == "mlm" and results["step"] == 6 and 0 <= results["splits"]["val"]["accuracy"] <= 1
    model, vocab, config, _ = load_bert(run_dir)
    assert config.model.d_model == 32 and vocab.piece_id("<mask>") == 4


def test_resume_is_exact(micro_config, tmp_path):
    run = tmp_path / "run"
    train(micro_config(), run, console=False)  # 6 steps, checkpoints at 3 and 6
    straight = ckpt.load_checkpoint(run / "ckpt_step6.safetensors").model
    (run / "ckpt_step6.safetensors").unlink()  # as if killed after step 3's checkpoint
    train(micro_config(), run, resume=True, console=False)
    resumed = ckpt.load_checkpoint(run / "ckpt_step6.safetensors").model
    assert set(straight) == set(resumed)
    for k in straight:
        np.testing.assert_array_equal(straight[k].numpy(), resumed[k].numpy(), err_msg=k)


def test_fill_prints_candidates_and_draws_attention(run_dir, tmp_path, capsys):
    png = tmp_path / "attention.png"
    assert main(["fill", "-c", str(run_dir), "A man in an orange <mask> is looking at <mask>.", "--top-k", "3",
                 "--attention", str(png)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("A man in an orange ")
    assert out[1].startswith("<mask> 1: ") and out[2].startswith("<mask> 2: ")
    assert len(out[1].split("  ")) == 3
    assert png.is_file() and png.stat().st_size > 1000
    assert main(["fill", "-c", str(run_dir), "Ein Hund läuft.", "A <mask> runs."]) == 0
    assert capsys.readouterr().out.startswith("Ein Hund läuft. / A ")


@pytest.mark.parametrize("argv, message", [
    (["A man in an orange shirt."], "no <mask> in 'A man in an orange shirt.'"),
    (["Ein Hund läuft.", "A dog runs."], "no <mask> in 'Ein Hund läuft.' / 'A dog runs.'"),
    (["one <mask>", "two", "three"], "give one text, or two"),
    (["A <mask> " + "word " * 200], "this model takes at most 128"),
])
def test_fill_errors_are_one_line(run_dir, capsys, argv, message):
    assert main(["fill", "-c", str(run_dir), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_missing_checkpoint_and_bad_config_are_one_line(tmp_path, capsys):
    assert main(["fill", "-c", str(tmp_path / "nope"), "a <mask>"]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert main(["train", "--run-dir", str(tmp_path / "r"), "--set", "train.mask_prob=2"]) == 2
    assert "train.mask_prob = 2.0 is not allowed" in capsys.readouterr().err


def test_evaluate_finetune_and_classify(run_dir, multi30k_dir, tmp_path, capsys):
    assert main(["evaluate", "-c", str(run_dir), "--limit", "20"]) == 0
    assert capsys.readouterr().out.startswith("val: masked-token accuracy ")
    assert main(["classify", "-c", str(run_dir), "Ein Hund.", "A dog."]) == 2
    assert "is a mlm run; classify needs a fine-tuned one" in capsys.readouterr().err
    pairs = tmp_path / "pairs"
    assert main(["finetune", "--init", str(run_dir), "--run-dir", str(pairs), "--data-dir", str(multi30k_dir),
                 "--no-progress", *sets(*MICRO, "model.d_model=64", "model.dropout=0.3", "train.max_steps=3",
                                        "data.swap_fraction=1.0", "data.final_subset=64")]) == 0
    out = capsys.readouterr().out
    assert "test_2016_flickr: accuracy" in out
    tested = json.loads((pairs / "results.json").read_text())["splits"]["test_2016_flickr"]
    examples = load_splits(str(multi30k_dir), 1234, swap_fraction=1.0)["test_2016_flickr"][:64]
    count = {k: sum(e.kind == k for e in examples) for k in tested["by_kind"]}
    assert set(count) == {"positive", "swapped", "hard", "random"} and sum(count.values()) == tested["n"] == 64
    assert sum(count[k] * a for k, a in tested["by_kind"].items()) / 64 == pytest.approx(tested["accuracy"])
    _, _, config, _ = load_bert(pairs)
    assert config.task == "classify" and config.model.d_model == 32  # the pre-trained shape wins ...
    assert config.model.dropout == 0.3  # ... but not its dropout
    assert main(["classify", "-c", str(pairs), "Ein Hund läuft.", "A dog runs."]) == 0
    assert "(p = " in capsys.readouterr().out
    out_json = tmp_path / "evaluated.json"
    assert main(["evaluate", "-c", str(pairs), "--split", "test_2016_flickr", "--limit", "64",
                 "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("test_2016_flickr: accuracy ") and "(positive " in out and ", swapped " in out
    evaluated = json.loads(out_json.read_text())  # the final model, so the run's own figures again
    assert evaluated["loss"] == pytest.approx(tested["loss"], abs=1e-5)
    assert evaluated["accuracy"] == pytest.approx(tested["accuracy"], abs=1e-5)
    assert evaluated["by_kind"] == pytest.approx(tested["by_kind"], abs=1e-5)


def test_config_checks():
    with pytest.raises(C.ConfigError, match="init_from .* only a classify run"):
        C.load(overrides=["init_from=runs/x"])
    with pytest.raises(C.ConfigError, match="unknown key 'model.n_encoder_layers'"):
        C.load(overrides=["model.n_encoder_layers=2"])


@pytest.mark.parametrize("name, task, preset", [("mlm_small.yaml", "mlm", "small"),
                                                 ("mlm_medium.yaml", "mlm", "medium"),
                                                 ("pairs.yaml", "classify", "small")])
def test_shipped_configs_load(name, task, preset):
    config = C.load(Path(__file__).resolve().parents[2] / "configs" / name)
    assert (config.task, config.model.preset, config.data.vocab_size) == (task, preset, 4000)
    assert config.train.max_steps is not None and config.train.max_minutes is None  # budgets in steps


def test_baseline_cli(multi30k_dir, tmp_path, capsys):
    out_json = tmp_path / "baseline.json"
    assert main(["baseline", "--data-dir", str(multi30k_dir), "--set", "data.train_subset=100",
                 "--set", "data.final_subset=100", "--set", "data.swap_fraction=1.0", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "val: accuracy" in out and "(positive " in out and ", swapped " in out
    results = json.loads(out_json.read_text())
    assert set(results["by_kind"]["train"]) == {"positive", "swapped", "hard", "random"}
    assert results["by_kind"]["train"]["swapped"] < 0.6  # it cannot tell a swap from the translation
    assert main(["baseline", "--set", "data.swap_fraction=2"]) == 2
    assert "data.swap_fraction = 2.0 is not allowed" in capsys.readouterr().err
