"""The NCCL communicator (CuPy's ``cupy.cuda.nccl``): collectives between GPUs, one rank per GPU.

NCCL moves device arrays between GPUs directly (NVLink, PCIe, InfiniBand with GPUDirect) without
staging them through host memory. It has no launcher of its own: MPI starts the ranks and carries
NCCL's unique id from rank 0 to the others, and MPI stays the host-side channel (barriers, objects).

A collective is queued on the array's current CUDA stream; an event recorded after it is polled with the
MPI communicator's deadline (``MPICommunicator.wait_until``), so a rank that dies or hangs ends the job
with the same message as on the host.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .communicator import Communicator, ReduceOp, check_contiguous
from .mpi import MPICommunicator

_NCCL_TYPES = {np.dtype(np.float16): "NCCL_FLOAT16", np.dtype(np.float32): "NCCL_FLOAT32",
               np.dtype(np.float64): "NCCL_FLOAT64", np.dtype(np.int32): "NCCL_INT32",
               np.dtype(np.int64): "NCCL_INT64", np.dtype(np.int8): "NCCL_INT8", np.dtype(np.uint8): "NCCL_UINT8"}
_UNIQUE_ID_BYTES = 128  # NCCL_UNIQUE_ID_BYTES: the id that NCCL's ranks find each other by
_NCCL_OPS = {ReduceOp.SUM: "NCCL_SUM", ReduceOp.AVG: "NCCL_SUM", ReduceOp.MAX: "NCCL_MAX", ReduceOp.MIN: "NCCL_MIN"}


def import_nccl() -> Any:
    """``cupy.cuda.nccl``, or an ImportError that says what is missing."""
    try:
        from cupy.cuda import nccl
    except ImportError as e:
        raise ImportError(f"the NCCL backend needs CuPy built with NCCL ({e}): pip install 'tinygrad_attn[gpu]' "
                          "and NCCL (pip install nvidia-nccl-cu12)") from e
    return nccl


class NCCLCommunicator(Communicator):
    """The ranks of ``host`` (an MPI communicator), each on its own GPU (the current CUDA device)."""

    def __init__(self, host: MPICommunicator) -> None:
        self._nccl = nccl = import_nccl()
        import cupy

        self._cupy, self.host = cupy, host
        self.rank, self.size, self.timeout = host.rank, host.size, host.timeout
        unique_id = np.array(nccl.get_unique_id() if host.rank == 0 else [0] * _UNIQUE_ID_BYTES, np.int64)
        host.bcast(unique_id, root=0)
        self.comm = nccl.NcclCommunicator(host.size, tuple(int(v) for v in unique_id), host.rank)

    def _run(self, what: str, call: Any) -> None:
        """Queue ``call(stream)`` (one NCCL collective) and wait for it with the host's deadline."""
        stream = self._cupy.cuda.get_current_stream()
        call(stream.ptr)
        event = self._cupy.cuda.Event(block=False, disable_timing=True)
        event.record(stream)
        self.host.wait_until(lambda: bool(event.done), what)

    def _type(self, array: Any, what: str) -> int:
        if array.dtype not in _NCCL_TYPES:
            raise TypeError(f"{what}: NCCL cannot reduce {array.dtype} arrays; use one of "
                            f"{', '.join(str(d) for d in _NCCL_TYPES)}")
        return int(getattr(self._nccl, _NCCL_TYPES[array.dtype]))

    def allreduce(self, array: Any, op: ReduceOp = ReduceOp.SUM) -> None:
        check_contiguous(array, "all_reduce")
        if op is ReduceOp.AVG and array.dtype.kind != "f":
            raise TypeError(f"all_reduce: ReduceOp.AVG needs a floating-point array, not {array.dtype}")
        kind, nccl_op = self._type(array, "all_reduce"), int(getattr(self._nccl, _NCCL_OPS[op]))
        self._run(f"NCCL all_reduce ({op.value}) of {array.size:,} {array.dtype} values",
                  lambda s: self.comm.allReduce(array.data.ptr, array.data.ptr, array.size, kind, nccl_op, s))
        if op is ReduceOp.AVG:
            array /= self.size

    def bcast(self, array: Any, root: int = 0) -> None:
        check_contiguous(array, "broadcast")
        if not 0 <= root < self.size:
            raise ValueError(f"broadcast: root {root} is not a rank of this group of {self.size}")
        self._run(f"NCCL broadcast from rank {root} of {array.nbytes:,} bytes",
                  lambda s: self.comm.bcast(array.data.ptr, array.nbytes, self._nccl.NCCL_UINT8, root, s))

    def allgather(self, array: Any) -> Any:
        check_contiguous(array, "all_gather")
        out = self._cupy.empty((self.size, *array.shape), dtype=array.dtype)
        self._run(f"NCCL all_gather of {array.nbytes:,} bytes",
                  lambda s: self.comm.allGather(array.data.ptr, out.data.ptr, array.nbytes, self._nccl.NCCL_UINT8, s))
        return out

    def barrier(self) -> None:
        self.host.barrier()

    def abort(self, message: str, exit_code: int = 1) -> None:
        self.comm.abort()
        self.host.abort(message, exit_code)

    def close(self) -> None:
        self.comm.destroy()
