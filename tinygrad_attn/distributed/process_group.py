"""The process group: this process's place among the ranks of a job, as ``torch.distributed`` names it.

    init_process_group(backend="mpi")   join the job an MPI launcher (mpirun, mpiexec, srun) started
    get_rank(), get_world_size()        this process's rank and the number of ranks
    destroy_process_group()             leave it (MPI itself is finalised when the process exits)

Backends: ``"mpi"`` moves every array through MPI (arrays on a GPU are staged through the host);
``"nccl"`` moves arrays on a GPU through NCCL (one rank per GPU: the ``k``-th rank on a machine uses its GPU
``k``, ``get_local_rank()``) and host arrays through MPI, which also starts NCCL.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np

from .communicator import Communicator
from .mpi import MPICommunicator
from .nccl import NCCLCommunicator

BACKENDS = ("mpi", "nccl")
DEFAULT_TIMEOUT = timedelta(minutes=30)  # PyTorch's default: a collective may wait this long for the slowest rank


@dataclass
class ProcessGroup:
    """The communicators of the job: ``host`` for NumPy arrays, ``device`` (NCCL, or None) for GPU arrays."""

    backend: str
    host: MPICommunicator
    device: Communicator | None

    def communicator_for(self, array: Any) -> Communicator:
        if self.device is not None and not isinstance(array, np.ndarray):
            return self.device
        return self.host


_group: ProcessGroup | None = None


def is_available() -> bool:
    """Can this process join an MPI job (is mpi4py installed)? Does not import it."""
    return importlib.util.find_spec("mpi4py") is not None


def is_initialized() -> bool:
    return _group is not None


def init_process_group(backend: str = "mpi", timeout: timedelta | float = DEFAULT_TIMEOUT) -> None:
    """Join the job: the ranks and their number come from the launcher. ``timeout`` (a timedelta or
    seconds) bounds every collective: past it the job is aborted with a message naming the missing ranks."""
    global _group
    if backend not in BACKENDS:
        raise ValueError(f"init_process_group: unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    if _group is not None:
        raise RuntimeError("init_process_group: this process already joined a process group "
                           "(call destroy_process_group first)")
    seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
    host = MPICommunicator(timeout=seconds)
    device = None
    if backend == "nccl":
        import cupy

        cupy.cuda.Device(host.local_rank % cupy.cuda.runtime.getDeviceCount()).use()
        device = NCCLCommunicator(host)
    _group = ProcessGroup(backend, host, device)


def group() -> ProcessGroup:
    """The process group this process joined (an error saying what to call first if none)."""
    if _group is None:
        raise RuntimeError("tinygrad_attn.distributed: no process group; call init_process_group() first "
                           "(in a program started by mpirun/mpiexec/srun)")
    return _group


def get_rank() -> int:
    return group().host.rank


def get_world_size() -> int:
    return group().host.size


def get_local_rank() -> int:
    """This rank's number among the ranks on its machine (which GPU it takes, how many cores are its share)."""
    return group().host.local_rank


def get_local_world_size() -> int:
    """The number of ranks on this machine."""
    return group().host.local_size


def get_backend() -> str:
    return group().backend


def abort(message: str, exit_code: int = 1) -> None:
    """Print ``message`` and end every rank of the job now (after an error that only this rank met, which
    would leave the others waiting for it in their next collective)."""
    group().host.abort(message, exit_code)


def destroy_process_group() -> None:
    """Leave the process group (its communicators are freed; a new ``init_process_group`` may follow)."""
    global _group
    if _group is None:
        return
    if _group.device is not None:
        _group.device.close()
    _group.host.close()
    _group = None
