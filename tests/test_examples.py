"""The examples in examples/ run and do what they say."""

import importlib.util
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_mlp_learns_the_spirals(capsys):
    accuracy = _load("train_mlp").main(steps=200)
    assert accuracy > 0.95
    assert "loss" in capsys.readouterr().out


def test_reverse_learns_to_reverse_sequences(capsys):
    """A short run (half the example's default) already decodes most symbols right; chance is 1/8."""
    reverse = _load("reverse")
    accuracy = reverse.main(steps=300)
    assert accuracy > 0.6
    out = capsys.readouterr().out
    assert "of symbols right" in out and "->" in out
