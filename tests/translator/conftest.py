"""Shared fixtures for the translator tests: the offline copy of Multi30k, and a micro training config."""

from collections.abc import Callable
from pathlib import Path

import pytest

from models.translator import config as C

# <project root>/../shared/data/multi30k: a read-only copy of the upstream files (never the network).
SHARED_MULTI30K = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "multi30k"

# A model small enough to take a step in milliseconds; 200 training pairs and a 300-piece vocabulary.
MICRO = ["model.preset=tiny", "model.d_model=32", "model.n_heads=2", "model.n_encoder_layers=1",
         "model.n_decoder_layers=1", "model.d_ff=64", "data.vocab_size=300", "data.train_subset=200",
         "data.max_tokens=400", "train.max_epochs=null", "train.log_every=2", "train.eval_subset=8",
         "train.final_eval=false", "train.progress=false", "decode.max_len_b=5", "decode.max_len_a=0"]


@pytest.fixture(scope="session")
def multi30k_dir() -> Path:
    if not (SHARED_MULTI30K / "train.de.gz").is_file():
        pytest.skip(f"shared Multi30k copy not found at {SHARED_MULTI30K}")
    return SHARED_MULTI30K


@pytest.fixture
def micro_config(multi30k_dir: Path) -> Callable[..., C.Config]:
    """``micro_config(*overrides)``: the micro model's config on the shared data, then ``overrides``."""

    def make(*overrides: str) -> C.Config:
        return C.load(overrides=[*MICRO, f"data.data_dir={multi30k_dir}", *overrides])

    return make
