"""Collectives on tensors and on Python objects, across the ranks of the process group (``torch.distributed``'s
names and signatures). Every rank calls each one, in the same order; tensors are changed in place.

    all_reduce(t, op)            t <- op over the ranks' t (ReduceOp.SUM, AVG, MAX, MIN)
    broadcast(t, src)            t <- rank src's t
    all_gather(out_list, t)      out_list[r] <- rank r's t
    all_gather_object(out, obj)  out[r] <- rank r's obj (pickled)
    broadcast_object_list(l, src)  l[i] <- rank src's l[i] (pickled)
    barrier()

They work on a tensor's array and are not recorded by autograd (as in PyTorch): use them on gradients,
parameters and statistics, not inside a differentiated computation.
"""

from __future__ import annotations

import pickle
from typing import Any

from ..tensor import Tensor
from .communicator import ReduceOp
from .process_group import group


def _changed(tensor: Tensor) -> None:
    tensor._version.value += 1  # graphs that saved this tensor must not backward through its old value


def all_reduce(tensor: Tensor, op: ReduceOp = ReduceOp.SUM) -> None:
    """Replace ``tensor`` on every rank by ``op`` over all ranks' tensors."""
    group().communicator_for(tensor.data).allreduce(tensor.data, op)
    _changed(tensor)


def broadcast(tensor: Tensor, src: int = 0) -> None:
    """Replace ``tensor`` on every rank by rank ``src``'s."""
    group().communicator_for(tensor.data).bcast(tensor.data, src)
    _changed(tensor)


def all_gather(tensor_list: list[Tensor], tensor: Tensor) -> None:
    """Fill ``tensor_list`` (one tensor per rank, shaped like ``tensor``) with every rank's ``tensor``."""
    g = group()
    if len(tensor_list) != g.host.size:
        raise ValueError(f"all_gather: tensor_list has {len(tensor_list)} tensors; expected one per rank "
                         f"({g.host.size})")
    gathered = g.communicator_for(tensor.data).allgather(tensor.data)
    for out, part in zip(tensor_list, gathered):
        if out.shape != tensor.shape or out.dtype != tensor.dtype or out.device != tensor.device:
            raise ValueError(f"all_gather: an output tensor is {out.dtype}{list(out.shape)} on {out.device}; "
                             f"expected {tensor.dtype}{list(tensor.shape)} on {tensor.device}, like the input")
        out.data[...] = part
        _changed(out)


def all_gather_object(object_list: list[Any], obj: Any) -> None:
    """Fill ``object_list`` (of length world size) with every rank's ``obj``, pickled (trust your ranks)."""
    host = group().host
    if len(object_list) != host.size:
        raise ValueError(f"all_gather_object: object_list has {len(object_list)} entries; expected one per "
                         f"rank ({host.size})")
    for r, data in enumerate(host.allgather_bytes(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))):
        object_list[r] = pickle.loads(data)


def broadcast_object_list(object_list: list[Any], src: int = 0) -> None:
    """Replace the entries of ``object_list`` on every rank by rank ``src``'s (pickled; same length everywhere)."""
    host = group().host
    data = pickle.dumps(object_list, protocol=pickle.HIGHEST_PROTOCOL) if host.rank == src else b""
    received = pickle.loads(host.bcast_bytes(data, src))
    if len(received) != len(object_list):
        raise ValueError(f"broadcast_object_list: rank {src} sent {len(received)} objects, this rank's list "
                         f"holds {len(object_list)}")
    object_list[:] = received


def barrier() -> None:
    """Return once every rank has called ``barrier()``."""
    group().host.barrier()
