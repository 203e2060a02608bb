"""Parallelism over a machine's CPU cores: training batches shared by processes, decoding batches spread over them.

NumPy runs matrix products on every core (OpenBLAS threads) but everything else (softmax, layer norm,
dropout, Adam, the Python that drives the graph) on one, so two cores do not make a step twice as fast,
while two single-threaded processes run all of their work, BLAS or not, on both cores at once
(docs/experiments.md has the measurements). This module turns that into faster training of *one* model,
the way PyTorch's DistributedDataParallel does on GPUs:

- the batch is cut into ``workers`` parts of about equal token counts (``Batch.split``);
- every process computes the gradient of its part, with one BLAS thread, at the same time;
- the gradients are summed (each part's loss is divided by the tokens of the *whole* batch, so the sum is
  the gradient of the whole batch's mean loss, as in one process) and the optimiser takes one step.

How the processes share the work, without copying the model around:

- the parameters are moved into one block of shared memory (an anonymous ``mmap``) before the helper
  processes are forked: they see every in-place update of the main process's optimiser, so they never
  need the weights sent to them;
- each helper has a block of shared memory for its gradient, which the main process adds into its own
  ``.grad``; only the parts of the batch and one number back travel through the pipes;
- each helper's dropout masks come from a seed the main process draws from its own generator every step,
  so a run's randomness still lives in one generator and ``--resume`` stays exact.

Decoding gains from processes for the same reason (``decode.workers``, ``map_in_processes``): whole batches
of sentences go to processes of one BLAS thread each, which take the next batch when they are done.

The helpers are forked (Linux and macOS); they exit when the main process closes them or dies. (Python 3.12+
warns, with a DeprecationWarning hidden outside tests, that forking a process with threads may deadlock:
the threads here are OpenBLAS's pool, which OpenBLAS shuts down before a fork (pthread_atfork) and restarts
when it is next needed.)
"""

from __future__ import annotations

import functools
import logging
import mmap
import multiprocessing
import os
import traceback
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from multiprocessing.connection import Connection
from typing import Any, TypeVar

import numpy as np

import tinygrad_attn as ta
from models.transformer import Transformer
from models.translator.batching import Batch
from models.translator.machine import peak_rss_mb
from models.translator.step import accumulate_gradients

log = logging.getLogger(__name__)  # a training run writes the package's records to its train.log

__all__ = ["GradientWorkers", "map_in_processes", "usable_workers"]

Item = TypeVar("Item")
Result = TypeVar("Result")
_warned: set[tuple[str, int, int]] = set()  # (setting, wanted, cores) already warned about: once is enough


def usable_workers(wanted: int, setting: str = "train.workers") -> int:
    """``wanted`` processes (the value of ``setting``), or fewer where the machine cannot run that many helpers
    usefully: more processes than cores only slow each other down, and without fork (Windows), or inside a
    daemonic process (which may not have children), there are no helpers. Says so in the log, once."""
    if wanted <= 1:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if "fork" not in multiprocessing.get_all_start_methods():
        usable, why = 1, "this platform cannot fork helper processes"
    elif multiprocessing.current_process().daemon:
        usable, why = 1, "this is a daemonic process, which may not start helper processes"
    else:
        usable, why = min(wanted, cores), f"only {cores} core(s) are available"
    if usable < wanted and (setting, wanted, cores) not in _warned:
        _warned.add((setting, wanted, cores))
        log.warning("%s = %d but %s: using %d process(es)", setting, wanted, why, usable)
    return usable


@functools.cache
def _blas_libraries() -> Any:
    from threadpoolctl import ThreadpoolController  # optional: only processes need it

    return ThreadpoolController()  # found once (it scans the loaded libraries); forked helpers inherit it


def _one_blas_thread() -> AbstractContextManager[Any]:
    """Limit this process's BLAS to one thread (a context manager; in a helper, simply call it and keep the
    limit): the other cores are busy with the other processes' work."""
    return _blas_libraries().limit(limits=1, user_api="blas")


def _receive(pipe: Connection, who: str) -> Any:
    """The value a helper answered with ``("ok", value)``; its ``("error", traceback)`` or its death raises,
    naming ``who`` (e.g. "gradient worker 1")."""
    try:
        status, value = pipe.recv()
    except EOFError:
        raise RuntimeError(f"{who} exited unexpectedly (killed? out of memory?)") from None
    if status == "error":
        raise RuntimeError(f"{who} failed:\n{value}")
    return value


def _send_failure(pipe: Connection) -> None:
    """In a helper, inside ``except``: send the traceback, which ``_receive`` raises in the main process."""
    try:
        pipe.send(("error", traceback.format_exc()))
    except OSError:  # the main process is gone
        pass


def map_in_processes(function: Callable[[Item], Result], items: Sequence[Item], n_workers: int) -> list[Result]:
    """``[function(item) for item in items]``, computed by ``n_workers`` processes at once: this one and
    ``n_workers - 1`` helpers forked for the call, one BLAS thread each.

    The processes take items in order from a shared counter, so one that finishes early takes the next: put
    the biggest items first and the small ones even out the end. The helpers send their results back
    through pipes (pickled), and they come out in the order of ``items``. An exception in a helper is raised
    here, with the helper's traceback. Fewer than two items, or ``n_workers < 2``: a plain loop here."""
    n = min(n_workers, len(items))
    if n < 2:
        return [function(item) for item in items]
    context = multiprocessing.get_context("fork")
    counter = context.Value("q", 0)  # the next item to take, with its lock

    def work() -> list[tuple[int, Result]]:
        done: list[tuple[int, Result]] = []
        while True:
            with counter.get_lock():
                i = counter.value
                counter.value += 1
            if i >= len(items):
                return done
            done.append((i, function(items[i])))

    def helper(pipe: Connection) -> None:
        _one_blas_thread()
        try:
            pipe.send(("ok", work()))
        except KeyboardInterrupt:  # Ctrl-C reached the whole process group: the main process reports it
            return
        except BaseException:  # report it: the main process raises it with this traceback
            _send_failure(pipe)

    pipes, helpers = [], []
    try:
        for rank in range(1, n):
            here, there = context.Pipe(duplex=False)  # (receiving end, sending end)
            process = context.Process(target=helper, args=(there,), daemon=True, name=f"map-worker-{rank}")
            process.start()
            there.close()  # before the next fork: a helper that dies must leave no open sending end behind
            pipes.append(here)
            helpers.append(process)
        with _one_blas_thread():
            results: list[Any] = [None] * len(items)
            for i, result in work():
                results[i] = result
        for rank, pipe in enumerate(pipes, start=1):
            for i, result in _receive(pipe, f"worker process {rank}"):
                results[i] = result
        return results
    except BaseException:
        for process in helpers:
            process.terminate()
        raise
    finally:
        for pipe in pipes:
            pipe.close()
        for process in helpers:
            process.join()


def _shared_arrays(like: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Zeroed arrays shaped like ``like``, in one block of memory that forked processes share."""
    offsets, total = [], 0
    for a in like:
        offsets.append(total)
        total += -(-a.nbytes // 64) * 64  # each array on a cache line of its own
    block = mmap.mmap(-1, max(total, 1))  # anonymous and MAP_SHARED: the same pages after fork
    return [np.frombuffer(block, dtype=a.dtype, count=a.size, offset=o).reshape(a.shape)
            for a, o in zip(like, offsets)]


class GradientWorkers:
    """``n_workers - 1`` helper processes that compute gradients of parts of each batch alongside this one.

    ``gradients(batches, n_tokens)`` replaces one process's forward and backward passes: it leaves the
    gradient of the whole step in the ``.grad`` of the model's parameters. Use as a context manager (or
    call ``close``) so that the helpers exit. Construct after the parameters have their final values
    (a resumed checkpoint loaded): their arrays are moved into shared memory here, and replacing a
    parameter's array afterwards would hide the change from the helpers."""

    def __init__(self, model: Transformer, n_workers: int, label_smoothing: float, device: ta.Device) -> None:
        if n_workers < 2:
            raise ValueError(f"GradientWorkers: needs at least 2 workers, got {n_workers}")
        if device.type != "cpu":
            raise ValueError(f"GradientWorkers: data parallelism over processes is for the CPU, not {device}")
        if "fork" not in multiprocessing.get_all_start_methods():
            raise RuntimeError("train.workers > 1 needs processes started by fork (Linux, macOS); set train.workers=1")
        self.model, self.n, self.label_smoothing, self.device = model, n_workers, label_smoothing, device
        self.params = [p for p in model.parameters() if p.requires_grad]
        for p, shared in zip(self.params, _shared_arrays([p.data for p in self.params])):
            shared[...] = p.data
            p.data = shared
        self.grads = [_shared_arrays([p.data for p in self.params]) for _ in range(n_workers - 1)]
        self.helper_rss_mb = [0.0] * (n_workers - 1)
        context = multiprocessing.get_context("fork")
        self.pipes, self.helpers = [], []
        for rank in range(1, n_workers):
            here, there = context.Pipe()
            helper = context.Process(target=self._helper_loop, args=(there, self.grads[rank - 1]), daemon=True,
                                     name=f"gradient-worker-{rank}")
            helper.start()
            there.close()
            self.pipes.append(here)
            self.helpers.append(helper)

    def gradients(self, batches: Sequence[Batch], n_tokens: int) -> float:
        """Split every batch between the processes, compute all parts at once, sum the gradients into the
        parameters' ``.grad`` (which must start empty: ``optimizer.zero_grad()``); returns the summed loss."""
        parts = [b.split(self.n) for b in batches]
        generator = ta.random.generator(self.device)
        for rank, pipe in enumerate(self.pipes, start=1):
            share = [p[rank] for p in parts if len(p) > rank]
            pipe.send((share, n_tokens, int(generator.integers(2**63))))
        with _one_blas_thread():
            total = accumulate_gradients(self.model, [p[0] for p in parts], n_tokens, self.label_smoothing,
                                         self.device).item()
        for index, (pipe, grads) in enumerate(zip(self.pipes, self.grads)):
            loss, rss = _receive(pipe, f"gradient worker {index + 1}")  # this process is worker 0
            total += loss
            self.helper_rss_mb[index] = max(self.helper_rss_mb[index], rss)
            for p, g in zip(self.params, grads):
                if p.grad is None:
                    p.grad = ta.Tensor._make(g.copy())
                else:
                    p.grad.data += g
        return total

    def _helper_loop(self, pipe: Connection, grads: list[np.ndarray]) -> None:
        """A helper's life: wait for a share of a step, compute its gradient into ``grads``, answer the loss."""
        _one_blas_thread()  # for good: this process only ever computes one share
        for other in self.pipes:  # the main process's ends of earlier helpers' pipes, inherited by the fork:
            other.close()  # closed, so that those helpers see end-of-file when the main process dies
        while True:
            try:
                message = pipe.recv()
            except (EOFError, KeyboardInterrupt):  # the main process is gone, or Ctrl-C reached us all
                return
            if message is None:
                return
            share, n_tokens, seed = message
            try:
                ta.manual_seed(seed)
                self.model.train()
                for p in self.params:
                    p.grad = None
                loss = accumulate_gradients(self.model, share, n_tokens, self.label_smoothing, self.device).item()
                for p, g in zip(self.params, grads):
                    if p.grad is None:
                        g.fill(0)
                    else:
                        np.copyto(g, p.grad.data)
                    p.grad = None
                pipe.send(("ok", (loss, peak_rss_mb())))
            except (KeyboardInterrupt, BrokenPipeError):  # Ctrl-C, or the main process is gone
                return
            except BaseException:  # report it: the main process raises it with this traceback
                _send_failure(pipe)

    def close(self) -> None:
        """Tell the helpers to exit and wait for them (terminating any that do not)."""
        for pipe in self.pipes:
            try:
                pipe.send(None)
            except (BrokenPipeError, OSError):
                pass
            pipe.close()
        for helper in self.helpers:
            helper.join(timeout=10)
            if helper.is_alive():
                helper.terminate()
                helper.join()
        self.pipes, self.helpers = [], []

    def __enter__(self) -> GradientWorkers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
