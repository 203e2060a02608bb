"""The MPI communicator (mpi4py): collectives on host arrays, each with a deadline.

Every collective is started non-blocking (``Iallreduce``, ``Ibcast``, ``Iallgather``, ``Ibarrier``) and
polled until it completes or its deadline passes: a blocking ``MPI_Allreduce`` whose peer died or hangs
never returns, and the job would sit on its allocation forever. Past the deadline the waiting rank asks the
others, on a second communicator, which collective each has reached ("ping"; a rank answers while it
waits in a collective of its own), then aborts the whole job with a message naming the ranks that did not
arrive: silent ones (dead, hung, or stuck in work outside any collective) and those waiting elsewhere (a
program whose ranks call collectives in different orders).

Waiting spins for the first 10 ms (most collectives of a training step end in microseconds to
milliseconds), then sleeps between polls, longer and longer up to 1 ms (or 1% of the time waited so far), so that a
rank that waits long (for a slower rank, or between jobs) leaves its core to others and wakes at most a
millisecond, or 1%, late.

Arrays on a GPU are staged through the host here; ``nccl.py`` moves them between GPUs directly.
Importing this module does not import mpi4py: constructing the communicator does (which initialises MPI).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..backend import backend_of
from .communicator import Communicator, ReduceOp, check_contiguous

_PING, _PONG = 1, 2  # tags of the control communicator
_SPIN_SECONDS = 0.01  # poll without sleeping for this long, then sleep between polls ...
_FIRST_NAP_SECONDS, _LONGEST_NAP_SECONDS = 5e-5, 1e-3  # ... twice as long each time, up to 1 ms or 1% of the wait
_ANSWER_SECONDS = 5.0  # how long a rank that timed out waits for the others' answers


def import_mpi() -> Any:
    """``mpi4py.MPI`` (initialising MPI), or an ImportError that says how to install it."""
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError(f"the MPI backend needs mpi4py and an MPI library ({e}): "
                          "pip install 'tinygrad_attn[mpi]'") from e
    return MPI


class MPICommunicator(Communicator):
    """The ranks of an MPI communicator (``MPI.COMM_WORLD`` by default); host arrays, ``timeout`` seconds."""

    def __init__(self, comm: Any = None, timeout: float = 1800.0) -> None:
        if timeout <= 0:
            raise ValueError(f"MPICommunicator: timeout must be positive, got {timeout}")
        MPI = import_mpi()
        self._MPI = MPI
        base = MPI.COMM_WORLD if comm is None else comm
        self.comm = base.Dup()  # our own message space: the user's messages on `base` never match ours
        self.control = base.Dup()  # pings and answers of a rank that timed out
        self.rank, self.size, self.timeout = self.comm.Get_rank(), self.comm.Get_size(), float(timeout)
        node = base.Split_type(MPI.COMM_TYPE_SHARED)  # the ranks that share this machine's memory
        self.local_rank, self.local_size = node.Get_rank(), node.Get_size()
        node.Free()
        self._ops = {ReduceOp.SUM: MPI.SUM, ReduceOp.AVG: MPI.SUM, ReduceOp.MAX: MPI.MAX, ReduceOp.MIN: MPI.MIN}
        self._started = 0  # collectives started: the number a ping answer reports
        self._pending: list[Any] = []  # answers sent to pings (kept alive until they complete)

    # ---- collectives ------------------------------------------------------------------------------
    def allreduce(self, array: Any, op: ReduceOp = ReduceOp.SUM) -> None:
        check_contiguous(array, "all_reduce")
        if array.dtype == np.bool_:
            raise TypeError("all_reduce: bool arrays cannot be reduced; convert to an integer dtype first")
        if op is ReduceOp.AVG and array.dtype.kind not in "fc":
            raise TypeError(f"all_reduce: ReduceOp.AVG needs a floating-point array, not {array.dtype}")
        host = _to_host(array)
        # float16 is no standard MPI type (some MPIs have it as an extension): reduce in float32.
        work = host.astype(np.float32) if host.dtype == np.float16 else host
        what = f"all_reduce ({op.value}) of {work.size:,} {array.dtype} values"
        self._wait(self.comm.Iallreduce(self._MPI.IN_PLACE, work, op=self._ops[op]), what)
        if op is ReduceOp.AVG:
            work /= self.size
        if work is not host:
            host[...] = work
        _from_host(array, host)

    def bcast(self, array: Any, root: int = 0) -> None:
        check_contiguous(array, "broadcast")
        self._check_root(root, "broadcast")
        host = _to_host(array)
        self._wait(self.comm.Ibcast(_bytes(host), root=root), f"broadcast from rank {root} of {host.nbytes:,} bytes")
        _from_host(array, host)

    def allgather(self, array: Any) -> Any:
        check_contiguous(array, "all_gather")
        host = _to_host(array)
        out = np.empty((self.size, *host.shape), dtype=host.dtype)
        self._wait(self.comm.Iallgather(_bytes(host), _bytes(out)), f"all_gather of {host.nbytes:,} bytes")
        return out if isinstance(array, np.ndarray) else backend_of(array).from_numpy(out, array.device.id)

    def allgather_bytes(self, data: bytes) -> list[bytes]:
        """Every rank's ``data`` (of any length), in rank order: two collectives (the lengths, then the bytes)."""
        lengths = self.allgather(np.array([len(data)], dtype=np.int64))[:, 0]
        out = np.empty(int(lengths.sum()), dtype=np.uint8)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        request = self.comm.Iallgatherv(np.frombuffer(data, dtype=np.uint8), [out, lengths, offsets, self._MPI.BYTE])
        self._wait(request, f"all_gather of {len(data):,} bytes (objects)")
        return [out[o:o + n].tobytes() for o, n in zip(offsets, lengths)]

    def bcast_bytes(self, data: bytes, root: int = 0) -> bytes:
        """``root``'s ``data`` (of any length; other ranks pass anything, e.g. ``b""``) on every rank."""
        length = np.array([len(data)], dtype=np.int64)
        self.bcast(length, root)
        buffer = np.frombuffer(data, dtype=np.uint8).copy() if self.rank == root else np.empty(length[0], np.uint8)
        self.bcast(buffer, root)
        return buffer.tobytes()

    def barrier(self) -> None:
        self._wait(self.comm.Ibarrier(), "barrier")

    def abort(self, message: str, exit_code: int = 1) -> None:
        print(message, file=sys.stderr, flush=True)
        self.comm.Abort(exit_code)

    def close(self) -> None:
        for request in self._pending:
            request.Cancel()
        self._pending = []
        for comm in (self.comm, self.control):
            if comm != self._MPI.COMM_NULL:
                comm.Free()
        self.comm = self.control = self._MPI.COMM_NULL

    # ---- waiting with a deadline ------------------------------------------------------------------
    def _check_root(self, root: int, what: str) -> None:
        if not 0 <= root < self.size:
            raise ValueError(f"{what}: root {root} is not a rank of this group of {self.size}")

    def _wait(self, request: Any, what: str) -> None:
        self.wait_until(request.Test, what)

    def wait_until(self, done: Callable[[], bool], what: str) -> None:
        """Poll ``done()`` (a started collective: of MPI's, or NCCL's on a GPU) until it is true, answering
        other ranks' pings meanwhile; past the timeout, find which ranks are missing and abort the job."""
        self._started += 1
        start = time.monotonic()
        nap = _FIRST_NAP_SECONDS
        while not done():
            waited = time.monotonic() - start
            if waited > _SPIN_SECONDS:
                self._answer_pings()
                if waited > self.timeout:
                    self._abort_missing(what)
                time.sleep(nap)
                nap = min(2 * nap, max(_LONGEST_NAP_SECONDS, waited / 100))

    def _answer_pings(self) -> None:
        """Tell each rank that pinged us the number of the collective we wait in."""
        status = self._MPI.Status()
        while self.control.Iprobe(source=self._MPI.ANY_SOURCE, tag=_PING, status=status):
            self.control.recv(source=status.Get_source(), tag=_PING)
            self._pending.append(self.control.isend(self._started, dest=status.Get_source(), tag=_PONG))

    def _abort_missing(self, what: str) -> None:
        others = [r for r in range(self.size) if r != self.rank]
        sends = [self.control.isend(None, dest=r, tag=_PING) for r in others]
        answers: dict[int, int] = {}
        receives = {r: self.control.irecv(source=r, tag=_PONG) for r in others}
        deadline = time.monotonic() + min(_ANSWER_SECONDS, self.timeout)
        while len(answers) < len(others) and time.monotonic() < deadline:
            self._answer_pings()  # a rank that timed out at the same moment asks us too
            for r, request in receives.items():
                if r not in answers:
                    done, value = request.test()
                    if done:
                        answers[r] = value
            time.sleep(_LONGEST_NAP_SECONDS)
        self._pending.extend(sends)
        silent = [r for r in others if r not in answers]
        elsewhere = {r: n for r, n in answers.items() if n != self._started}
        parts = []
        if silent:
            parts.append(f"rank(s) {', '.join(map(str, silent))} did not arrive and did not answer "
                         "(dead, hung, or busy outside any collective)")
        if elsewhere:
            parts.append("rank(s) " + ", ".join(f"{r} (waiting in collective #{n})" for r, n in elsewhere.items())
                         + " are in another collective: the ranks call collectives in different orders")
        self.abort(f"tinygrad_attn.distributed: rank {self.rank} of {self.size}: {what} (collective "
                   f"#{self._started}) did not complete within the timeout of {self.timeout:g}s: "
                   f"{'; '.join(parts) or 'every rank answered from this collective (a stuck transport?)'}; "
                   "aborting the job")


def _to_host(array: Any) -> np.ndarray:
    return array if isinstance(array, np.ndarray) else backend_of(array).to_numpy(array)


def _from_host(array: Any, host: np.ndarray) -> None:
    if host is not array:
        array[...] = backend_of(array).from_numpy(host, array.device.id)


def _bytes(array: np.ndarray) -> np.ndarray:
    """The memory of a contiguous array as bytes (moving data needs no MPI type for its dtype)."""
    return array.reshape(-1).view(np.uint8)

