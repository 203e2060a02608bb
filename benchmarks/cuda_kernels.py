"""The fused CUDA kernels against the array code they replace, on a GPU (``tinygrad_attn/cuda_kernels.py``).

    python benchmarks/cuda_kernels.py            # one table: ms per call, array code vs kernel, and the ratio

Each op at the sizes of one ``base`` training step (batch of 64 sentences of 30 tokens, d_model 512, 8 heads):
Adam's step over a base-sized set of parameters, layer norm forward + backward, and attention forward +
backward with a padding mask. The two implementations alternate, ``--repeats`` rounds, and the median of
each is reported; every call ends with a device synchronisation. Needs CuPy and a GPU (exit 1 otherwise).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tinygrad_attn as ta  # noqa: E402
from tinygrad_attn import cuda_kernels  # noqa: E402

F = ta.F
ROWS, LENGTH, D_MODEL, HEADS = 64, 30, 512, 8


def _tensor(shape: tuple[int, ...], seed: int, requires_grad: bool = True) -> ta.Tensor:
    data = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return ta.tensor(data, device="cuda", requires_grad=requires_grad)


def adam_case() -> Callable[[], None]:
    """Adam's step over parameters shaped like base's (6+6 layers of attention and feed-forward matrices)."""
    shapes = [(3 * D_MODEL, D_MODEL), (D_MODEL, D_MODEL), (2048, D_MODEL), (D_MODEL, 2048), (D_MODEL,)] * 12
    params = [_tensor(s, i) for i, s in enumerate(shapes)]
    for i, p in enumerate(params):
        p.grad = _tensor(p.shape, 1000 + i, requires_grad=False)
    optimizer = ta.optim.Adam(params, lr=1e-4, betas=(0.9, 0.98), eps=1e-9)
    return lambda: optimizer.step()


def layer_norm_case() -> Callable[[], None]:
    x, w, b = _tensor((ROWS * LENGTH, D_MODEL), 0), _tensor((D_MODEL,), 1), _tensor((D_MODEL,), 2)
    g = _tensor((ROWS * LENGTH, D_MODEL), 3, requires_grad=False)

    def run() -> None:
        (F.layer_norm(x, (D_MODEL,), w, b) * g).sum().backward()

    return run


def attention_case() -> Callable[[], None]:
    q, k, v = (_tensor((ROWS, HEADS, LENGTH, D_MODEL // HEADS), i) for i in range(3))
    lengths = np.random.default_rng(4).integers(LENGTH // 2, LENGTH + 1, ROWS)
    mask = ta.tensor((np.arange(LENGTH)[None, :] < lengths[:, None])[:, None, None, :], device="cuda")

    def run() -> None:
        F.scaled_dot_product_attention(q, k, v, attn_mask=mask).sum().backward()

    return run


CASES = {"Adam step (base's parameters)": adam_case, "layer norm, forward + backward": layer_norm_case,
         "attention, forward + backward": attention_case}


def time_call(fn: Callable[[], None]) -> float:
    import cupy

    start = time.perf_counter()
    fn()
    cupy.cuda.Device().synchronize()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed rounds per implementation (default 20)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if not ta.cuda.is_available():
        print("benchmarks/cuda_kernels.py needs CuPy and a GPU: the kernels run only there", file=sys.stderr)
        return 1
    print("| op | array code, ms | fused kernel, ms | array / fused |")
    print("|---|---:|---:|---:|")
    for name, make in CASES.items():
        fn = make()
        times: dict[bool, list[float]] = {True: [], False: []}
        for round_ in range(args.repeats + 2):  # two untimed rounds first: kernel compilation, memory pool
            for fused in (False, True):
                cuda_kernels.enabled = fused
                seconds = time_call(fn)
                if round_ >= 2:
                    times[fused].append(seconds)
        cuda_kernels.enabled = True
        array_ms, fused_ms = (1000 * statistics.median(times[f]) for f in (False, True))
        print(f"| {name} | {array_ms:.2f} | {fused_ms:.2f} | {array_ms / fused_ms:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
