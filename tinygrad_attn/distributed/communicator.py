"""The communicator interface: what every transport between processes (MPI, NCCL) must provide.

A communicator joins ``size`` processes, numbered ``rank = 0 .. size - 1``. Its collectives are called by
every rank in the same order with arrays of the same shape and dtype; each is *in place* where PyTorch's is:

    allreduce(a, op)   a <- op(a over all ranks)              (SUM, AVG = SUM / size, MAX, MIN)
    bcast(a, root)     a <- root's a
    allgather(a)       an array of shape (size, *a.shape): every rank's a, in rank order

A collective that has not completed after ``timeout`` seconds means that a rank died or hangs: the
communicator then aborts the whole job (``abort``) with a message that names the ranks that did not arrive,
instead of waiting forever.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from typing import Any


class ReduceOp(enum.Enum):
    """How ``all_reduce`` combines the ranks' values (``torch.distributed.ReduceOp``'s names)."""

    SUM = "sum"
    AVG = "avg"  # the sum divided by the number of ranks: floating-point arrays only
    MAX = "max"
    MIN = "min"


class Communicator(ABC):
    """``size`` processes that exchange arrays; one implementation per transport (mpi.py, nccl.py)."""

    rank: int
    size: int
    timeout: float  # seconds a collective may wait for the slowest rank

    @abstractmethod
    def allreduce(self, array: Any, op: ReduceOp = ReduceOp.SUM) -> None:
        """Replace ``array`` (contiguous) on every rank by ``op`` over the ranks' arrays."""

    @abstractmethod
    def bcast(self, array: Any, root: int = 0) -> None:
        """Replace ``array`` (contiguous) on every rank by ``root``'s."""

    @abstractmethod
    def allgather(self, array: Any) -> Any:
        """Every rank's ``array`` stacked in rank order: shape ``(size, *array.shape)``."""

    @abstractmethod
    def barrier(self) -> None:
        """Return once every rank has called ``barrier``."""

    @abstractmethod
    def abort(self, message: str, exit_code: int = 1) -> None:
        """Print ``message`` and end every rank of the job (does not return)."""

    @abstractmethod
    def close(self) -> None:
        """Release the communicator's resources (the communicator is unusable afterwards)."""


def check_contiguous(array: Any, what: str) -> None:
    """Collectives work in place on the array's memory: it must be one contiguous block."""
    if not array.flags.c_contiguous:
        raise ValueError(f"{what}: the array must be C-contiguous (got strides {array.strides} for shape "
                         f"{array.shape}); pass a contiguous tensor")
