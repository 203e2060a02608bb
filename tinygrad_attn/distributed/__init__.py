"""Training on several processes and machines: MPI (mpi4py) between hosts, NCCL between GPUs.

    # mpirun -n 4 python train.py
    import tinygrad_attn.distributed as dist
    dist.init_process_group(backend="mpi")              # "nccl": GPU arrays through NCCL, one rank per GPU
    model = dist.DistributedDataParallel(model)         # rank 0's weights everywhere
    ...
    loss.backward()
    model.sync_gradients()                              # gradients averaged over the ranks, in buckets
    optimizer.step()

The names are ``torch.distributed``'s: ``get_rank``, ``get_world_size``, ``barrier``, ``all_reduce``,
``broadcast``, ``all_gather`` (in place, on tensors), ``all_gather_object``, ``broadcast_object_list``,
``ReduceOp``. Every collective has a deadline (``init_process_group(timeout=...)``): a rank that dies or
hangs ends the job with a message naming it. Importing this package imports neither mpi4py nor CuPy, and
does not initialise MPI: ``init_process_group`` does. ``docs/distributed.md`` says how to launch jobs.

    communicator.py   the interface of a transport, ReduceOp
    mpi.py            MPI (host arrays), non-blocking collectives polled with a deadline
    nccl.py           NCCL (GPU arrays), started through MPI
    process_group.py  init_process_group, get_rank, get_world_size, destroy_process_group
    collectives.py    collectives on tensors and objects
    ddp.py            DistributedDataParallel, bucketed gradients
    launch.py         find mpiexec; was this process started by an MPI launcher?
"""

from .collectives import all_gather, all_gather_object, all_reduce, barrier, broadcast, broadcast_object_list
from .communicator import Communicator, ReduceOp
from .ddp import DistributedDataParallel, broadcast_tensors
from .launch import find_mpiexec, launched_world_size, mpiexec_command
from .process_group import (
    abort,
    destroy_process_group,
    get_backend,
    get_local_rank,
    get_local_world_size,
    get_rank,
    get_world_size,
    init_process_group,
    is_available,
    is_initialized,
)

__all__ = ["Communicator", "DistributedDataParallel", "ReduceOp", "abort", "all_gather", "all_gather_object",
           "all_reduce", "barrier", "broadcast", "broadcast_object_list", "broadcast_tensors", "destroy_process_group",
           "find_mpiexec", "get_backend", "get_local_rank", "get_local_world_size",
           "get_rank", "get_world_size", "init_process_group", "is_available",
           "is_initialized", "launched_world_size", "mpiexec_command"]
