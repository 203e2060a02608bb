"""The GPU-run switch in ``tests/conftest.py``: with ``TINYGRAD_ATTN_REQUIRE_CUDA=1`` a machine without a usable
CUDA device fails the session up front (a GPU run must not pass by skipping every cuda test); without it, nothing
changes. Each test collects this file in a fresh pytest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _pytest_with_require_cuda(value: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "TINYGRAD_ATTN_REQUIRE_CUDA")}
    if value is not None:
        env["TINYGRAD_ATTN_REQUIRE_CUDA"] = value
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only", __file__]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)


def test_require_cuda_without_a_gpu_fails_the_session() -> None:
    import tinygrad_attn as ta

    if ta.cuda.is_available():
        pytest.skip("a CUDA device is available here: the switch has nothing to refuse")
    proc = _pytest_with_require_cuda("1")
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, proc.stdout + proc.stderr
    assert "TINYGRAD_ATTN_REQUIRE_CUDA=1 but CUDA cannot be used: device 'cuda' is not available" in proc.stderr


@pytest.mark.parametrize("value", [None, "0"])
def test_without_require_cuda_a_missing_gpu_is_no_error(value: str | None) -> None:
    proc = _pytest_with_require_cuda(value)
    assert proc.returncode == pytest.ExitCode.OK, proc.stdout + proc.stderr
