"""Loss functions: cross_entropy, nll_loss, mse_loss (re-exported by ``functional``; PyTorch's semantics).

Layout: class scores have the classes in the **last** dim, (..., C), with class indices of shape (...)
or class probabilities of the input's shape (..., C) (``cross_entropy`` only). For the common (N, C) input
this is exactly PyTorch's layout; for more dims PyTorch puts the classes in dim 1, (N, C, d1, ...), and
such an input must be permuted first (the error message says how).

Class-index targets equal to ``ignore_index`` contribute nothing; "mean" divides by the number of targets
that are not ignored (by the sum of their class weights, with ``weight``), so a batch where every target
is ignored gives nan for "mean", as in PyTorch, and zero gradients.

A class index out of range (and not ``ignore_index``) is an ``IndexError`` on the CPU. On a GPU, telling
would need a read back to the host, which stalls the device's queue every step, and CuPy's indexing wraps an
out-of-range index silently; so there the row picks class 0 instead and its loss and gradient are nan: the
loss reads as nan at the next read ("mean" and "sum" are nan), never as a plausible number. Check the ids
where they are still on the host (the translator's batches come from its vocabulary) to get the CPU's error.

With class probabilities q, the loss of a row is -sum_c w_c q_c log p_c (q mixed with the uniform
distribution first by label smoothing) and "mean" divides by the number of rows, as in PyTorch. That form
is composed of log_softmax and Tensor ops (differentiable in the target too); the class-index form is fused.

Cross-entropy is fused: log_softmax, the pick of the target and label smoothing in one op whose backward
is the famous (softmax - smoothed one-hot) * scale, computed in one (N, C) buffer without building a
one-hot array. The composite version (log_softmax, then nll_loss) keeps the whole (N, C) log-probability
array alive for backward; the fused op keeps only the input it was given and two numbers per row.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from .amp import autocast_mode as _autocast
from .autograd import Function
from .backend import array_module as _xp
from .backend import on_device_of, row_blocks
from .ops.linalg import matmul
from .ops.movement import IndexAdd, reshape
from .ops.shapes import broadcast_shape
from .softmax import SoftmaxBackward, log_softmax, softmax
from .tensor import Tensor

_REDUCTIONS = ("none", "mean", "sum")


class CrossEntropy(Function):
    """Row i, with p = softmax(x_i), target t, smoothing e, C classes and class weights w (all 1 without ``weight``):

        loss_i = -(1 - e) w_t log p_t - (e / C) sum_c w_c log p_c
        dloss_i/dx_ic = p_c ((1 - e) w_t + (e / C) sum_c w_c) - (1 - e) w_t [c = t] - (e / C) w_c

    Without class weights the gradient is p - ((1 - e) [c = t] + e / C): softmax minus the smoothed one-hot.
    Forward saves the input and, per row, its max m and log sum e^(x - m), from which backward rebuilds p.
    """

    def forward(self, x: Any, target: Any, row_weight: Any, row_valid: Any, class_weight: Any, reduction: str,
                label_smoothing: float) -> Any:
        xp = _xp(x)
        n_rows, n_classes = x.shape
        e = label_smoothing
        m, log_total = xp.empty(n_rows, dtype=x.dtype), xp.empty(n_rows, dtype=x.dtype)
        smooth: Any = xp.empty(n_rows, dtype=x.dtype) if e else None
        # Row by row block (``row_blocks``): the block's passes below run in cache, in one reused buffer.
        blocks = row_blocks(n_rows, n_classes * x.itemsize, x)
        buffer = xp.empty((blocks[0].stop, n_classes), dtype=x.dtype)
        for b in blocks:
            xb, shifted = x[b], buffer[: b.stop - b.start]
            mb = xb.max(axis=1)
            xp.copyto(mb, 0, where=~xp.isfinite(mb))  # a row of -inf logits must not give inf - inf
            xp.subtract(xb, mb[:, None], out=shifted)
            if e:  # sum_c w_c (x_c - m), for the smoothing term
                smooth[b] = shifted.sum(axis=1) if class_weight is None else shifted @ class_weight
            xp.exp(shifted, out=shifted)
            log_total[b] = xp.log(shifted.sum(axis=1))  # logsumexp(x) - m
            m[b] = mb
        del buffer
        picked = x[xp.arange(n_rows), target] - m  # x_t - m
        loss = (log_total - picked) * (row_weight * (1 - e))  # -log p_t = logsumexp(x) - x_t
        if e:
            total_weight = n_classes if class_weight is None else class_weight.sum()  # stays on the device
            # -sum_c w_c log p_c = sum_c w_c (logsumexp(x) - x_c)
            loss += (total_weight * log_total - smooth) * (row_valid * (e / n_classes))
            self.total_weight = total_weight
        self.target, self.row_weight, self.row_valid, self.class_weight = target, row_weight, row_valid, class_weight
        self.label_smoothing = e
        out, self.scale = _reduce_rows(loss, row_weight, reduction)
        self.save_for_backward(x, m, log_total)
        return out

    def backward(self, g: Tensor) -> Tensor:
        x, m, log_total = self.saved_tensors
        e = self.label_smoothing
        # Per row: the coefficients of the target's one-hot, of the spread w_c, and of p.
        t_coef = self.row_weight * (1 - e)
        spread, p_coef = None, t_coef
        if e:
            spread = self.row_valid * (e / x.shape[1])
            p_coef = t_coef + spread * self.total_weight
        return CrossEntropyBackward.apply(g, x, scale=self.scale, target=self.target, t_coef=t_coef, spread=spread,
                                          p_coef=p_coef, class_weight=self.class_weight,
                                          log_p_shift=m.data + log_total.data)


class CrossEntropyBackward(Function):
    """dx_ic = c_i (p_ic a_i - b_i [c = t_i] - s_i w_c): the gradient of ``CrossEntropy``, with c = g * scale
    the upstream gradient of each row's loss, p = softmax(x_i), and per-row coefficients a (of p), b (of the
    target's one-hot) and s (of the class weights' spread; 0 without label smoothing).

    Its own derivatives, for an incoming u (N, C): dx is linear in g, so d/dc_i = a_i sum_c(u p) - b_i u_it -
    s_i sum_c(u w); and only p depends on x: d/dx = softmax's backward applied to u * c a (``SoftmaxBackward``).
    """

    def forward(self, g: Any, x: Any, scale: Any, target: Any, t_coef: Any, spread: Any, p_coef: Any,
                class_weight: Any, log_p_shift: Any) -> Any:
        xp = _xp(x)
        n_rows, n_classes = x.shape
        c = g * scale  # the upstream gradient of each row's loss: a scalar, or one per row
        p_scale = (c * p_coef)[:, None]
        spread_rows = (c * spread)[:, None] if spread is not None else None
        # Compute it in one (N, C) buffer, block by block of rows (log p = x - log_p_shift, per row).
        grad = xp.empty_like(x)
        for b in row_blocks(n_rows, n_classes * x.itemsize, x):
            block = grad[b]
            xp.subtract(x[b], log_p_shift[b, None], out=block)
            xp.exp(block, out=block)  # p
            block *= p_scale[b]
            if spread_rows is not None:
                block -= spread_rows[b] if class_weight is None else spread_rows[b] * class_weight
        grad[xp.arange(n_rows), target] -= c * t_coef
        self.scale, self.target, self.class_weight = scale, target, class_weight
        self.t_coef, self.spread, self.p_coef = t_coef, spread, p_coef
        self.save_for_backward(g, x)
        return grad

    def backward(self, u: Tensor) -> tuple[Tensor | None, Tensor | None]:
        g, x = self.saved_tensors
        p = softmax(x, -1)
        n_rows = x.shape[0]
        dg = dx = None
        if self.needs_input_grad[0]:
            per_row = (u * p).sum(-1) * Tensor._make(self.p_coef) - u[u.xp.arange(n_rows), self.target] * \
                Tensor._make(self.t_coef)
            if self.spread is not None:
                spread_u = u.sum(-1) if self.class_weight is None else matmul(u, Tensor._make(self.class_weight))
                per_row = per_row - spread_u * Tensor._make(self.spread)
            dg = (per_row if g.ndim else per_row.sum()) * Tensor._make(self.scale)
        if self.needs_input_grad[1]:
            c_a = g * Tensor._make(self.scale * self.p_coef)
            dx = SoftmaxBackward.apply(u * reshape(c_a, (n_rows, 1)), p, dim=1)
        return dg, dx


class NLLLoss(Function):
    """loss_i = -w_t x_{i,t}: minus the (weighted) log-probability of the target.
    dloss_i/dx_ic = -w_t [c = t]: the gradient lands on the targets and nowhere else."""

    def forward(self, x: Any, target: Any, row_weight: Any, reduction: str) -> Any:
        loss = x[_xp(x).arange(x.shape[0]), target] * row_weight
        loss = -loss
        self.shape, self.target, self.row_weight = x.shape, target, row_weight
        out, self.scale = _reduce_rows(loss, row_weight, reduction)
        return out

    def backward(self, g: Tensor) -> Tensor:
        per_row = g * Tensor._make(-self.scale * self.row_weight)
        rows = g.xp.arange(self.shape[0])
        return IndexAdd.apply(per_row, shape=self.shape, index=(rows, self.target))


def _reduce_rows(loss: Any, row_weight: Any, reduction: str) -> tuple[Any, Any]:
    """Apply the reduction to per-row losses; also return the factor d(result)/d(row loss) of "mean"/"sum".

    "mean" divides by the total weight of the rows that count (their number, without class weights); when
    none counts the loss is nan, as in PyTorch, but the gradient is 0, not nan: the factor is then 0. The
    factor is a 0-d array on the loss's device (nothing is read back to the host).
    """
    xp = _xp(loss)
    if reduction == "none":
        return loss, xp.ones((), dtype=loss.dtype)
    total = loss.sum()
    if reduction == "sum":
        return total, xp.ones((), dtype=loss.dtype)
    denominator = row_weight.sum()
    none_counts = denominator == 0
    scale = xp.where(none_counts, 0, 1 / xp.where(none_counts, 1, denominator)).astype(loss.dtype)
    return xp.where(none_counts, math.nan, total * scale).astype(loss.dtype), scale


def _check_reduction(op: str, reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _class_targets(op: str, input: Tensor, target: Tensor, weight: Tensor | None,
                   ignore_index: int) -> tuple[Tensor, Any, Any, Any, Any]:
    """Check (..., C) scores against (...) class indices and flatten them to (M, C) and (M,).

    Returns the scores as (M, C), and per row: the class to pick (0 for an ignored row, so that indexing
    stays valid), that class's weight (0 for an ignored row), 1 or 0 for "the row counts", and the class
    weights as an array of the input's dtype (or None).
    """
    if not isinstance(input, Tensor) or not isinstance(target, Tensor):
        raise TypeError(f"{op}: input and target must be Tensors")
    if input.dtype.kind != "f":
        raise TypeError(f"{op}: input must be floating point (class scores), got {input.dtype}")
    if target.dtype.kind not in "iu":
        also = " or class probabilities (a float tensor of the input's shape)" if op == "cross_entropy" else ""
        raise TypeError(f"{op}: target must hold class indices (an integer tensor){also}, got {target.dtype} "
                        f"of shape {tuple(target.shape)} for an input of shape {tuple(input.shape)}")
    if input.ndim == 0 or tuple(target.shape) != tuple(input.shape[:-1]):
        hint = ""
        if input.ndim > 2 and tuple(target.shape) == (input.shape[0],) + tuple(input.shape[2:]):
            order = ", ".join(str(d) for d in (0, *range(2, input.ndim), 1))
            hint = (f". This looks like PyTorch's (N, C, d1, ...) layout; here the classes go last: "
                    f"pass input.permute({order})")
        raise ValueError(f"{op}: input of shape {tuple(input.shape)} (classes in the last dim) needs a target of "
                         f"shape {tuple(input.shape[:-1])}, got {tuple(target.shape)}{hint}")
    if target.device != input.device:
        raise RuntimeError(f"{op}: target is on {target.device} but input is on {input.device}")
    n_classes = input.shape[-1]
    if n_classes == 0:
        raise ValueError(f"{op}: input of shape {tuple(input.shape)} has no classes")
    xp = input.xp
    x = reshape(input, (input.numel() // n_classes, n_classes))
    with on_device_of(input.data):  # the arrays below are made on the input's device
        t = target.data.reshape(-1)
        valid = t != ignore_index
        safe = xp.where(valid, t, 0)
        bad = (safe < 0) | (safe >= n_classes)
        row_valid = valid.astype(input.dtype)
        if isinstance(t, np.ndarray):  # on the CPU the check is free: a clear error
            if bad.any():
                value = int(t[xp.flatnonzero(bad)[0]])
                raise IndexError(f"{op}: target {value} is out of bounds for {n_classes} classes "
                                 f"(and is not ignore_index={ignore_index})")
        else:  # on a device, without a read: pick class 0 instead, and the row's loss and gradient are nan
            safe = xp.where(bad, 0, safe)
            row_valid = xp.where(bad, math.nan, row_valid).astype(input.dtype, copy=False)
        w = _class_weight(op, weight, input, n_classes)
        row_weight = row_valid if w is None else w[safe] * row_valid
    return x, safe, row_weight, row_valid, w


def _class_weight(op: str, weight: Tensor | None, input: Tensor, n_classes: int) -> Any:
    """The per-class weight (C,) as an array in the input's dtype, checked; a constant: no gradient flows to it,
    as in PyTorch. None without a weight."""
    if weight is None:
        return None
    if not isinstance(weight, Tensor) or tuple(weight.shape) != (n_classes,):
        shape = tuple(weight.shape) if isinstance(weight, Tensor) else type(weight).__name__
        raise ValueError(f"{op}: weight must be a tensor of shape ({n_classes},), one per class, got {shape}")
    if weight.device != input.device:
        raise RuntimeError(f"{op}: weight is on {weight.device} but input is on {input.device}")
    return weight.data.astype(input.dtype, copy=False)


def cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None, *, ignore_index: int = -100,
                  reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy between class scores (logits) ``input`` of shape (..., C) and ``target``: class indices of
    shape (...), -log softmax(input)[target], or class probabilities of shape (..., C), -sum target *
    log softmax(input). The target is mixed with the uniform distribution by ``label_smoothing`` and weighted
    per class by ``weight`` (C,); class indices equal to ``ignore_index`` are skipped. Stable for any logits."""
    if _autocast.enabled:
        input, weight = _autocast.to_float32(input, weight)
    _check_reduction("cross_entropy", reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    if isinstance(target, Tensor) and target.dtype.kind == "f":
        return _cross_entropy_with_probabilities(input, target, weight, reduction, float(label_smoothing))
    x, t, row_weight, row_valid, w = _class_targets("cross_entropy", input, target, weight, ignore_index)
    loss = CrossEntropy.apply(x, target=t, row_weight=row_weight, row_valid=row_valid, class_weight=w,
                              reduction=reduction, label_smoothing=float(label_smoothing))
    return reshape(loss, target.shape) if reduction == "none" else loss


def _cross_entropy_with_probabilities(input: Tensor, target: Tensor, weight: Tensor | None, reduction: str,
                                      label_smoothing: float) -> Tensor:
    """loss_i = -sum_c w_c q_ic log softmax(input_i)_c with q = (1 - e) target + e / C; "mean" averages the rows."""
    op = "cross_entropy"
    if not isinstance(input, Tensor) or input.dtype.kind != "f":
        raise TypeError(f"{op}: input must be a floating-point tensor (class scores), got "
                        f"{getattr(input, 'dtype', type(input).__name__)}")
    if input.ndim == 0 or tuple(target.shape) != tuple(input.shape):
        raise ValueError(f"{op}: a class-probability target (a float tensor) must have the input's shape "
                         f"{tuple(input.shape)} (classes in the last dim), got {tuple(target.shape)}; "
                         "class indices are an integer tensor")
    if target.dtype != input.dtype:
        raise TypeError(f"{op}: the class-probability target is {target.dtype} but the input is {input.dtype}")
    if target.device != input.device:
        raise RuntimeError(f"{op}: target is on {target.device} but input is on {input.device}")
    n_classes = input.shape[-1]
    if n_classes == 0:
        raise ValueError(f"{op}: input of shape {tuple(input.shape)} has no classes")
    q = target if not label_smoothing else target * (1 - label_smoothing) + label_smoothing / n_classes
    w = _class_weight(op, weight, input, n_classes)
    if w is not None:
        q = q * Tensor._make(w)
    loss = -(log_softmax(input, -1) * q).sum(-1)
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.mean()


def nll_loss(input: Tensor, target: Tensor, weight: Tensor | None = None, *, ignore_index: int = -100,
             reduction: str = "mean") -> Tensor:
    """Negative log-likelihood: -input[..., target] for log-probabilities ``input`` (..., C) and class indices
    ``target`` (...). ``cross_entropy(x, t)`` equals ``nll_loss(log_softmax(x), t)``, faster."""
    _check_reduction("nll_loss", reduction)
    x, t, row_weight, _, _ = _class_targets("nll_loss", input, target, weight, ignore_index)
    loss = NLLLoss.apply(x, target=t, row_weight=row_weight, reduction=reduction)
    return reshape(loss, target.shape) if reduction == "none" else loss


def mse_loss(input: Tensor, target: Tensor, *, reduction: str = "mean") -> Tensor:
    """Mean squared error, (input - target)^2 averaged (or summed) over all elements.
    d/d input = 2 (input - target) / N for "mean". Composed of primitive ops."""
    _check_reduction("mse_loss", reduction)
    if not isinstance(target, Tensor):
        raise TypeError(f"mse_loss: target must be a Tensor, got {type(target).__name__}")
    if tuple(input.shape) != tuple(target.shape):
        shape = broadcast_shape(input.shape, target.shape, op="mse_loss")
        warnings.warn(f"mse_loss: target shape {tuple(target.shape)} differs from input shape "
                      f"{tuple(input.shape)}; they are broadcast to {shape}, which is rarely intended", stacklevel=2)
    diff = input - target
    squared = diff * diff
    if reduction == "none":
        return squared
    return squared.sum() if reduction == "sum" else squared.mean()
