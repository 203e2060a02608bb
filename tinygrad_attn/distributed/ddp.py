"""DistributedDataParallel: one model trained by several ranks, each on its own part of every batch.

Data parallelism in two moves (PyTorch's DDP, ChainerMN's multi-node optimiser):

- at construction, rank 0's parameters and buffers are broadcast to every rank, so all start equal;
- after each backward, the gradients are averaged over the ranks (``sync_gradients``), so every rank's
  optimiser takes the same step and the replicas stay equal without ever sending weights again.

If rank r's loss is the mean over its part of the batch, the average of the ranks' gradients is the
gradient of the mean over the whole batch (parts of equal size); with ``op=ReduceOp.SUM`` and each loss
divided by the size of the *whole* batch, the sum is that gradient for parts of any size.

Gradients travel in buckets: they are copied into a few flat arrays of about ``bucket_cap_mb`` each (one
dtype and device per bucket), one all-reduce per bucket, then copied back. A message has a fixed cost
(latency) on top of its bytes, so a few big messages beat one per parameter.

Why an explicit ``sync_gradients()`` after ``backward()`` and not a hook that fires during it, as in
PyTorch: our backward computes every gradient before returning, on one thread, and our collectives are
waited for on that same thread, so overlapping communication with the rest of backward would gain nothing
here; one call in the training loop says plainly where the ranks meet (before clipping and ``step``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..backend import array_module
from ..nn.module import Module
from ..tensor import Tensor
from .communicator import ReduceOp
from .process_group import group


class Bucket:
    """Tensors of one dtype and device that travel as one flat array (kept between steps, no reallocation)."""

    def __init__(self, tensors: Sequence[Tensor]) -> None:
        self.tensors = list(tensors)
        first = self.tensors[0].data
        self.offsets = [0]
        for t in self.tensors:
            self.offsets.append(self.offsets[-1] + t.numel())
        self.flat = array_module(first).empty(self.offsets[-1], dtype=first.dtype)

    def slices(self) -> list[Any]:
        return [self.flat[a:b].reshape(t.shape) for t, a, b in zip(self.tensors, self.offsets, self.offsets[1:])]


def make_buckets(tensors: Sequence[Tensor], cap_bytes: int) -> list[Bucket]:
    """Cut ``tensors`` (in order) into buckets of at most ``cap_bytes`` (a bigger tensor: a bucket of its own),
    one dtype and device per bucket."""
    buckets: list[Bucket] = []
    open_: dict[tuple[Any, Any], list[Tensor]] = {}
    for t in tensors:
        key = (t.dtype, t.device)
        current = open_.setdefault(key, [])
        if current and (sum(x.data.nbytes for x in current) + t.data.nbytes) > cap_bytes:
            buckets.append(Bucket(current))
            current = open_[key] = []
        current.append(t)
    buckets.extend(Bucket(ts) for ts in open_.values() if ts)
    return buckets


def broadcast_tensors(tensors: Sequence[Tensor], src: int = 0, cap_bytes: int = 25 << 20) -> None:
    """Replace every tensor's values by rank ``src``'s, in buckets."""
    g = group()
    for bucket in make_buckets(tensors, cap_bytes):
        for t, part in zip(bucket.tensors, bucket.slices()):
            part[...] = t.data
        g.communicator_for(bucket.flat).bcast(bucket.flat, src)
        for t, part in zip(bucket.tensors, bucket.slices()):
            t.data[...] = part
            t._version.value += 1


class DistributedDataParallel(Module):
    """``module`` replicated on every rank: call it as the module, then ``sync_gradients()`` after ``backward()``.

        model = DistributedDataParallel(model)           # after init_process_group(); rank 0's weights
        loss = loss_fn(model(x_part), y_part)            # this rank's part of the batch
        loss.backward()
        model.sync_gradients()                           # .grad = the mean over ranks, in every rank
        optimizer.step()

    Gradients of parameters that got none on this rank count as zeros, and every parameter that requires
    grad has a ``.grad`` after the call. The state dict names the parameters ``module.<name>``, as PyTorch's.
    """

    def __init__(self, module: Module, bucket_cap_mb: float = 25.0, broadcast_buffers: bool = True) -> None:
        super().__init__()
        if bucket_cap_mb <= 0:
            raise ValueError(f"DistributedDataParallel: bucket_cap_mb must be positive, got {bucket_cap_mb}")
        self.module = module
        cap = int(bucket_cap_mb * (1 << 20))
        params = [p for p in module.parameters() if p.requires_grad]
        # Backward produces the last layers' gradients first; buckets in that order are PyTorch's choice too.
        self._grad_buckets = make_buckets(params[::-1], cap)
        broadcast_tensors(list(module.parameters()) + (list(module.buffers()) if broadcast_buffers else []),
                          src=0, cap_bytes=cap)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)

    @property
    def n_buckets(self) -> int:
        """All-reduce messages per ``sync_gradients`` call."""
        return len(self._grad_buckets)

    def sync_gradients(self, op: ReduceOp = ReduceOp.AVG) -> None:
        """Combine every parameter's ``.grad`` over the ranks (the mean by default; ``ReduceOp.SUM`` for
        losses already divided by the whole batch's size): one all-reduce per bucket."""
        g = group()
        for bucket in self._grad_buckets:
            for p, part in zip(bucket.tensors, bucket.slices()):
                if p.grad is None:
                    part.fill(0)
                else:
                    part[...] = p.grad.data
            g.communicator_for(bucket.flat).allreduce(bucket.flat, op)
            for p, part in zip(bucket.tensors, bucket.slices()):
                if p.grad is None:
                    p.grad = Tensor._make(part.copy())
                else:
                    p.grad.data[...] = part
                    p.grad._version.value += 1
