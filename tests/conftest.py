"""Test-suite wide setup: hypothesis profiles and the ``device`` fixture.

Hypothesis profiles, chosen with the environment variable ``HYPOTHESIS_PROFILE``:

- ``ci`` (the default): few examples per test, derandomized so every run draws the same inputs (a failure
  on CI reproduces locally), no example database, no deadline (timings on shared machines are noise);
- ``dev``: more examples, random each run, with the local example database (failures are replayed first);
- ``intense``: many examples, for a long soak before a release: ``HYPOTHESIS_PROFILE=intense pytest tests``.

Tests that pick their own ``max_examples`` scale it from the loaded profile (see ``tests/op_checks.py``),
so ``intense`` makes every test work harder.

The ``device`` fixture runs a test once per backend: ``"cpu"`` always, ``"strict"`` always (the strict
stand-in for a CuPy GPU, tests/strict_device.py: NumPy inside, CuPy's rules outside, host reads counted), and
``"cuda"`` when ``ta.cuda.is_available()``; otherwise the cuda run is skipped with the reason.

``TINYGRAD_ATTN_REQUIRE_CUDA=1`` is for GPU runs: without a usable CUDA device the session fails up front
instead of skipping every cuda test.

PyTorch is an optional oracle: locally, the parity tests skip without it (``pytest.importorskip("torch")``).
On CI (the environment variable ``CI`` is ``true``) a missing or broken torch stops the session before any
test runs, so the parity tests can never pass CI by skipping.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

import tinygrad_attn as ta
from tests import strict_device

strict_device.register()  # the "strict" device exists for the whole session (never a user device)

settings.register_profile("ci", max_examples=10, deadline=None, derandomize=True, database=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=40, deadline=None)
settings.register_profile("intense", max_examples=400, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_configure(config: pytest.Config) -> None:
    """On CI, fail the session up front when ``import torch`` fails, instead of skipping every parity test. With
    ``TINYGRAD_ATTN_REQUIRE_CUDA=1`` (a GPU run), fail it when there is no usable CUDA device, instead of skipping
    every CUDA test."""
    if os.environ.get("TINYGRAD_ATTN_REQUIRE_CUDA", "") == "1" and not ta.cuda.is_available():
        try:
            ta.tensor([0.0], device="cuda")
        except RuntimeError as e:
            raise pytest.UsageError(f"TINYGRAD_ATTN_REQUIRE_CUDA=1 but CUDA cannot be used: {e}") from e
    if os.environ.get("CI", "").lower() not in ("true", "1"):
        return
    try:
        import torch  # noqa: F401
    except ImportError as e:
        raise pytest.UsageError(f"CI={os.environ['CI']} but PyTorch cannot be imported ({e}): CI installs torch "
                                "as the oracle of the parity tests, which would all be skipped without it") from e

CUDA_AVAILABLE = ta.cuda.is_available()

DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("strict", id="strict"),
    pytest.param("cuda", id="cuda", marks=pytest.mark.skipif(
        not CUDA_AVAILABLE, reason="no CUDA device: CuPy is not installed or no GPU was found")),
]


@pytest.fixture(scope="session", params=DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    """The name of a backend to run on: "cpu", "strict", then "cuda" where one is available.

    Session-scoped, so hypothesis' ``@given`` tests can use it (it is the same for every example)."""
    return request.param
