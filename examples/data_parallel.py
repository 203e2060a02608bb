"""examples/train_mlp.py on several processes: data parallelism with ``tinygrad_attn.distributed``.

    mpiexec -n 2 python examples/data_parallel.py       # two ranks, each on half of the points
    python examples/data_parallel.py [STEPS]            # one rank (MPI starts as a job of one)

Every rank builds the same model, ``DistributedDataParallel`` gives all of them rank 0's weights, each
computes the loss of its share of the points, and ``sync_gradients`` averages the gradients, so every
rank takes the same step: the model that one process would train on all the points. Rank 0 prints.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import tinygrad_attn as ta
import tinygrad_attn.distributed as dist
from tinygrad_attn import nn

_spec = importlib.util.spec_from_file_location("train_mlp", Path(__file__).with_name("train_mlp.py"))
assert _spec is not None and _spec.loader is not None
train_mlp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(train_mlp)  # its make_spirals: the data


def main(steps: int = 300) -> float:
    dist.init_process_group(backend="mpi")
    rank, world = dist.get_rank(), dist.get_world_size()
    x_np, y_np = train_mlp.make_spirals()
    x, y = ta.tensor(x_np[rank::world]), ta.tensor(y_np[rank::world])  # this rank's share of the points

    ta.manual_seed(rank)  # different on every rank: DistributedDataParallel replaces them with rank 0's
    model = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 3))
    model = dist.DistributedDataParallel(model)
    optimizer = ta.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = nn.CrossEntropyLoss()

    for step in range(1, steps + 1):
        loss = loss_fn(model(x), y)       # the mean over this rank's points
        optimizer.zero_grad()
        loss.backward()
        model.sync_gradients()            # the mean of the ranks' gradients, on every rank
        optimizer.step()
        if step % 100 == 0:
            dist.all_reduce(loss, dist.ReduceOp.AVG)  # the loss of all the points, for the log
            if rank == 0:
                print(f"step {step:4d}  loss {loss.item():.4f}")

    with ta.no_grad():
        right = (model(x).argmax(dim=1) == y).float().sum()
    dist.all_reduce(right)
    accuracy = right.item() / len(y_np)
    if rank == 0:
        print(f"training accuracy on {world} rank(s): {accuracy:.1%}")
    dist.destroy_process_group()
    return accuracy


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
