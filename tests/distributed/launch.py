"""Starting ``mpiexec -n N`` from a test: skipped without mpi4py locally, a failure on CI (which installs the
``[mpi]`` extra), as tests/conftest.py does for torch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import tinygrad_attn.distributed as dist

ROOT = Path(__file__).resolve().parents[2]


def require_mpi() -> None:
    """Skip (locally) or fail (CI=true) when this environment cannot run MPI jobs."""
    problem = None
    if not dist.is_available():
        problem = "mpi4py is not installed (pip install -e '.[mpi]')"
    else:
        try:
            dist.find_mpiexec()
        except FileNotFoundError as e:
            problem = str(e)
    if problem is None:
        return
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"CI={os.environ['CI']} but MPI cannot be used: {problem}; CI installs the [mpi] extra")
    pytest.skip(problem)


def run_ranks(n: int, args: list[str], timeout: float, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """``mpiexec -n n python ARGS`` in the repository root; output captured, killed after ``timeout`` s."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    command = dist.mpiexec_command(n, [sys.executable, *args])
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
                          **kwargs)  # type: ignore[call-overload]
