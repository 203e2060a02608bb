"""Neural-network functions (``import tinygrad_attn.functional as F``), with PyTorch's names and arguments.

Each heavy one is a *fused* Function: one forward over the arrays, one hand-written backward, instead
of a chain of primitive ops that would each keep an intermediate alive for backward. Each derivative is
written once: a fused op's ``backward`` applies a backward Function whose ``forward`` is array code (fast,
with or without ``create_graph``) and whose own ``backward`` is the second derivative, in Tensor ops or as
another such Function (``ScatterAddRows`` for the embedding, ``LayerNormInputGrad`` for layer norm).

This module holds linear, dropout, layer_norm and embedding; softmax and log_softmax live in ``softmax.py``,
the losses in ``losses.py`` and attention in ``attention.py``, all re-exported here.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import cuda_kernels
from .amp import autocast_mode as _autocast
from .attention import attention_weights, scaled_dot_product_attention
from .autograd import Function
from .backend import array_module as _xp
from .losses import cross_entropy, mse_loss, nll_loss
from .ops.elementwise import gelu, relu, sigmoid, tanh, where
from .ops.linalg import array_matmul, matmul
from .ops.movement import reshape, transpose
from .ops.reduce import sum_to
from .random import dropout_mask
from .softmax import log_softmax, softmax
from .tensor import Tensor

__all__ = [
    "softmax", "log_softmax", "relu", "gelu", "sigmoid", "tanh", "linear", "dropout", "layer_norm", "embedding",
    "cross_entropy", "nll_loss", "mse_loss", "scaled_dot_product_attention", "attention_weights",
]


# ---- linear ------------------------------------------------------------------------------------------------


class Linear(Function):
    """y = x W^T + b for x of shape (N, in), W (out, in), b (out,): one matrix product, with the bias added in
    place into the product's fresh buffer (what BLAS's "C = A B + C" and PyTorch's addmm do).

        dL/dx = G W        dL/dW = G^T x        dL/db = sum of G over the rows

    dL/dW comes straight out in W's own (out, in) layout, where matmul with a transposed W would give its
    transpose; the optimiser then updates contiguous arrays."""

    def forward(self, x: Any, weight: Any, *bias: Any) -> Any:
        self.save_for_backward(x, weight)
        y = array_matmul(x, weight.T)
        if bias:
            y += bias[0]
        return y

    def backward(self, g: Tensor) -> tuple[Tensor | None, ...]:
        x, weight = self.saved_tensors
        gx = matmul(g, weight) if self.needs_input_grad[0] else None
        gw = matmul(transpose(g, 0, 1), x) if self.needs_input_grad[1] else None
        if len(self.needs_input_grad) == 2:
            return gx, gw
        return gx, gw, (g.sum(0) if self.needs_input_grad[2] else None)


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y = x W^T + b with W of shape (out_features, in_features).   dy/dx = W, dy/dW = x, dy/db = 1.

    The leading dims of x are flattened into one first, so the weight gradient is a single (out x in)
    matrix product rather than one per batch element summed afterwards.
    """
    if _autocast.enabled:
        input, weight, bias = _autocast.to_lower(input, weight, bias)
    if weight.ndim != 2:
        raise ValueError(f"linear: weight must be 2-D (out_features, in_features), got shape {tuple(weight.shape)}")
    out_features, in_features = weight.shape
    if input.ndim == 0 or input.shape[-1] != in_features:
        raise ValueError(f"linear: input of shape {tuple(input.shape)} does not end in in_features={in_features} "
                         f"(weight shape {tuple(weight.shape)})")
    if bias is not None and tuple(bias.shape) != (out_features,):
        raise ValueError(f"linear: bias must have shape ({out_features},), got {tuple(bias.shape)}")
    dtypes = [t.dtype for t in (input, weight, bias) if t is not None]
    if any(d != input.dtype for d in dtypes):
        raise TypeError(f"linear: input, weight and bias must share one dtype, got {', '.join(map(str, dtypes))}; "
                        "convert with .to(dtype)")
    lead = tuple(input.shape[:-1])
    y = Linear.apply(reshape(input, (math.prod(lead), in_features)), weight, *(() if bias is None else (bias,)))
    return reshape(y, lead + (out_features,))


# ---- dropout -----------------------------------------------------------------------------------------------


class Dropout(Function):
    """y = x * m with m = 0 (probability p) or 1 / (1 - p) per element ("inverted" dropout: E[y] = x, so
    evaluation needs no rescaling).   dy/dx = m: backward multiplies by the same mask."""

    def forward(self, x: Any, p: float) -> Any:
        mask = dropout_mask(x.shape, p, x)
        self.save_for_backward(mask)
        return x * mask

    def backward(self, g: Tensor) -> Tensor:
        (mask,) = self.saved_tensors
        return g * mask


def dropout(input: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by 1 / (1 - p); the identity when
    ``training`` is False or p == 0. The mask comes from the device's generator (``ta.manual_seed``)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    if input.dtype.kind != "f":
        raise TypeError(f"dropout: needs a floating-point tensor, got {input.dtype}")
    return Dropout.apply(input, p=float(p))


# ---- layer norm --------------------------------------------------------------------------------------------


class LayerNorm(Function):
    """y = x_hat * w + b with x_hat = (x - mean) * rstd, rstd = 1 / sqrt(var + eps), over the last dims.

    dL/db = sum(g) over the rows; dL/dw = sum(g * x_hat) over the rows (``LayerNormWeightGrad``); dL/dx
    (``LayerNormInputGrad``). Forward keeps the input and the per-row mean and rstd (as PyTorch does), not x_hat:
    x_hat costs one subtract and multiply to rebuild, once, for both gradients.
    """

    def forward(self, x: Any, *affine: Any, dims: tuple[int, ...], eps: float, has_weight: bool,
                has_bias: bool) -> Any:
        self.dims, self.eps, self.has_weight, self.has_bias = dims, eps, has_weight, has_bias
        weight, bias = affine[0] if has_weight else None, affine[-1] if has_bias else None
        if cuda_kernels.fused(x, weight, bias):  # the same formula, one GPU kernel
            n_features = math.prod(x.shape[x.ndim - len(dims):])
            y, mean, rstd = cuda_kernels.layer_norm_forward(x, weight, bias, n_features, eps)
            keepdims = x.shape[:x.ndim - len(dims)] + (1,) * len(dims)
            mean, rstd = mean.reshape(keepdims), rstd.reshape(keepdims)
            self.save_for_backward(x, mean, rstd, *(affine[:1] if has_weight else ()))
            return y
        xp = _xp(x)
        mean = x.mean(axis=dims, keepdims=True)
        y = x - mean
        rstd = (y * y).mean(axis=dims, keepdims=True)
        rstd += eps
        rstd = 1.0 / xp.sqrt(rstd, out=rstd)
        y *= rstd  # y is x_hat now
        if has_weight:
            y *= affine[0]
        if has_bias:
            y += affine[-1]
        self.save_for_backward(x, mean, rstd, *(affine[:1] if has_weight else ()))
        return y

    def backward(self, g: Tensor) -> tuple[Tensor | None, ...]:
        x, mean, rstd, *weight = self.saved_tensors
        need_x, need_w, need_b = self.needs_input_grad[0], self.has_weight and self.needs_input_grad[1], \
            self.has_bias and self.needs_input_grad[-1]
        stats = dict(mean=mean.data, rstd=rstd.data, dims=self.dims, eps=self.eps)
        # x_hat is rebuilt once for both gradients; the input gradient uses it as scratch space, so it comes last
        x_hat = _normalized(x.data, mean.data, rstd.data) if need_x or need_w else None
        grads: list[Tensor | None] = [None]
        if self.has_weight:
            grads.append(LayerNormWeightGrad.apply(g, x, x_hat=x_hat, **stats) if need_w else None)
        if self.has_bias:
            grads.append(sum_to(g, tuple(g.shape[g.ndim - len(self.dims):])) if need_b else None)
        if need_x:
            grads[0] = LayerNormInputGrad.apply(g, x, *weight, x_hat=x_hat, **stats)
        return tuple(grads)


def _normalized(x: Any, mean: Any, rstd: Any) -> Any:
    """x_hat = (x - mean) * rstd on arrays, in one new buffer."""
    x_hat = x - mean
    x_hat *= rstd
    return x_hat


def _normalized_differentiably(x: Tensor, dims: tuple[int, ...], eps: float) -> tuple[Tensor, Tensor]:
    """x_hat and rstd rebuilt from x in Tensor ops, for the second derivatives (there they must depend on x)."""
    centered = x - x.mean(dims, keepdim=True)
    rstd = ((centered * centered).mean(dims, keepdim=True) + eps) ** -0.5
    return centered * rstd, rstd


class LayerNormInputGrad(Function):
    """dx = rstd * (gw - mean(gw) - x_hat * mean(gw * x_hat)) with gw = g * w (w optional), means over the
    normalised dims: J^T gw for J = d x_hat / dx = rstd (I - 1/D - x_hat x_hat^T / D) per row, a symmetric matrix.

    Its own derivatives, for an incoming u, with Ju = J u (this op again, without w), D features, row sums S():
    d/dgw = Ju (so d/dg = Ju * w, d/dw = sum of g * Ju over the rows) and
    d/dx = -(rstd / D) (x_hat S(u * dx) + S(gw * x_hat) Ju + S(u * x_hat) dx).

    ``x_hat`` may be passed in (the caller computed it already); this op then uses it as scratch space.
    """

    def forward(self, g: Any, x: Any, *weight: Any, mean: Any, rstd: Any, dims: tuple[int, ...], eps: float,
                x_hat: Any = None) -> Any:
        n_features = math.prod(x.shape[x.ndim - len(dims):])
        self.dims, self.eps, self.n_features = dims, eps, n_features
        if cuda_kernels.fused(g, x, *weight, mean, rstd):  # the same formula, one GPU kernel
            dx = cuda_kernels.layer_norm_input_grad(g, x, weight[0] if weight else None, mean, rstd, n_features)
            self.save_for_backward(g, x, *weight, dx, mean, rstd)
            return dx
        xp = _xp(x)
        xh = _normalized(x, mean, rstd) if x_hat is None else x_hat
        gw = g * weight[0] if weight else g.copy()  # becomes dx, in place
        # Rows (the leading dims) by the normalised features (the trailing ones), as 2-D views.
        gw2, xh2 = gw.reshape(-1, n_features), xh.reshape(-1, n_features)
        mean_gw = gw2.mean(axis=1, keepdims=True)
        mean_gw_xh = xp.einsum("ij,ij->i", gw2, xh2)[:, None]
        mean_gw_xh /= n_features
        gw2 -= mean_gw
        xh2 *= mean_gw_xh
        gw2 -= xh2
        gw *= rstd
        self.save_for_backward(g, x, *weight, gw, mean, rstd)
        return gw

    def backward(self, u: Tensor) -> tuple[Tensor | None, ...]:
        g, x, *weight, dx, mean, rstd = self.saved_tensors
        dims, need = self.dims, self.needs_input_grad
        Ju = LayerNormInputGrad.apply(u, x, mean=mean.data, rstd=rstd.data, dims=dims, eps=self.eps)
        dg = (Ju * weight[0] if weight else Ju) if need[0] else None
        dw = [sum_to(g * Ju, weight[0].shape) if need[2] else None] if weight else []
        dx_of_x = None
        if need[1]:
            x_hat, r = _normalized_differentiably(x, dims, self.eps)
            gw = g * weight[0] if weight else g
            rows = (x_hat * (u * dx).sum(dims, keepdim=True) + (gw * x_hat).sum(dims, keepdim=True) * Ju
                    + (u * x_hat).sum(dims, keepdim=True) * dx)
            dx_of_x = rows * (r * (-1.0 / self.n_features))
        return (dg, dx_of_x, *dw)


class LayerNormWeightGrad(Function):
    """dw = sum of g * x_hat over the rows (the leading dims).

    Its own derivatives, for an incoming u (shaped like w): d/dg = u * x_hat, and d/dx = J^T (g * u), which is
    ``LayerNormInputGrad`` with u in the place of the weight.
    """

    def forward(self, g: Any, x: Any, mean: Any, rstd: Any, dims: tuple[int, ...], eps: float,
                x_hat: Any = None) -> Any:
        xh = _normalized(x, mean, rstd) if x_hat is None else x_hat
        norm_shape = x.shape[x.ndim - len(dims):]
        n_features = math.prod(norm_shape)
        dw = _xp(x).einsum("ij,ij->j", g.reshape(-1, n_features), xh.reshape(-1, n_features))
        self.dims, self.eps = dims, eps
        self.save_for_backward(g, x, mean, rstd)
        return dw.reshape(norm_shape)

    def backward(self, u: Tensor) -> tuple[Tensor | None, Tensor | None]:
        g, x, mean, rstd = self.saved_tensors
        dg = u * _normalized_differentiably(x, self.dims, self.eps)[0] if self.needs_input_grad[0] else None
        dx = LayerNormInputGrad.apply(g, x, u, mean=mean.data, rstd=rstd.data, dims=self.dims, eps=self.eps) \
            if self.needs_input_grad[1] else None
        return dg, dx


def layer_norm(input: Tensor, normalized_shape: int | tuple[int, ...] | list[int], weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Normalise over the trailing ``normalized_shape`` dims to mean 0 and variance 1 (biased variance,
    as PyTorch), then scale by ``weight`` and shift by ``bias`` (both of shape ``normalized_shape``)."""
    if _autocast.enabled:
        input, weight, bias = _autocast.to_float32(input, weight, bias)
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(int(n) for n in normalized_shape)
    k = len(shape)
    if k == 0 or k > input.ndim or tuple(input.shape[input.ndim - k:]) != shape:
        raise ValueError(f"layer_norm: normalized_shape {shape} must match the last dims of the input, "
                         f"which has shape {tuple(input.shape)}")
    if input.dtype.kind != "f":
        raise TypeError(f"layer_norm: needs a floating-point input, got {input.dtype}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != shape:
            raise ValueError(f"layer_norm: {name} must have shape {shape} (normalized_shape), got {tuple(t.shape)}")
        if t is not None and t.dtype != input.dtype:
            raise TypeError(f"layer_norm: {name} is {t.dtype} but the input is {input.dtype}")
    affine = [t for t in (weight, bias) if t is not None]
    return LayerNorm.apply(input, *affine, dims=tuple(range(input.ndim - k, input.ndim)), eps=float(eps),
                           has_weight=weight is not None, has_bias=bias is not None)


# ---- embedding ---------------------------------------------------------------------------------------------


class Embedding(Function):
    """y[i] = W[ids[i]]: one row of the table per id.   dL/dW[r] = the sum of g[i] over the positions
    with ids[i] == r (repeated ids accumulate), except for the padding row, which gets none."""

    def forward(self, ids: Any, weight: Any, padding_idx: int | None) -> Any:
        xp = _xp(weight)
        self.num_rows, self.padding_idx = weight.shape[0], padding_idx
        bad = None
        if not isinstance(ids, np.ndarray):  # on a device, out-of-range ids were not checked (``embedding``)
            bad = (ids < 0) | (ids >= self.num_rows)
            ids = xp.where(bad, 0, ids)
        self.save_for_backward(ids)
        out = xp.take(weight, ids, axis=0)
        if bad is not None:
            xp.copyto(out, math.nan, where=bad[..., None])
        return out

    def backward(self, g: Tensor) -> tuple[None, Tensor | None]:
        (ids,) = self.saved_tensors
        if not self.needs_input_grad[1]:
            return None, None
        return None, ScatterAddRows.apply(ids, g, num_rows=self.num_rows, padding_idx=self.padding_idx)


class ScatterAddRows(Function):
    """z = zeros(num_rows, D) with z[ids[i]] += x[i] for every position i, then z[padding_idx] = 0: the
    adjoint of the lookup, i.e. the embedding's weight gradient. Its own adjoint is the lookup again:
    dL/dx[i] = g[ids[i]], and 0 at padding positions."""

    def forward(self, ids: Any, x: Any, num_rows: int, padding_idx: int | None) -> Any:
        z = _xp(x).zeros((num_rows, x.shape[-1]), dtype=x.dtype)
        _scatter_add_rows(z, ids.reshape(-1), x.reshape(-1, x.shape[-1]))
        if padding_idx is not None:
            z[padding_idx] = 0
        self.padding_idx = padding_idx
        self.save_for_backward(ids)
        return z

    def backward(self, g: Tensor) -> tuple[None, Tensor]:
        (ids,) = self.saved_tensors
        rows = Embedding.apply(ids, g, padding_idx=self.padding_idx)
        if self.padding_idx is not None:
            rows = where(Tensor._make((ids.data != self.padding_idx)[..., None]), rows, 0.0)
        return None, rows


def _scatter_add_rows(z: Any, ids: Any, rows: Any) -> None:
    """z[ids[i]] += rows[i] in place, repeated ids accumulating.

    NumPy's ``add.at`` does exactly this, slowly; sorting the ids and summing each run of equal ids with one
    ``add.reduceat`` is faster (benchmarks/fused.py measures the embedding).
    """
    xp = _xp(z)
    if ids.size == 0:
        return
    if xp.__name__ != "numpy":
        xp.add.at(z, ids, rows)  # CuPy's scatter-add, with atomics
        return
    order = xp.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = xp.flatnonzero(xp.concatenate(([True], sorted_ids[1:] != sorted_ids[:-1])))
    z[sorted_ids[starts]] += xp.add.reduceat(rows[order], starts, axis=0)


def embedding(input: Tensor, weight: Tensor, padding_idx: int | None = None) -> Tensor:
    """Look up rows of ``weight`` (num_embeddings, embedding_dim) for the integer ids in ``input``: the result
    has shape input.shape + (embedding_dim,). The ``padding_idx`` row receives no gradient.

    An id out of range is an ``IndexError`` on the CPU. On a GPU the check would read the ids back to the host
    (a stall of the device's queue) and CuPy's indexing wraps such an id silently, so there its row of the
    result is nan instead (as are the losses computed from it): never a plausible wrong answer."""
    if input.dtype.kind not in "iu":
        raise TypeError(f"embedding: ids must be an integer tensor, got {input.dtype}")
    if weight.ndim != 2:
        raise ValueError(f"embedding: weight must be 2-D (num_embeddings, embedding_dim), got {tuple(weight.shape)}")
    n = weight.shape[0]
    if padding_idx is not None:
        if not -n <= padding_idx < n:
            raise ValueError(f"embedding: padding_idx {padding_idx} is out of range for {n} embeddings")
        padding_idx %= n
    if isinstance(input.data, np.ndarray) and input.numel():  # free on the CPU; a device gives nan rows instead
        low, high = int(input.data.min()), int(input.data.max())
        if low < 0 or high >= n:
            raise IndexError(f"embedding: id {low if low < 0 else high} is out of range for a table of {n} rows "
                             f"(ids must be in [0, {n}))")
    return Embedding.apply(input, weight, padding_idx=padding_idx)
