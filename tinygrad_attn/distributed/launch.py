"""Starting and recognising MPI jobs: where ``mpiexec`` is, and whether this process was started by one.

The ``[mpi]`` extra installs MPICH as a wheel: its ``mpiexec`` lands in the ``bin`` (``Scripts``) folder of
the Python environment, which is on ``PATH`` only when the environment is activated. ``find_mpiexec``
looks there first, then on ``PATH``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Mapping, Sequence
from pathlib import Path

# What MPI launchers put in the environment of the processes they start: the number of ranks.
WORLD_SIZE_VARIABLES = ("PMI_SIZE",  # MPICH's hydra, Intel MPI, srun --mpi=pmi2
                        "OMPI_COMM_WORLD_SIZE",  # Open MPI's mpirun
                        "MV2_COMM_WORLD_SIZE",  # MVAPICH2
                        "PMIX_SIZE")  # PMIx launchers


def launched_world_size(environ: Mapping[str, str] | None = None) -> int:
    """The number of ranks an MPI launcher started this process among (1 when none did); reads the
    environment only (MPI is not initialised)."""
    environ = os.environ if environ is None else environ
    for name in WORLD_SIZE_VARIABLES:
        value = environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 1


def find_mpiexec() -> str:
    """The path of ``mpiexec``: the one next to this Python (the ``[mpi]`` extra's), else the first on PATH."""
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(folder) / ("mpiexec.exe" if os.name == "nt" else "mpiexec")
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("mpiexec") or shutil.which("mpirun")
    if found is None:
        raise FileNotFoundError("no mpiexec next to this Python nor on PATH: pip install 'tinygrad_attn[mpi]' "
                                "(MPICH's wheel), or install an MPI (apt install mpich)")
    return found


def is_open_mpi(mpiexec: str) -> bool:
    """Is ``mpiexec`` Open MPI's (which refuses to run as root without a flag)?"""
    version = subprocess.run([mpiexec, "--version"], capture_output=True, text=True, timeout=30)
    return "Open MPI" in version.stdout + version.stderr or "OpenRTE" in version.stdout


def mpiexec_command(n: int, program: Sequence[str], mpiexec: str | None = None) -> list[str]:
    """The command line that starts ``program`` (argv) as ``n`` ranks on this machine."""
    mpiexec = mpiexec or find_mpiexec()
    command = [mpiexec, "-n", str(n)]
    if hasattr(os, "geteuid") and os.geteuid() == 0 and is_open_mpi(mpiexec):
        command.append("--allow-run-as-root")
    return command + list(program)
