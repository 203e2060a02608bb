"""The CI guard in ``tests/conftest.py``: with ``CI=true`` a missing torch fails the session; locally it does not.

Each test starts pytest in a subprocess with a stub ``torch`` module first on ``PYTHONPATH`` whose import
raises, and only collects this file, so no test runs twice and nothing slow is imported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _pytest_without_torch(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    """Collect this file in a fresh pytest whose ``import torch`` raises ImportError, with ``CI`` set to ``ci``."""
    (tmp_path / "torch.py").write_text('raise ImportError("torch hidden by tests/test_ci_guard.py")\n')
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(tmp_path), env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only", __file__]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)


def test_ci_without_torch_fails_the_session_with_a_clear_message(tmp_path: Path) -> None:
    proc = _pytest_without_torch(tmp_path, "true")
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, proc.stdout + proc.stderr
    assert "CI=true but PyTorch cannot be imported" in proc.stderr
    assert "torch hidden by tests/test_ci_guard.py" in proc.stderr  # the import error itself is shown


@pytest.mark.parametrize("ci", [None, "false"])
def test_without_ci_a_missing_torch_is_no_error(tmp_path: Path, ci: str | None) -> None:
    proc = _pytest_without_torch(tmp_path, ci)
    assert proc.returncode == pytest.ExitCode.OK, proc.stdout + proc.stderr
    assert "collected" in proc.stdout and "CI=" not in proc.stderr
