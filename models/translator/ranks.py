"""The translator on several MPI ranks: who writes, how work is spread, and the MPI gradient engine.

Started as ``mpirun -n N python -m models.translator train CONFIG`` (or ``srun``), every rank runs the whole
program on the same data, vocabulary, seed and batch order, so every rank knows every global batch without
any being sent. Then:

- each rank's BLAS gets its share of its machine's cores (one thread per rank with one rank per core);
- each batch is split into N parts of about equal token counts (``Batch.split``, as ``train.workers`` does);
  rank r computes the gradient of part r, each part's loss divided by the target tokens of the *whole*
  step, and the ranks' gradients are summed (``MPIGradients``, through ``DistributedDataParallel``'s
  buckets): the gradient of the whole batch's mean loss, as in one process;
- rank 0 alone writes (run directory, logs, metrics, progress bar, checkpoints, plots); the other ranks
  compute. Every rank reads the data and, on ``--resume``, the checkpoint: the run directory and the
  data must be visible to every rank (a shared filesystem on a cluster);
- validation loss and decoding are spread: rank r takes every N-th batch or sentence (``Ranks.map``), and
  every rank gets all the results, so all agree on the scores;
- an error that every rank meets (a bad config, a run directory that exists) is found by rank 0 and raised
  on all (``Ranks.on_rank0``); an error on one rank aborts the job (``Ranks.fail``) instead of leaving the
  others waiting.

``Ranks`` of one process (``SINGLE_PROCESS``) does all of this locally, so the training loop has one code path.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

import tinygrad_attn as ta
import tinygrad_attn.distributed as dist
from models.transformer import Transformer
from models.translator.batching import Batch
from models.translator.config import Config, ConfigError
from models.translator.step import accumulate_gradients

Item = TypeVar("Item")
Result = TypeVar("Result")

COLLECTIVE_TIMEOUT_S = 1800.0  # a collective waits this long for a rank before the job is aborted


class Ranks:
    """This process's place among the ranks of a training job (rank 0 of 1 without MPI)."""

    def __init__(self, rank: int = 0, size: int = 1) -> None:
        self.rank, self.size = rank, size

    @property
    def writes(self) -> bool:
        """Does this rank write the run's files (logs, metrics, checkpoints)? Rank 0 alone."""
        return self.rank == 0

    def on_rank0(self, function: Callable[[], Result]) -> Result:
        """``function()`` computed on rank 0, its result (or the exception it raised) on every rank."""
        if self.size == 1:
            return function()
        outcome: list[Any] = [None, None]
        if self.rank == 0:
            try:
                outcome[0] = function()
            except Exception as e:  # raised below, on every rank
                outcome[1] = e
        dist.broadcast_object_list(outcome, src=0)
        if outcome[1] is not None:
            raise outcome[1]
        return outcome[0]

    def map(self, function: Callable[[list[Item]], list[Result]], items: Sequence[Item]) -> list[Result]:
        """``function(items)`` (one result per item), each rank computing every ``size``-th item and every
        rank getting all the results, in the order of ``items``."""
        if self.size == 1:
            return function(list(items))
        mine = function(list(items[self.rank::self.size]))
        parts: list[Any] = [None] * self.size
        dist.all_gather_object(parts, mine)
        results: list[Any] = [None] * len(items)
        for r, part in enumerate(parts):
            results[r::self.size] = part
        return results

    def sum(self, values: Sequence[float]) -> list[float]:
        """Each value summed over the ranks (in float64)."""
        if self.size == 1:
            return list(values)
        total = ta.tensor(np.asarray(values, dtype=np.float64))
        dist.all_reduce(total)
        return [float(v) for v in total.numpy()]

    def from_rank0(self, value: float) -> float:
        """Rank 0's ``value`` on every rank (decisions that must agree: a clock read to stop on)."""
        if self.size == 1:
            return value
        shared = ta.tensor(np.array([value], dtype=np.float64))
        dist.broadcast(shared, src=0)
        return float(shared.numpy()[0])

    def fail(self, message: str, exit_code: int) -> None:
        """After an error on this rank: end every rank of the job (the others would wait for this one)."""
        if self.size > 1:
            dist.abort(f"rank {self.rank} of {self.size}: {message}", exit_code)


SINGLE_PROCESS = Ranks()


def join_ranks(config: Config, environ: dict[str, str] | None = None) -> Ranks:
    """The ranks this training run has: MPI's when ``train.distributed`` is ``"mpi"``, or ``"auto"`` and an MPI
    launcher started this process among several; one process otherwise. Joins the MPI job (once)."""
    mode = config.train.distributed
    launched = dist.launched_world_size(os.environ if environ is None else environ)
    if mode == "none" or (mode == "auto" and launched <= 1):
        return SINGLE_PROCESS
    if not dist.is_available():
        raise ConfigError(f"train.distributed = {mode!r} (started by an MPI launcher: {launched} ranks) needs "
                          "mpi4py: pip install 'tinygrad_attn[mpi]'")
    if not dist.is_initialized():
        dist.init_process_group("mpi", timeout=COLLECTIVE_TIMEOUT_S)
        _share_cores(dist.get_local_world_size())
    return Ranks(dist.get_rank(), dist.get_world_size())


def _share_cores(ranks_here: int) -> None:
    """Give this rank's BLAS its share of the machine's cores (one thread each for one rank per core): ranks
    that each start a thread per core would fight over the cores (parallel.py measured why one thread each
    is fastest on the CPU)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # without threadpoolctl (the [translate] extra) BLAS keeps its own count
        return
    threadpool_limits(limits=max(1, cores // ranks_here), user_api="blas")  # kept for the life of the process


def fail_job(message: str, exit_code: int) -> None:
    """In a program that joined an MPI job: print ``message`` with this rank's number and end every rank (after
    an error on this one, which the others would wait for); without MPI, return and do nothing."""
    if dist.is_initialized():
        Ranks(dist.get_rank(), dist.get_world_size()).fail(message, exit_code)


class MPIGradients:
    """The gradient engine of MPI ranks (``step.SharedGradients``, like ``parallel.GradientWorkers``): each rank
    computes its part of every batch and the gradients are summed in buckets.

    Dropout: every rank draws the same ``size`` seeds from the CPU generator (the ranks' generators are
    equal: same seed, same draws) and computes its part with seed ``rank``, then restores the generator, so
    it stays equal on all ranks and rank 0's checkpoint resumes every rank exactly."""

    def __init__(self, model: Transformer, ranks: Ranks, label_smoothing: float, device: ta.Device,
                 bucket_cap_mb: float = 25.0) -> None:
        self.model, self.ranks, self.label_smoothing, self.device = model, ranks, label_smoothing, device
        self.ddp = dist.DistributedDataParallel(model, bucket_cap_mb=bucket_cap_mb)  # rank 0's weights everywhere

    def gradients(self, batches: Sequence[Batch], n_tokens: int) -> float:
        """Leave the gradient of the whole step in every rank's ``.grad``; returns the summed loss."""
        rank, size = self.ranks.rank, self.ranks.size
        mine = [parts[rank] for parts in (b.split(size) for b in batches) if len(parts) > rank]
        seeds = ta.random.generator(ta.device("cpu")).integers(2**63, size=size)
        state = ta.random.get_rng_state()
        ta.manual_seed(int(seeds[rank]))
        try:
            loss = float(accumulate_gradients(self.model, mine, n_tokens, self.label_smoothing, self.device).item())
        finally:
            ta.random.set_rng_state(state)
        self.ddp.sync_gradients(dist.ReduceOp.SUM)
        (total,) = self.ranks.sum([loss])
        return total

    def close(self) -> None:
        """Nothing to release: the ranks outlive the engine."""
