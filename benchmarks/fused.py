"""Fused functions against the same math written as a chain of primitive ops: time and memory.

    python benchmarks/fused.py            # all cases, 1 BLAS thread
    python benchmarks/fused.py --quick    # fewer repeats

For each case: milliseconds for forward and for forward + backward (median of ``--repeats``), the bytes
kept alive between forward and backward (what the graph saved, plus the output), and the peak bytes
allocated during forward + backward, both from ``tracemalloc`` (NumPy reports its allocations to it).
Both versions are first checked to compute the same loss and gradients.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import tinygrad_attn as ta  # noqa: E402
from tinygrad_attn import functional as F  # noqa: E402


def composite_cross_entropy(x: ta.Tensor, t: ta.Tensor, ignore_index: int, label_smoothing: float) -> ta.Tensor:
    """log_softmax, pick the targets, mix in the uniform part, average over the kept rows."""
    logp = F.log_softmax(x, -1)
    keep = t.numpy() != ignore_index
    rows = np.flatnonzero(keep)
    picked = logp[rows, t.numpy()[rows]]
    n = max(len(rows), 1)
    loss = -picked.sum() * ((1 - label_smoothing) / n)
    if label_smoothing:  # every class of the kept rows
        kept_rows = ta.tensor(keep.astype(x.dtype))
        loss = loss - (logp.sum(-1) * kept_rows).sum() * (label_smoothing / (x.shape[-1] * n))
    return loss


def composite_attention(q: ta.Tensor, k: ta.Tensor, v: ta.Tensor, mask: ta.Tensor, p: float) -> ta.Tensor:
    scores = (q @ k.mT) * (1.0 / math.sqrt(q.shape[-1]))
    scores = scores.masked_fill(mask.logical_not(), float("-inf"))
    return F.dropout(F.softmax(scores, -1), p) @ v


def composite_layer_norm(x: ta.Tensor, w: ta.Tensor, b: ta.Tensor, eps: float = 1e-5) -> ta.Tensor:
    mean = x.mean(-1, keepdim=True)
    centered = x - mean
    var = (centered * centered).mean(-1, keepdim=True)
    return centered * (var + eps) ** -0.5 * w + b


def composite_embedding(ids: ta.Tensor, w: ta.Tensor) -> ta.Tensor:
    return w[ids]


def measure(fn: Callable[[], ta.Tensor], grads: list[ta.Tensor], repeats: int) -> dict:
    def step(backward: bool) -> ta.Tensor:
        for t in grads:
            t.grad = None
        out = fn()
        if backward:
            out.backward(ta.tensor(np.ones(out.shape, dtype=out.dtype)) if out.ndim else None)
        return out

    times = {}
    for backward in (False, True):
        step(backward)
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            step(backward)
            runs.append(time.perf_counter() - start)
        times["fwd+bwd" if backward else "fwd"] = statistics.median(runs) * 1e3
    for t in grads:
        t.grad = None
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    out = fn()
    kept = tracemalloc.get_traced_memory()[0] - base
    out.backward(ta.tensor(np.ones(out.shape, dtype=out.dtype)) if out.ndim else None)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return {**times, "kept MB": kept / 2**20, "peak MB": peak / 2**20}


def check_same(a: Callable[[], ta.Tensor], b: Callable[[], ta.Tensor], grads: list[ta.Tensor], seed: int) -> None:
    results = []
    for fn in (a, b):
        for t in grads:
            t.grad = None
        ta.manual_seed(seed)
        out = fn()
        out.backward(ta.tensor(np.ones(out.shape, dtype=out.dtype)) if out.ndim else None)
        results.append([out.numpy()] + [t.grad.numpy() for t in grads])
    for x, y in zip(*results):
        np.testing.assert_allclose(x, y, rtol=2e-3, atol=2e-5)


def cases(rng: np.random.Generator) -> list[tuple[str, Callable, Callable, list[ta.Tensor], int]]:
    out = []
    n, c = 4000, 8000  # tokens in a batch x vocabulary
    x = ta.tensor(rng.standard_normal((n, c), dtype=np.float32), requires_grad=True)
    t_np = rng.integers(0, c, n)
    t_np[rng.random(n) < 0.1] = 0  # 10% padding, ignored
    t = ta.tensor(t_np)
    for ls in (0.0, 0.1):
        out.append((f"cross_entropy {n}x{c} ls={ls}",
                    lambda ls=ls: F.cross_entropy(x, t, ignore_index=0, label_smoothing=ls),
                    lambda ls=ls: composite_cross_entropy(x, t, 0, ls), [x], 0))

    b, h, length, e = 32, 8, 64, 64  # batch x heads x tokens x head dim
    q, k, v = (ta.tensor(rng.standard_normal((b, h, length, e), dtype=np.float32), requires_grad=True)
               for _ in range(3))
    mask = ta.tensor(np.tril(np.ones((length, length), dtype=bool)))
    for p in (0.0, 0.1):
        out.append((f"attention {b}x{h}x{length}x{e} causal p={p}",
                    lambda p=p: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p),
                    lambda p=p: composite_attention(q, k, v, mask, p), [q, k, v], 1))

    xs = ta.tensor(rng.standard_normal((64, 64, 512), dtype=np.float32), requires_grad=True)
    w = ta.tensor(rng.standard_normal(512, dtype=np.float32), requires_grad=True)
    bias = ta.tensor(rng.standard_normal(512, dtype=np.float32), requires_grad=True)
    out.append(("layer_norm 64x64x512", lambda: F.layer_norm(xs, 512, w, bias),
                lambda: composite_layer_norm(xs, w, bias), [xs, w, bias], 0))

    table = ta.tensor(rng.standard_normal((8000, 256), dtype=np.float32), requires_grad=True)
    ids = ta.tensor(np.minimum(rng.zipf(1.2, 4000), 8000) - 1)
    out.append(("embedding 4000 ids x 256, vocab 8000", lambda: F.embedding(ids, table),
                lambda: composite_embedding(ids, table), [table], 0))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="3 repeats")
    args = parser.parse_args()
    repeats = 3 if args.quick else args.repeats
    rng = np.random.default_rng(0)
    header = f"{'case':44s} {'version':10s} {'fwd ms':>8s} {'fwd+bwd ms':>11s} {'kept MB':>8s} {'peak MB':>8s}"
    print(header)
    print("-" * len(header))
    for name, fused, composite, grads, seed in cases(rng):
        check_same(fused, composite, grads, seed)
        for label, fn in (("fused", fused), ("composite", composite)):
            ta.manual_seed(seed)
            r = measure(fn, grads, repeats)
            print(f"{name:44s} {label:10s} {r['fwd']:8.1f} {r['fwd+bwd']:11.1f} {r['kept MB']:8.1f} "
                  f"{r['peak MB']:8.1f}")


if __name__ == "__main__":
    main()
