"""Fixtures for BERT's tests: the offline Multi30k copy (the translator's fixture) and a micro config."""

from collections.abc import Callable
from pathlib import Path

import pytest

from models.mlm import config as C
from tests.translator.conftest import multi30k_dir  # noqa: F401  (a fixture, used by name)

# A model that takes a step in milliseconds, 200 training pairs, a 300-piece vocabulary.
MICRO = ["model.preset=mini", "model.d_model=32", "model.n_heads=2", "model.d_ff=64", "model.n_layers=1",
         "data.vocab_size=300", "data.vocab_subset=200", "data.train_subset=200", "data.max_len=48",
         "data.eval_subset=16", "data.final_subset=16", "train.batch_size=8", "train.warmup=2",
         "train.max_steps=6", "train.log_every=2",
         "train.eval_every=3", "train.checkpoint_every=3", "train.progress=false"]


@pytest.fixture
def micro_config(multi30k_dir: Path) -> Callable[..., C.Config]:  # noqa: F811
    """``micro_config(*overrides)``: the micro model's config on the shared data, then ``overrides``."""

    def make(*overrides: str) -> C.Config:
        return C.load(overrides=[*MICRO, f"data.data_dir={multi30k_dir}", *overrides])

    return make
