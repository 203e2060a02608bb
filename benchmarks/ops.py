"""Op benchmarks: framework overhead on tiny tensors, throughput on large ones.

    python benchmarks/ops.py                  # both tables, one thread
    python benchmarks/ops.py --threads 8      # 8 BLAS/OpenMP threads for NumPy and PyTorch alike
    python benchmarks/ops.py --json out.json  # also write the figures as JSON ("-" for stdout)
    python benchmarks/ops.py --quick          # fewer repeats, for a smoke run

1. **Overhead** (tiny tensors, 4x4 float32, where the arithmetic costs almost nothing): microseconds for
   one op forward, and for one op forward plus ``out.backward(g)``, for tinygrad_attn, for raw NumPy
   (the forward and a hand-written backward on arrays: the floor any NumPy framework pays) and for
   PyTorch eager if it is installed. A second row set gives the marginal cost per op inside a chain of
   ops with one backward at the end, which is closer to what a model pays.
2. **Throughput** (large tensors: 1024x1024 matmul, attention-shaped batched matmuls, elementwise ops
   and a sum on 4M elements): milliseconds per call, with tinygrad_attn's forward as a ratio to the
   same NumPy call, and its forward+backward as a ratio to PyTorch's and to hand-written NumPy.
3. **Transformer block** (a GPT block: pre-LN causal self-attention and a GELU MLP, ``nn.TransformerEncoderLayer``
   with d_model 128, 4 heads, feed-forward 512, on a (12, 64, 128) batch, nanoGPT's small CPU recipe):
   milliseconds for forward and for forward + backward, ours against ``torch.nn.TransformerEncoderLayer``
   with the same weights copied in (checked to give the same gradients first). Needs PyTorch.

Threads: ``--threads N`` (default 1) sets OMP_NUM_THREADS, OPENBLAS_NUM_THREADS and MKL_NUM_THREADS
before NumPy and PyTorch load their BLAS, and calls ``torch.set_num_threads(N)``, so both libraries use
the same number of threads. One thread is the default because it gives repeatable figures on a shared
machine: with more threads than idle cores, PyTorch's OpenMP regions can stall for milliseconds even on
4x4 tensors, which says nothing about either framework.

Memory: by default the run calls ``ta.keep_freed_memory()`` first, as the training CLIs do, so that the big
arrays each call frees stay in the process for the next (without it, glibc hands them back to the kernel
and every call pays page faults to map them in again: on the transformer block that is about 740 faults
per forward + backward for us and 180 for PyTorch); ``--system-malloc`` leaves malloc alone.

Every figure is the median over ``--repeats`` timed runs of a loop sized to last >= ``--min-time``
seconds, after warm-up calls, measured with ``time.perf_counter``. The functions being compared run
their loops in turn, round after round, so they see the same machine load. On a machine busy with
other jobs, ``--clock cpu --threads 1`` measures CPU time (``time.process_time``) instead, which is
what the code costs when it does run, without the time spent waiting for a core. The garbage collector stays on
(it is part of what a Python framework costs). Before timing, each case checks that the three
implementations compute the same gradients, so the numbers compare like with like.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1,
                   help="BLAS/OpenMP threads for NumPy and PyTorch alike (default 1: see the module docstring)")
    p.add_argument("--repeats", type=int, default=7, help="timed runs per figure (the median is reported)")
    p.add_argument("--min-time", type=float, default=0.05, help="seconds each timed run lasts at least")
    p.add_argument("--only", choices=["overhead", "throughput", "block"], help="run one of the three parts")
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch even if it is installed")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH ('-': stdout)")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="wall: time.perf_counter (default); cpu: time.process_time, CPU seconds of this process, "
                        "for a machine shared with other jobs (use with --threads 1)")
    p.add_argument("--quick", action="store_true", help="3 repeats of >= 10 ms: a smoke run, noisy figures")
    p.add_argument("--system-malloc", action="store_true",
                   help="leave glibc's malloc as it is (by default the run calls ta.keep_freed_memory(), as the "
                        "training CLIs do: freed arrays stay in the process for the next call, for both frameworks)")
    return p.parse_args(argv)


# BLAS libraries read their thread count when they are loaded: set it before NumPy/PyTorch are imported.
ARGS = parse_args() if __name__ == "__main__" else parse_args([])
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(ARGS.threads)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

import tinygrad_attn as ta  # noqa: E402

torch: Any = None
if not ARGS.no_torch:
    try:
        import torch

        torch.set_num_threads(ARGS.threads)
    except ImportError:
        torch = None

CLOCK = time.perf_counter if ARGS.clock == "wall" else time.process_time

# ----------------------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------------------


def measure(fns: dict[str, Callable[[], Any]], repeats: int, min_time: float) -> dict[str, float]:
    """Median seconds per call of each function.

    Each function is warmed up and gets a loop sized to last ``min_time``; then the loops run in turn,
    ``repeats`` rounds of one loop each, so that the functions being compared share the same moments of
    machine load (which matters for the ratios on a busy machine).
    """
    loops = {}
    for name, fn in fns.items():
        for _ in range(3):
            fn()
        n = 1
        while True:
            start = CLOCK()
            for _ in range(n):
                fn()
            elapsed = CLOCK() - start
            if elapsed >= min_time:
                break
            n = max(n * 2, int(n * min_time / max(elapsed, 1e-9) * 1.2))
        loops[name] = n
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            n = loops[name]
            start = CLOCK()
            for _ in range(n):
                fn()
            samples[name].append((CLOCK() - start) / n)
    return {name: statistics.median(v) for name, v in samples.items()}


# ----------------------------------------------------------------------------------------------------------
# Cases: the same computation three ways
# ----------------------------------------------------------------------------------------------------------


@dataclass
class Case:
    """One op: ``ours``/``torch_fn`` map input tensors to the output; ``np_fwd`` maps arrays to the output
    array and ``np_bwd(arrays, out, g)`` returns the input gradients, written by hand."""

    name: str
    shapes: list[tuple[int, ...]]
    ours: Callable[..., Any]
    torch_fn: Callable[..., Any]
    np_fwd: Callable[..., Any]
    np_bwd: Callable[..., list[Any]]
    positive: bool = False  # inputs drawn from (0.5, 1.5) instead of N(0, 1)
    extra: dict = field(default_factory=dict)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _softmax_bwd(xs: list, y: np.ndarray, g: np.ndarray) -> list:
    return [y * (g - (g * y).sum(-1, keepdims=True))]


def _log_softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _scatter_rows(x: np.ndarray, g: np.ndarray, index: Any) -> np.ndarray:
    out = np.zeros_like(x)
    np.add.at(out, index, g)
    return out


IDX = np.array([0, 2, 2, 3])


def tiny_cases() -> list[Case]:
    s = (4, 4)
    return [
        Case("add", [s, s], lambda x, y: x + y, lambda x, y: x + y, lambda x, y: x + y,
             lambda xs, z, g: [g, g]),
        Case("mul", [s, s], lambda x, y: x * y, lambda x, y: x * y, lambda x, y: x * y,
             lambda xs, z, g: [g * xs[1], g * xs[0]]),
        Case("div", [s, s], lambda x, y: x / y, lambda x, y: x / y, lambda x, y: x / y,
             lambda xs, z, g: [g / xs[1], -g * xs[0] / (xs[1] * xs[1])], positive=True),
        Case("matmul", [s, s], lambda x, y: x @ y, lambda x, y: x @ y, lambda x, y: x @ y,
             lambda xs, z, g: [g @ xs[1].T, xs[0].T @ g]),
        Case("sum", [s], lambda x: x.sum(), lambda x: x.sum(), lambda x: x.sum(),
             lambda xs, z, g: [np.broadcast_to(g, xs[0].shape).copy()]),
        Case("mean(dim=-1)", [s], lambda x: x.mean(-1), lambda x: x.mean(-1), lambda x: x.mean(-1),
             lambda xs, z, g: [np.broadcast_to(g[:, None] / xs[0].shape[-1], xs[0].shape).copy()]),
        Case("exp", [s], lambda x: x.exp(), lambda x: x.exp(), np.exp, lambda xs, z, g: [g * z]),
        Case("tanh", [s], lambda x: x.tanh(), lambda x: x.tanh(), np.tanh, lambda xs, z, g: [g * (1 - z * z)]),
        Case("relu", [s], lambda x: x.relu(), lambda x: x.relu(), lambda x: np.maximum(x, 0),
             lambda xs, z, g: [g * (xs[0] > 0)]),
        Case("softmax", [s], lambda x: x.softmax(-1), lambda x: x.softmax(-1), _softmax, _softmax_bwd),
        Case("log_softmax", [s], lambda x: x.log_softmax(-1), lambda x: x.log_softmax(-1), _log_softmax,
             lambda xs, z, g: [g - np.exp(z) * g.sum(-1, keepdims=True)]),
        Case("reshape", [s], lambda x: x.reshape(2, 8), lambda x: x.reshape(2, 8), lambda x: x.reshape(2, 8),
             lambda xs, z, g: [g.reshape(xs[0].shape)]),
        Case("transpose", [s], lambda x: x.transpose(0, 1), lambda x: x.transpose(0, 1), lambda x: x.T,
             lambda xs, z, g: [g.T]),
        Case("getitem[1:3]", [s], lambda x: x[1:3], lambda x: x[1:3], lambda x: x[1:3],
             lambda xs, z, g: [_scatter_rows(xs[0], g, slice(1, 3))]),
        Case("getitem[idx]", [s], lambda x: x[ta.tensor(IDX)], lambda x: x[torch.from_numpy(IDX)],
             lambda x: x[IDX], lambda xs, z, g: [_scatter_rows(xs[0], g, IDX)]),
    ]


def large_cases() -> list[Case]:
    n = 2048  # 2048 * 2048 = 4M elements
    b, h, t, d = 8, 8, 128, 64  # attention: batch, heads, sequence, head dim
    rows = (32768, 128)  # 4M elements, softmax over rows of 128 (attention scores)
    return [
        Case("matmul 1024x1024", [(1024, 1024), (1024, 1024)], lambda x, y: x @ y, lambda x, y: x @ y,
             lambda x, y: x @ y, lambda xs, z, g: [g @ xs[1].T, xs[0].T @ g]),
        Case("bmm q@k^T 8x8x128x64", [(b, h, t, d), (b, h, t, d)], lambda q, k: q @ k.transpose(-1, -2),
             lambda q, k: q @ k.transpose(-1, -2), lambda q, k: q @ k.swapaxes(-1, -2),
             lambda xs, z, g: [g @ xs[1], g.swapaxes(-1, -2) @ xs[0]]),
        Case("bmm p@v 8x8x128x128", [(b, h, t, t), (b, h, t, d)], lambda p, v: p @ v, lambda p, v: p @ v,
             lambda p, v: p @ v, lambda xs, z, g: [g @ xs[1].swapaxes(-1, -2), xs[0].swapaxes(-1, -2) @ g]),
        Case("add 4M", [(n, n), (n, n)], lambda x, y: x + y, lambda x, y: x + y, lambda x, y: x + y,
             lambda xs, z, g: [g.copy(), g.copy()]),
        Case("mul 4M", [(n, n), (n, n)], lambda x, y: x * y, lambda x, y: x * y, lambda x, y: x * y,
             lambda xs, z, g: [g * xs[1], g * xs[0]]),
        Case("exp 4M", [(n, n)], lambda x: x.exp(), lambda x: x.exp(), np.exp, lambda xs, z, g: [g * z]),
        Case("relu 4M", [(n, n)], lambda x: x.relu(), lambda x: x.relu(), lambda x: np.maximum(x, 0),
             lambda xs, z, g: [g * (xs[0] > 0)]),
        Case("sum 4M", [(n, n)], lambda x: x.sum(), lambda x: x.sum(), lambda x: x.sum(),
             lambda xs, z, g: [np.broadcast_to(g, xs[0].shape).copy()]),
        Case("softmax 32768x128", [rows], lambda x: x.softmax(-1), lambda x: x.softmax(-1), _softmax, _softmax_bwd),
    ]


# ----------------------------------------------------------------------------------------------------------
# Running a case
# ----------------------------------------------------------------------------------------------------------


class Runner:
    """Builds the inputs of a case for each framework and the timed closures."""

    def __init__(self, case: Case, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.case = case
        if case.positive:
            self.arrays = [rng.uniform(0.5, 1.5, s).astype(np.float32) for s in case.shapes]
        else:
            self.arrays = [rng.standard_normal(s, dtype=np.float32) for s in case.shapes]
        self.ours_in = [ta.tensor(a, requires_grad=True) for a in self.arrays]
        out = case.np_fwd(*self.arrays)
        self.g_np = rng.standard_normal(np.shape(out), dtype=np.float32)
        self.g_ours = ta.tensor(self.g_np)
        if torch is not None:
            self.torch_in = [torch.tensor(a, requires_grad=True) for a in self.arrays]
            self.g_torch = torch.tensor(self.g_np)

    # ---- the closures that get timed ---------------------------------------------------------------------
    def ours_fwd(self) -> None:
        self.case.ours(*self.ours_in)

    def ours_fwd_bwd(self) -> None:
        for x in self.ours_in:
            x.grad = None
        self.case.ours(*self.ours_in).backward(self.g_ours)

    def numpy_fwd(self) -> None:
        self.case.np_fwd(*self.arrays)

    def numpy_fwd_bwd(self) -> list:
        out = self.case.np_fwd(*self.arrays)
        return self.case.np_bwd(self.arrays, out, self.g_np)

    def torch_fwd(self) -> None:
        self.case.torch_fn(*self.torch_in)

    def torch_fwd_bwd(self) -> None:
        for x in self.torch_in:
            x.grad = None
        self.case.torch_fn(*self.torch_in).backward(self.g_torch)

    def check(self) -> None:
        """All implementations must agree on the gradients, or the timings compare different work."""
        self.ours_fwd_bwd()
        expected = self.numpy_fwd_bwd()
        tol = dict(rtol=1e-4, atol=1e-4 * max(1.0, float(np.sqrt(self.arrays[0].shape[-1]))))
        for i, (x, e) in enumerate(zip(self.ours_in, expected)):
            if not np.allclose(x.grad.numpy(), e, **tol):
                raise AssertionError(f"{self.case.name}: tinygrad_attn and NumPy gradients of input {i} differ")
        if torch is not None:
            self.torch_fwd_bwd()
            for i, (x, e) in enumerate(zip(self.torch_in, expected)):
                if not np.allclose(x.grad.numpy(), e, **tol):
                    raise AssertionError(f"{self.case.name}: PyTorch and NumPy gradients of input {i} differ")


def _timed_closures(r: Runner) -> dict[str, Callable[[], Any]]:
    fns = {"ours_fwd": r.ours_fwd, "ours_fwd_bwd": r.ours_fwd_bwd,
           "numpy_fwd": r.numpy_fwd, "numpy_fwd_bwd": r.numpy_fwd_bwd}
    if torch is not None:
        fns.update(torch_fwd=r.torch_fwd, torch_fwd_bwd=r.torch_fwd_bwd)
    return fns


def run_overhead(repeats: int, min_time: float) -> list[dict]:
    rows = []
    for case in tiny_cases():
        r = Runner(case)
        r.check()
        times = measure(_timed_closures(r), repeats, min_time)
        row = {"op": case.name, "shape": "x".join(map(str, case.shapes[0]))}
        row.update({f"{k}_us": v * 1e6 for k, v in times.items()})
        rows.append(row)
    rows.append(run_chain(repeats, min_time))
    return rows


CHAIN = 32


def run_chain(repeats: int, min_time: float) -> dict:
    """Marginal cost per op: a chain of about CHAIN ops (tanh, mul, add in turn, then a sum) and one
    backward, divided by the number of ops."""
    a = np.random.default_rng(1).standard_normal((4, 4), dtype=np.float32)
    rounds = CHAIN // 3 + 1
    n_ops = 3 * rounds + 1

    def chain(x: Any, c: Any) -> Any:
        for _ in range(rounds):
            x = x.tanh()
            x = x * c
            x = x + c
        return x.sum()

    def numpy_fwd() -> tuple[np.ndarray, list]:
        h, saved = a, []
        for _ in range(rounds):
            t = np.tanh(h)
            saved.append(t)
            h = t * a + a
        return h.sum(), saved

    def numpy_fwd_bwd() -> None:  # the same forward and a hand-written backward
        _, saved = numpy_fwd()
        g, gc = np.ones_like(a), np.zeros_like(a)
        for t in reversed(saved):
            gc += g + g * t
            g = g * a * (1 - t * t)

    x, c = ta.tensor(a, requires_grad=True), ta.tensor(a, requires_grad=True)

    def ours_fwd_bwd() -> None:
        x.grad = c.grad = None
        chain(x, c).backward()

    fns = {"ours_fwd": lambda: chain(x, c), "ours_fwd_bwd": ours_fwd_bwd,
           "numpy_fwd": numpy_fwd, "numpy_fwd_bwd": numpy_fwd_bwd}
    if torch is not None:
        tx, tc = torch.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)

        def torch_fwd_bwd() -> None:
            tx.grad = tc.grad = None
            chain(tx, tc).backward()

        fns.update(torch_fwd=lambda: chain(tx, tc), torch_fwd_bwd=torch_fwd_bwd)
    times = measure(fns, repeats, min_time)
    row = {"op": f"chain of {n_ops} ops, per op", "shape": "4x4"}
    row.update({f"{k}_us": v * 1e6 / n_ops for k, v in times.items()})
    return row


def run_throughput(repeats: int, min_time: float) -> list[dict]:
    rows = []
    for case in large_cases():
        r = Runner(case)
        r.check()
        times = measure(_timed_closures(r), repeats, min_time)
        row = {"op": case.name}
        row.update({f"{k}_ms": v * 1e3 for k, v in times.items()})
        rows.append(row)
        del r
    return rows


# ----------------------------------------------------------------------------------------------------------
# A transformer block, ours against a PyTorch twin with the same weights
# ----------------------------------------------------------------------------------------------------------

BLOCK = {"d_model": 128, "nhead": 4, "dim_feedforward": 512, "batch": 12, "seq": 64}


class BlockTwins:
    """A pre-LN GELU ``TransformerEncoderLayer`` (a GPT block) of ours and PyTorch's with the same weights, the
    same input and output gradient, and closures for forward (causal) and forward + backward."""

    def __init__(self, seed: int = 0) -> None:
        b = BLOCK
        kw = dict(dropout=0.0, activation="gelu", norm_first=True, batch_first=True)
        self.ours = ta.nn.TransformerEncoderLayer(b["d_model"], b["nhead"], b["dim_feedforward"], **kw)
        self.twin = torch.nn.TransformerEncoderLayer(b["d_model"], b["nhead"], b["dim_feedforward"], **kw)
        twin_params = dict(self.twin.named_parameters())
        with torch.no_grad():
            for name, p in self.ours.named_parameters():
                twin_params[name].copy_(torch.from_numpy(p.numpy()))
        rng = np.random.default_rng(seed)
        shape = (b["batch"], b["seq"], b["d_model"])
        x, g = rng.standard_normal(shape, dtype=np.float32), rng.standard_normal(shape, dtype=np.float32)
        self.x, self.g = ta.tensor(x, requires_grad=True), ta.tensor(g)
        self.tx, self.tg = torch.tensor(x, requires_grad=True), torch.tensor(g)
        self.mask = torch.nn.Transformer.generate_square_subsequent_mask(b["seq"])

    def ours_fwd(self) -> Any:
        return self.ours(self.x, is_causal=True)

    def ours_fwd_bwd(self) -> None:
        self.ours.zero_grad()
        self.x.grad = None
        self.ours_fwd().backward(self.g)

    def torch_fwd(self) -> Any:
        return self.twin(self.tx, src_mask=self.mask, is_causal=True)

    def torch_fwd_bwd(self) -> None:
        self.twin.zero_grad(set_to_none=True)
        self.tx.grad = None
        self.torch_fwd().backward(self.tg)

    def check(self, tol: float = 1e-4) -> float:
        """The largest gradient difference (input and every parameter) relative to the gradient's scale;
        raises if over ``tol``: the timings would compare different computations."""
        self.ours_fwd_bwd()
        self.torch_fwd_bwd()
        pairs = [("input", self.x.grad, self.tx.grad)]
        twin_params = dict(self.twin.named_parameters())
        pairs += [(name, p.grad, twin_params[name].grad) for name, p in self.ours.named_parameters()]
        worst = 0.0
        for name, ours, theirs in pairs:
            a, b = ours.numpy(), theirs.numpy()
            diff = float(np.abs(a - b).max() / max(float(np.abs(b).max()), 1e-12))
            if diff > tol:
                raise AssertionError(f"transformer block: the gradients of {name} differ from PyTorch's by {diff:.2e}")
            worst = max(worst, diff)
        return worst


def run_block(repeats: int, min_time: float) -> dict:
    twins = BlockTwins()
    worst = twins.check()
    times = measure({"ours_fwd": twins.ours_fwd, "torch_fwd": twins.torch_fwd,
                     "ours_fwd_bwd": twins.ours_fwd_bwd, "torch_fwd_bwd": twins.torch_fwd_bwd}, repeats, min_time)
    b = BLOCK
    row = {"case": f"pre-LN GELU block, ({b['batch']}, {b['seq']}, {b['d_model']}), {b['nhead']} heads",
           "grad_rel_diff": worst}
    row.update({f"{k}_ms": v * 1e3 for k, v in times.items()})
    return row


# ----------------------------------------------------------------------------------------------------------
# Reporting
# ----------------------------------------------------------------------------------------------------------


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "-"


def _num(v: float | None, digits: int = 1) -> str:
    return f"{v:.{digits}f}" if v is not None else "-"


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table (readable in a terminal too)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                                            for i, (c, w) in enumerate(zip(cells, widths))) + " |"
    sep = "|" + "|".join("-" * (w + 1) + (":" if i else "-") for i, w in enumerate(widths)) + "|"
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


def overhead_table(rows: list[dict]) -> str:
    header = ["op (4x4 float32)", "numpy fwd", "ours fwd", "torch fwd", "ours/torch fwd", "numpy f+b", "ours f+b",
              "torch f+b", "ours/torch f+b", "ours/numpy f+b"]
    body = [[r["op"], _num(r["numpy_fwd_us"]), _num(r["ours_fwd_us"]), _num(r.get("torch_fwd_us")),
             _ratio(r["ours_fwd_us"], r.get("torch_fwd_us")),
             _num(r["numpy_fwd_bwd_us"]), _num(r["ours_fwd_bwd_us"]), _num(r.get("torch_fwd_bwd_us")),
             _ratio(r["ours_fwd_bwd_us"], r.get("torch_fwd_bwd_us")),
             _ratio(r["ours_fwd_bwd_us"], r["numpy_fwd_bwd_us"])] for r in rows]
    return table(header, body)


def throughput_table(rows: list[dict]) -> str:
    header = ["op (float32)", "numpy fwd", "ours fwd", "ours/numpy fwd", "numpy f+b", "ours f+b",
              "torch f+b", "ours/numpy f+b", "ours/torch f+b"]
    body = [[r["op"], _num(r["numpy_fwd_ms"], 2), _num(r["ours_fwd_ms"], 2),
             _ratio(r["ours_fwd_ms"], r["numpy_fwd_ms"]),
             _num(r["numpy_fwd_bwd_ms"], 2), _num(r["ours_fwd_bwd_ms"], 2), _num(r.get("torch_fwd_bwd_ms"), 2),
             _ratio(r["ours_fwd_bwd_ms"], r["numpy_fwd_bwd_ms"]),
             _ratio(r["ours_fwd_bwd_ms"], r.get("torch_fwd_bwd_ms"))] for r in rows]
    return table(header, body)


def block_table(row: dict) -> str:
    header = ["case", "ours fwd", "torch fwd", "ours/torch fwd", "ours f+b", "torch f+b", "ours/torch f+b"]
    body = [[row["case"], _num(row["ours_fwd_ms"], 2), _num(row["torch_fwd_ms"], 2),
             _ratio(row["ours_fwd_ms"], row["torch_fwd_ms"]), _num(row["ours_fwd_bwd_ms"], 2),
             _num(row["torch_fwd_bwd_ms"], 2), _ratio(row["ours_fwd_bwd_ms"], row["torch_fwd_bwd_ms"])]]
    return table(header, body)


def machine() -> dict:
    info = {"python": platform.python_version(), "numpy": np.__version__, "tinygrad_attn": ta.__version__,
            "torch": torch.__version__ if torch is not None else None, "platform": platform.platform(),
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "threads": ARGS.threads}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info["numpy_blas"] = f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # the layout of show_config differs across NumPy versions
        pass
    return info


def main() -> None:
    if not ARGS.system_malloc:
        ta.keep_freed_memory()
    repeats, min_time = (3, 0.01) if ARGS.quick else (ARGS.repeats, ARGS.min_time)
    result: dict[str, Any] = {"machine": machine(), "repeats": repeats, "min_time_s": min_time, "clock": ARGS.clock}
    m = result["machine"]
    print(f"# {m['cpu']}, {m['cores']} cores, {ARGS.threads} thread(s); Python {m['python']}, NumPy {m['numpy']}"
          f" ({m.get('numpy_blas', '?')}), PyTorch {m['torch'] or 'not installed'}")
    print(f"# median of {repeats} runs of >= {min_time * 1e3:.0f} ms each, {ARGS.clock} clock\n")
    if ARGS.only in (None, "overhead"):
        result["overhead"] = run_overhead(repeats, min_time)
        print("Per-op overhead, tiny tensors: microseconds per call (f+b: forward + backward)\n")
        print(overhead_table(result["overhead"]), "\n")
    if ARGS.only in (None, "throughput"):
        result["throughput"] = run_throughput(repeats, min_time)
        print("Throughput, large tensors: milliseconds per call\n")
        print(throughput_table(result["throughput"]), "\n")
    if ARGS.only in (None, "block") and torch is not None:
        result["block"] = run_block(repeats, min_time)
        print("Transformer block against PyTorch's with the same weights: milliseconds per call\n")
        print(block_table(result["block"]), "\n")
    if ARGS.json:
        text = json.dumps(result, indent=2)
        if ARGS.json == "-":
            print(text)
        else:
            Path(ARGS.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
