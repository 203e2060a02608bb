"""What every rank runs under ``mpiexec -n N`` for tests/distributed/test_mpi.py (one launch, many checks):

    python -m tests.distributed.ranks_program collectives OUT_DIR   collectives, DDP training, the translator's
                                                                    ranks.py -> OUT_DIR/rank<r>.npz
    python -m tests.distributed.ranks_program nccl OUT_DIR          the same on GPU tensors through NCCL
    python -m tests.distributed.ranks_program hang SECONDS          rank 1 never arrives; timeout SECONDS
    python -m tests.distributed.ranks_program die                   rank 1 is killed (SIGKILL) before a collective

Rank r's inputs are known functions of r (``rank_values``), so the test computes the expected results itself.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np

import tinygrad_attn as ta
import tinygrad_attn.distributed as dist

SHAPES = [(), (7,), (3, 5), (2, 3, 4)]
DTYPES = ["float32", "float64", "float16", "int32", "int64"]
DDP_STEPS = 4


def rank_values(rank: int, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """Rank ``rank``'s input to the collectives: distinct per rank, exact in every dtype."""
    n = int(np.prod(shape))
    return ((np.arange(n) % 11) * (rank + 1) + 3 * rank - 5).reshape(shape).astype(dtype)


def ddp_model(seed: int) -> ta.nn.Module:
    ta.manual_seed(seed)
    return ta.nn.Sequential(ta.nn.Linear(6, 16), ta.nn.Tanh(), ta.nn.Linear(16, 3))


def ddp_data() -> tuple[np.ndarray, np.ndarray]:
    """The whole batch of every step (8 rows per step); rank r trains on its equal share of the rows."""
    rng = np.random.default_rng(0)
    return rng.standard_normal((DDP_STEPS, 8, 6)).astype(np.float32), rng.integers(0, 3, (DDP_STEPS, 8))


def ddp_losses(model: ta.nn.Module, rank: int, world: int, sync: bool) -> list[float]:
    """SGD with momentum on this rank's rows of every step; the loss of the whole batch as the ranks' mean."""
    optimizer = ta.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = ddp_data()
    rows = np.array_split(np.arange(x.shape[1]), world)[rank]
    losses = []
    for step in range(DDP_STEPS):
        optimizer.zero_grad()
        loss = ta.nn.functional.cross_entropy(model(ta.tensor(x[step, rows])), ta.tensor(y[step, rows]))
        loss.backward()
        if sync:
            model.sync_gradients()
            mean = ta.tensor(np.array(loss.item(), dtype=np.float64))
            dist.all_reduce(mean, dist.ReduceOp.AVG)
            losses.append(float(mean.item()))
        else:
            losses.append(float(loss.item()))
        optimizer.step()
    return losses


def translator_batches() -> list:
    """Two batches of random sentence pairs (vocabulary of 50): one optimiser step with gradient accumulation."""
    from models.translator.batching import TokenBatcher

    batches = []
    for seed in (1, 2):
        rng = np.random.default_rng(seed)
        pairs = [(rng.integers(4, 50, rng.integers(1, 12)).tolist(), rng.integers(4, 50, rng.integers(1, 12)).tolist())
                 for _ in range(40)]
        batcher = TokenBatcher(pairs, max_tokens=10_000, seed=seed)
        (indices,) = batcher.epoch_plan(0)
        batches.append(batcher.make_batch(indices))
    return batches


def translator_model() -> ta.nn.Module:
    from models.transformer import build_model
    from models.translator.vocab import PAD_ID

    ta.manual_seed(3)
    return build_model(50, pad_id=PAD_ID, d_model=16, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, d_ff=32,
                       dropout=0.0)


def translator_ranks(rank: int, world: int, out: dict[str, np.ndarray]) -> None:
    """models.translator.ranks on MPI: spreading work, sums, agreement, errors, and the gradient engine."""
    from models.translator.ranks import MPIGradients, Ranks

    ranks = Ranks(rank, world)
    out["map"] = np.array(ranks.map(lambda items: [10 * x for x in items], list(range(7))))
    out["sum"] = np.array(ranks.sum([1.5, float(rank)]))
    out["from_rank0"] = np.array(ranks.from_rank0(float(rank + 7)))
    try:
        ranks.on_rank0(lambda: int("not a number on rank 0"))
    except ValueError as e:
        out["on_rank0_error"] = np.array(str(e))
    model, batches = translator_model(), translator_batches()
    engine = MPIGradients(model, ranks, label_smoothing=0.1, device=ta.device("cpu"))
    out["engine_loss"] = np.array(engine.gradients(batches, sum(b.n_tgt_tokens for b in batches)))
    for name, p in model.named_parameters():
        out[f"engine_grad_{name}"] = p.grad.numpy()


def collectives(out_dir: str) -> None:
    dist.init_process_group("mpi", timeout=60)
    rank, world = dist.get_rank(), dist.get_world_size()
    out: dict[str, np.ndarray] = {"world": np.array(world)}
    for dtype in DTYPES:
        for shape in SHAPES:
            key = f"{dtype}_{'x'.join(map(str, shape))}"
            for op in (dist.ReduceOp.SUM, dist.ReduceOp.MAX, dist.ReduceOp.MIN) + (
                    (dist.ReduceOp.AVG,) if dtype.startswith("float") else ()):
                t = ta.tensor(rank_values(rank, shape, dtype))
                dist.all_reduce(t, op)
                out[f"all_reduce_{op.value}_{key}"] = t.numpy()
            t = ta.tensor(rank_values(rank, shape, dtype))
            dist.broadcast(t, src=world - 1)
            out[f"broadcast_{key}"] = t.numpy()
            gathered = [ta.zeros(*shape, dtype=dtype) for _ in range(world)]
            dist.all_gather(gathered, ta.tensor(rank_values(rank, shape, dtype)))
            out[f"all_gather_{key}"] = np.stack([g.numpy() for g in gathered])
    objects: list[object] = [None] * world
    dist.all_gather_object(objects, {"rank": rank, "text": "x" * (100 * rank)})
    out["objects_ok"] = np.array(objects == [{"rank": r, "text": "x" * (100 * r)} for r in range(world)])
    sent = [f"from rank {rank}", rank] if rank == 1 else [None, None]
    dist.broadcast_object_list(sent, src=1)
    out["broadcast_object_ok"] = np.array(sent == ["from rank 1", 1])
    dist.barrier()

    model = dist.DistributedDataParallel(ddp_model(seed=10 + rank), bucket_cap_mb=0.0002)  # 210 bytes: 3 buckets
    out["ddp_buckets"] = np.array(model.n_buckets)
    out["ddp_losses"] = np.array(ddp_losses(model, rank, world, sync=True))
    for name, value in model.module.state_dict().items():
        out[f"ddp_weight_{name}"] = value.numpy()
    translator_ranks(rank, world, out)
    np.savez(os.path.join(out_dir, f"rank{rank}.npz"), **out)
    dist.destroy_process_group()


def nccl(out_dir: str) -> None:
    """The collectives on GPU tensors through NCCL (one rank per GPU), and DDP's buckets on the GPU."""
    dist.init_process_group("nccl", timeout=120)
    rank, world = dist.get_rank(), dist.get_world_size()
    out: dict[str, np.ndarray] = {"world": np.array(world)}
    for dtype in ("float32", "float16", "int64"):
        for op in (dist.ReduceOp.SUM, dist.ReduceOp.MAX) + ((dist.ReduceOp.AVG,) if dtype != "int64" else ()):
            t = ta.tensor(rank_values(rank, (3, 5), dtype), device="cuda")
            dist.all_reduce(t, op)
            out[f"all_reduce_{op.value}_{dtype}"] = t.numpy()
        t = ta.tensor(rank_values(rank, (3, 5), dtype), device="cuda")
        dist.broadcast(t, src=world - 1)
        out[f"broadcast_{dtype}"] = t.numpy()
        gathered = [ta.zeros(3, 5, dtype=dtype, device="cuda") for _ in range(world)]
        dist.all_gather(gathered, ta.tensor(rank_values(rank, (3, 5), dtype), device="cuda"))
        out[f"all_gather_{dtype}"] = np.stack([g.numpy() for g in gathered])
    model = ddp_model(seed=10 + rank).to("cuda")
    model = dist.DistributedDataParallel(model)
    x, y = ddp_data()
    loss = ta.nn.functional.cross_entropy(model(ta.tensor(x[0], device="cuda")), ta.tensor(y[0], device="cuda"))
    loss.backward()
    model.sync_gradients()
    for name, p in model.module.named_parameters():
        out[f"grad_{name}"] = p.grad.numpy()
    np.savez(os.path.join(out_dir, f"rank{rank}.npz"), **out)
    dist.destroy_process_group()


def hang(seconds: float) -> None:
    dist.init_process_group("mpi", timeout=seconds)
    t = ta.ones(4)
    dist.all_reduce(t)  # both ranks arrive
    if dist.get_rank() == 1:
        time.sleep(600)  # hung: never arrives at the next collective
    dist.all_reduce(t)


def die() -> None:
    dist.init_process_group("mpi", timeout=600)
    t = ta.ones(4)
    dist.all_reduce(t)
    if dist.get_rank() == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    dist.all_reduce(t)


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "collectives":
        collectives(sys.argv[2])
    elif command == "nccl":
        nccl(sys.argv[2])
    elif command == "hang":
        hang(float(sys.argv[2]))
    elif command == "die":
        die()
    else:
        raise SystemExit(f"unknown command {command!r}")
