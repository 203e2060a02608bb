"""Shared fixtures for the translator tests: where the offline copy of Multi30k lives."""

from pathlib import Path

import pytest

# <project root>/../shared/data/multi30k: a read-only copy of the upstream files (never the network).
SHARED_MULTI30K = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "multi30k"


@pytest.fixture(scope="session")
def multi30k_dir() -> Path:
    if not (SHARED_MULTI30K / "train.de.gz").is_file():
        pytest.skip(f"shared Multi30k copy not found at {SHARED_MULTI30K}")
    return SHARED_MULTI30K
