"""Fused CUDA kernels: alternative implementations, on a GPU, of the array code of a few memory-bound ops.

Each replaces a chain of array operations (one GPU kernel and one trip through memory each) by one kernel:

    adam_update_        Adam's step for one parameter: m, v and the parameter updated in one pass
                        (the array code: eight elementwise kernels and a scratch buffer)
    layer_norm_forward  per row: mean, variance, (x - mean) * rstd * w + b, and the saved mean and rstd
    layer_norm_input_grad  per row: dx = rstd * (gw - mean(gw) - x_hat * mean(gw * x_hat)), gw = g * w
    masked_softmax_     per row, in place: softmax of the (masked) attention scores; a row that may attend
                        nowhere (max -inf) gives zeros

The derivative formulas stay where they are (``functional.LayerNorm``, ``attention``, ``optim.Adam``): an op
asks ``fused(array)`` and, on a CuPy float32 array, calls the kernel instead of its array code, so each op
keeps one formula and two implementations of it. Everywhere else (NumPy, the strict test device, float64,
float16) the array code runs. The kernels compile on first use (CuPy caches them on disk): importing this
module needs no CuPy. ``enabled = False`` switches them off (for timing the array code on a GPU).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from .backend import backend_of

enabled = True  # set False to run the array code on a GPU too (benchmarks compare both)

_BLOCK = 256  # threads per row in the row kernels (a power of two: the block reductions halve it)


def fused(*arrays: Any) -> bool:
    """Do these arrays take the fused kernels? CuPy arrays of float32, C-contiguous (None is skipped), with
    ``enabled`` set."""
    return enabled and all(not isinstance(a, np.ndarray) and backend_of(a).name == "cuda"  # NumPy: no at once
                           and a.dtype == np.float32 and a.flags.c_contiguous for a in arrays if a is not None)


# ---- sources (plain strings: tests compile them with nvcc where there is one, without a GPU) ----------------

ADAM_PARAMS = ("G g, T sign, T l2, T one_minus_beta1, T beta2, T one_minus_beta2, T step_size, T bc2_sqrt, T eps",
               "T p, T m, T v")
ADAM_BODY = """
T grad = sign * (T)g + l2 * p;
m += one_minus_beta1 * (grad - m);
v = v * beta2 + one_minus_beta2 * (grad * grad);
p -= step_size * (m / (sqrt(v) / bc2_sqrt + eps));
"""

_BLOCK_REDUCTIONS = f"#define BLOCK {_BLOCK}\n" + """
__device__ float block_sum(float value, float* buffer) {
    buffer[threadIdx.x] = value;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half >>= 1) {
        if (threadIdx.x < half) buffer[threadIdx.x] += buffer[threadIdx.x + half];
        __syncthreads();
    }
    float total = buffer[0];
    __syncthreads();  // before the buffer is reused
    return total;
}

__device__ float block_max(float value, float* buffer) {  // NaN wins, as NumPy's max
    buffer[threadIdx.x] = value;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half >>= 1) {
        if (threadIdx.x < half) {
            float a = buffer[threadIdx.x], b = buffer[threadIdx.x + half];
            buffer[threadIdx.x] = (a > b || isnan(a)) ? a : b;
        }
        __syncthreads();
    }
    float best = buffer[0];
    __syncthreads();
    return best;
}
"""

LAYER_NORM_SOURCE = _BLOCK_REDUCTIONS + """
extern "C" __global__ void layer_norm_forward(const float* x, const float* w, const float* b, float* y,
                                              float* mean_out, float* rstd_out, long long n_rows, int n,
                                              float eps, int has_w, int has_b) {
    __shared__ float buffer[BLOCK];
    long long row = blockIdx.x;
    if (row >= n_rows) return;
    const float* xr = x + row * n;
    float* yr = y + row * n;
    float s = 0.0f;
    for (int j = threadIdx.x; j < n; j += blockDim.x) s += xr[j];
    float mean = block_sum(s, buffer) / n;
    float s2 = 0.0f;
    for (int j = threadIdx.x; j < n; j += blockDim.x) { float d = xr[j] - mean; s2 += d * d; }
    float rstd = 1.0f / sqrtf(block_sum(s2, buffer) / n + eps);
    for (int j = threadIdx.x; j < n; j += blockDim.x) {
        float v = (xr[j] - mean) * rstd;
        if (has_w) v *= w[j];
        if (has_b) v += b[j];
        yr[j] = v;
    }
    if (threadIdx.x == 0) { mean_out[row] = mean; rstd_out[row] = rstd; }
}

extern "C" __global__ void layer_norm_input_grad(const float* g, const float* x, const float* w, const float* mean,
                                                 const float* rstd, float* dx, long long n_rows, int n, int has_w) {
    __shared__ float buffer[BLOCK];
    long long row = blockIdx.x;
    if (row >= n_rows) return;
    const float* gr = g + row * n;
    const float* xr = x + row * n;
    float* dr = dx + row * n;
    float m = mean[row], r = rstd[row];
    float s_gw = 0.0f, s_gw_xh = 0.0f;
    for (int j = threadIdx.x; j < n; j += blockDim.x) {
        float gw = has_w ? gr[j] * w[j] : gr[j];
        s_gw += gw;
        s_gw_xh += gw * (xr[j] - m) * r;
    }
    float mean_gw = block_sum(s_gw, buffer) / n;
    float mean_gw_xh = block_sum(s_gw_xh, buffer) / n;
    for (int j = threadIdx.x; j < n; j += blockDim.x) {
        float gw = has_w ? gr[j] * w[j] : gr[j];
        dr[j] = r * (gw - mean_gw - (xr[j] - m) * r * mean_gw_xh);
    }
}
"""

SOFTMAX_SOURCE = _BLOCK_REDUCTIONS + """
extern "C" __global__ void masked_softmax(float* s, long long n_rows, int n) {
    __shared__ float buffer[BLOCK];
    long long row = blockIdx.x;
    if (row >= n_rows) return;
    float* sr = s + row * n;
    float best = __int_as_float(0xff800000);  // -inf
    for (int j = threadIdx.x; j < n; j += blockDim.x) best = (sr[j] > best || isnan(sr[j])) ? sr[j] : best;
    best = block_max(best, buffer);
    if (isinf(best) || isnan(best)) best = 0.0f;  // a row that may attend nowhere stays at -inf: exp gives 0
    float total = 0.0f;
    for (int j = threadIdx.x; j < n; j += blockDim.x) { float e = expf(sr[j] - best); sr[j] = e; total += e; }
    total = block_sum(total, buffer);
    if (total == 0.0f) total = 1.0f;  // ...and its probabilities are 0 / 1 = 0
    for (int j = threadIdx.x; j < n; j += blockDim.x) sr[j] /= total;
}
"""


# ---- compiled on first use ------------------------------------------------------------------------------------


@functools.cache
def _adam_kernel() -> Any:
    import cupy

    return cupy.ElementwiseKernel(*ADAM_PARAMS, ADAM_BODY, "tinygrad_attn_adam")


@functools.cache
def _raw(source: str, name: str) -> Any:
    import cupy

    return cupy.RawKernel(source, name)


def _rows(x: Any, n_features: int) -> tuple[int, int]:
    n_rows = x.size // n_features if n_features else 0
    return n_rows, n_features


# ---- the ops' fused implementations -----------------------------------------------------------------------------


def adam_update_(param: Any, grad: Any, m: Any, v: Any, *, lr: float, beta1: float, beta2: float, eps: float,
                 step: int, l2: float, maximize: bool) -> None:
    """One Adam step in place on ``param``, ``m`` and ``v`` (the formula of ``optim.Adam``, without amsgrad):
    g ← ±g + l2·θ; m ← m + (1-β1)(g - m); v ← β2·v + (1-β2)·g²; θ ← θ - η/(1-β1^t) · m / (sqrt(v)/sqrt(1-β2^t) + ε)."""
    t = param.dtype.type
    _adam_kernel()(grad, t(-1.0 if maximize else 1.0), t(l2), t(1 - beta1), t(beta2), t(1 - beta2),
                   t(lr / (1 - beta1**step)), t(math.sqrt(1 - beta2**step)), t(eps), param, m, v)


def layer_norm_forward(x: Any, weight: Any, bias: Any, n_features: int, eps: float) -> tuple[Any, Any, Any]:
    """(y, mean, rstd) of a layer norm over the last ``n_features`` elements of each row; mean and rstd have one
    value per row (reshape them to the keepdims shape)."""
    import cupy

    n_rows, n = _rows(x, n_features)
    y = cupy.empty_like(x)
    mean, rstd = cupy.empty(n_rows, np.float32), cupy.empty(n_rows, np.float32)
    if n_rows:
        dummy = x  # an unused pointer where there is no weight or bias
        _raw(LAYER_NORM_SOURCE, "layer_norm_forward")(
            (n_rows,), (_BLOCK,), (x, dummy if weight is None else weight, dummy if bias is None else bias, y, mean,
                                   rstd, np.int64(n_rows), np.int32(n), np.float32(eps), np.int32(weight is not None),
                                   np.int32(bias is not None)))
    return y, mean, rstd


def layer_norm_input_grad(g: Any, x: Any, weight: Any, mean: Any, rstd: Any, n_features: int) -> Any:
    """dx = rstd * (gw - mean(gw) - x_hat * mean(gw * x_hat)) per row, with gw = g * w (w may be None)."""
    import cupy

    n_rows, n = _rows(x, n_features)
    dx = cupy.empty_like(x)
    if n_rows:
        _raw(LAYER_NORM_SOURCE, "layer_norm_input_grad")(
            (n_rows,), (_BLOCK,), (g, x, x if weight is None else weight, mean, rstd, dx, np.int64(n_rows),
                                   np.int32(n), np.int32(weight is not None)))
    return dx


def masked_softmax_(s: Any) -> Any:
    """Softmax over the last axis of the float32 scores ``s``, in place, with -inf (masked) scores giving 0 and a
    row of nothing but -inf giving zeros. Returns ``s``."""
    n = s.shape[-1]
    n_rows = s.size // n if n else 0
    if n_rows:
        _raw(SOFTMAX_SOURCE, "masked_softmax")((n_rows,), (_BLOCK,), (s, np.int64(n_rows), np.int32(n)))
    return s
