"""Scaled dot-product attention as one fused op (re-exported by ``functional``; the layer built on it,
``nn.MultiheadAttention``, lives in ``nn/attention.py``). It is equation (1) of "Attention Is All You Need":

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V

with d_k the queries' and keys' feature size, generalised to a mask, another scale, and dropout:

    S = Q K^T * scale + mask        P = softmax(S) over the keys        O = dropout(P) V

Shapes: Q (..., L, E), K (..., S, E), V (..., S, Ev) -> O (..., L, Ev); the leading dims broadcast.

Written as a chain of primitive ops, attention keeps several (..., L, S) arrays alive for backward: the
scores, the scaled and masked scores, the probabilities, the dropped-out probabilities. The fused op
keeps Q, K, V, P and (with dropout) its mask, and derives the rest in backward, with G = dL/dO:

    dV = P^T G        dP = G V^T        dS = P * (dP - rowsum(dP * P))
    dQ = dS K * scale                   dK = dS^T Q * scale

(with dropout, P in dV is the dropped-out P, and dP passes back through the same mask). Each is written once:
the products are matmuls, dS is ``SoftmaxBackward``, and P enters them as the output of ``AttentionWeights``,
so that a recorded backward (``create_graph``) differentiates through P to Q, K and the mask.

Masks follow PyTorch's ``scaled_dot_product_attention``: a boolean ``attn_mask`` is True where a query
*may* attend; a float mask is added to the scores (-inf forbids; a learned bias gets a gradient);
``is_causal`` lets query i see keys 0..i. A query that may attend nowhere gets zeros, not NaN, in the
output and in every gradient.

``attention_weights`` returns P itself (differentiable), for ``need_weights=True`` and for plots.

Float16 q, k, v (under ``ta.amp.autocast``) keep the softmax in float32, as autocast does for every softmax:
the products run in float16, S and P are float32 (P is cast to float16 only to multiply V), and so is the
softmax backward dS. P itself (``attention_weights``) is float32 then.
"""

from __future__ import annotations

import math
from typing import Any

from . import cuda_kernels
from .amp import autocast_mode as _autocast
from .autograd import Function
from .backend import array_module as _xp
from .ops.elementwise import cast
from .ops.linalg import array_matmul, matmul
from .ops.reduce import sum_to
from .ops.shapes import broadcast_shape
from .random import dropout_mask
from .softmax import SoftmaxBackward
from .tensor import Tensor


def _probabilities(q: Any, k: Any, mask: Any, is_causal: bool, scale: float) -> Any:
    """P = softmax(q k^T * scale + mask) on raw arrays, computed in place in one (..., L, S) buffer.

    For float16 q and k (autocast) the product runs in float16 on (q * scale) -- scaled first, so that scores
    which fit float16 do not overflow it on the way -- and the softmax in float32: P is float32."""
    xp = _xp(q)
    if q.dtype.itemsize < 4:
        s = array_matmul(q * q.dtype.type(scale), xp.swapaxes(k, -1, -2)).astype(xp.float32)
    else:
        s = array_matmul(q, xp.swapaxes(k, -1, -2))
        s *= scale
    if mask is not None:
        if mask.dtype == bool:
            xp.copyto(s, -math.inf, where=~mask)
        else:
            s += mask
    if is_causal:
        xp.copyto(s, -math.inf, where=~_causal(xp, *s.shape[-2:]))
    if s.shape[-1] == 0:  # no keys: nothing to attend to, the output is zeros (as PyTorch's)
        return s
    if cuda_kernels.fused(s):  # the same softmax, one GPU kernel
        return cuda_kernels.masked_softmax_(s)
    m = s.max(axis=-1, keepdims=True)
    xp.copyto(m, 0, where=~xp.isfinite(m))  # a row that may attend nowhere stays at -inf, not nan...
    s -= m
    xp.exp(s, out=s)
    total = s.sum(axis=-1, keepdims=True)
    xp.copyto(total, 1, where=total == 0)  # ...and its probabilities are 0 / 1 = 0
    s /= total
    return s


def _causal(xp: Any, n_queries: int, n_keys: int) -> Any:
    """True where query i may see key j: j <= i (the lower triangle, aligned top-left, as PyTorch)."""
    return xp.tril(xp.ones((n_queries, n_keys), dtype=bool))


def _score_grads(fn: _AttentionFunction, dP: Tensor, P: Tensor, q: Tensor, k: Tensor,
                 mask: Tensor | None) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """From dL/dP to dL/dq, dL/dk and dL/d(float mask): the softmax backward dS = P * (dP - rowsum(dP * P))
    (``SoftmaxBackward``), then the two products of S = q k^T * scale."""
    need_q, need_k = fn.needs_input_grad[0], fn.needs_input_grad[1]
    need_mask = mask is not None and mask.dtype.kind == "f" and fn.needs_input_grad[fn.mask_index]
    dS = SoftmaxBackward.apply(_as_dtype(dP, P.dtype), P, dim=P.ndim - 1)  # float32 for float16 q, k
    dS_low = _as_dtype(dS, q.dtype)
    dq = sum_to(matmul(dS_low, k) * fn.scale, q.shape) if need_q else None
    dk = sum_to(matmul(dS_low.mT, q) * fn.scale, k.shape) if need_k else None
    dmask = sum_to(_as_dtype(dS, mask.dtype), mask.shape) if need_mask and mask is not None else None
    return dq, dk, dmask


def _as_dtype(x: Tensor, dtype: Any) -> Tensor:
    """x in ``dtype`` (a differentiable cast only where the dtypes differ)."""
    return x if x.dtype == dtype else x.to(dtype)


class _AttentionFunction(Function):
    """What the two attention ops share: the options, and unpacking what forward saved."""

    def setup(self, has_mask: bool, is_causal: bool, scale: float, dropout_p: float, mask_index: int) -> None:
        self.has_mask, self.is_causal, self.scale, self.dropout_p = has_mask, is_causal, scale, dropout_p
        self.mask_index = mask_index

    def dropped(self, P: Any) -> tuple[Any, tuple[Any, ...]]:
        """P after dropout, on arrays (forward), and the dropout mask to save: () without dropout."""
        if self.dropout_p == 0:
            return P, ()
        mask = dropout_mask(P.shape, self.dropout_p, P)
        return P * mask, (mask,)

    def unpack(self, n_inputs: int) -> tuple[list[Tensor], Tensor | None, Tensor, Tensor | None]:
        """(tensor inputs without the mask, the mask, P, the dropout mask). P is the saved array wrapped by
        ``AttentionWeights`` (no dropout, nothing recomputed): a node through which, when backward is being
        recorded, the second derivative reaches q, k and a float mask."""
        saved = self.saved_tensors
        inputs, mask = list(saved[:n_inputs]), saved[n_inputs] if self.has_mask else None
        P = AttentionWeights.apply(inputs[0], inputs[1], *(() if mask is None else (mask,)), is_causal=self.is_causal,
                                   scale=self.scale, dropout_p=0.0, probabilities=saved[n_inputs + self.has_mask].data)
        drop_mask = saved[-1] if self.dropout_p else None
        return inputs, mask, P, drop_mask

    def needs_score_grads(self) -> bool:
        """Does any input upstream of the scores (q, k, a float mask) want a gradient?"""
        need_mask = self.has_mask and self.needs_input_grad[self.mask_index]
        return self.needs_input_grad[0] or self.needs_input_grad[1] or need_mask

    def through_dropout(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """x * mask in Tensor ops (dropout is linear: forward and backward alike)."""
        return x if mask is None else x * mask


class ScaledDotProductAttention(_AttentionFunction):
    """O = dropout(softmax(q k^T * scale + mask)) v: Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V (equation (1)
    of the paper) with scale = 1 / sqrt(d_k), no mask and no dropout.   Backward: the module docstring's formulas."""

    def forward(self, q: Any, k: Any, v: Any, *mask: Any, is_causal: bool, scale: float, dropout_p: float) -> Any:
        self.setup(bool(mask), is_causal, scale, dropout_p, mask_index=3)
        P = _probabilities(q, k, mask[0] if mask else None, is_causal, scale)
        weights, drop_mask = self.dropped(P)
        out = array_matmul(weights.astype(v.dtype, copy=False), v)
        self.save_for_backward(q, k, v, *mask, P, *drop_mask)
        return out

    def backward(self, g: Tensor) -> tuple[Tensor | None, ...]:
        (q, k, v), mask, P, drop_mask = self.unpack(3)
        dv = sum_to(matmul(_as_dtype(self.through_dropout(P, drop_mask), g.dtype).mT, g), v.shape) \
            if self.needs_input_grad[2] else None
        dq = dk = dmask = None
        if self.needs_score_grads():
            dP = self.through_dropout(matmul(g, v.mT), drop_mask)
            dq, dk, dmask = _score_grads(self, dP, P, q, k, mask)
        return (dq, dk, dv) + ((dmask,) if self.has_mask else ())


class AttentionWeights(_AttentionFunction):
    """W = dropout(softmax(q k^T * scale + mask)), the weights that multiply v.   dL/dS = P * (dP - rowsum(dP * P))
    with dP = dL/dW passed back through the dropout mask; then dq and dk as in ScaledDotProductAttention.

    ``probabilities``: P when the caller already has it (a backward wrapping the P its forward saved)."""

    def forward(self, q: Any, k: Any, *mask: Any, is_causal: bool, scale: float, dropout_p: float,
                probabilities: Any = None) -> Any:
        self.setup(bool(mask), is_causal, scale, dropout_p, mask_index=2)
        P = probabilities if probabilities is not None else \
            _probabilities(q, k, mask[0] if mask else None, is_causal, scale)
        weights, drop_mask = self.dropped(P)
        self.save_for_backward(q, k, *mask, P, *drop_mask)
        return weights

    def backward(self, g: Tensor) -> tuple[Tensor | None, ...]:
        (q, k), mask, P, drop_mask = self.unpack(2)
        dq, dk, dmask = _score_grads(self, self.through_dropout(g, drop_mask), P, q, k, mask)
        return (dq, dk) + ((dmask,) if self.has_mask else ())


def _check(query: Tensor, key: Tensor, value: Tensor | None, attn_mask: Tensor | None, dropout_p: float,
           is_causal: bool, scale: float | None) -> tuple[tuple[Tensor, ...], float]:
    """Validate the arguments; return the mask as a 0- or 1-tuple (cast to the query's dtype if float) and
    the scale."""
    op = "scaled_dot_product_attention"
    tensors = [("query", query), ("key", key)] + ([("value", value)] if value is not None else [])
    for name, t in tensors:
        if not isinstance(t, Tensor) or t.ndim < 2:
            shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"{op}: {name} must be a tensor of at least 2 dims (..., length, features), got {shape}")
        if t.dtype != query.dtype or t.dtype.kind != "f":
            raise TypeError(f"{op}: query, key and value must share one floating dtype, got "
                            + ", ".join(f"{n} {x.dtype}" for n, x in tensors))
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(f"{op}: query (..., L, E) and key (..., S, E) must have the same E, got shapes "
                         f"{tuple(query.shape)} and {tuple(key.shape)}")
    if value is not None and key.shape[-2] != value.shape[-2]:
        raise ValueError(f"{op}: key (..., S, E) and value (..., S, Ev) must have the same S, got shapes "
                         f"{tuple(key.shape)} and {tuple(value.shape)}")
    batch = broadcast_shape(*(t.shape[:-2] for _, t in tensors), op=f"{op} (batch dims of query, key, value)")
    if not 0.0 <= dropout_p <= 1.0:
        raise ValueError(f"{op}: dropout_p must be in [0, 1], got {dropout_p}")
    mask: tuple[Tensor, ...] = ()
    if attn_mask is not None:
        if is_causal:
            raise ValueError(f"{op}: pass either attn_mask or is_causal=True, not both "
                             "(combine them into one mask yourself)")
        if not isinstance(attn_mask, Tensor) or attn_mask.dtype.kind not in "bf":
            raise TypeError(f"{op}: attn_mask must be a bool tensor (True = may attend) or a float tensor added "
                            f"to the scores, got {getattr(attn_mask, 'dtype', type(attn_mask).__name__)}")
        scores = batch + (query.shape[-2], key.shape[-2])
        if broadcast_shape(scores, attn_mask.shape, op=f"{op} (attn_mask vs scores (..., L, S))") != scores:
            raise ValueError(f"{op}: attn_mask of shape {tuple(attn_mask.shape)} must broadcast to the scores' "
                             f"shape {scores}, not enlarge it")
        if attn_mask.device != query.device:
            raise RuntimeError(f"{op}: attn_mask is on {attn_mask.device} but query is on {query.device}")
        mask = (attn_mask if attn_mask.dtype.kind == "b" else cast(attn_mask, query.dtype),)
    return mask, (1.0 / math.sqrt(query.shape[-1]) if scale is None else float(scale))


def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None,
                                 dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None, *,
                                 need_weights: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """softmax(query key^T * scale + mask) value, fused; ``scale`` defaults to 1/sqrt(E), which makes it the
    paper's equation (1), Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V, when no mask is given.

    ``attn_mask``: bool (True = may attend) or float (added to the scores), broadcastable to (..., L, S).
    ``dropout_p`` is applied to the attention probabilities whenever it is > 0 (pass 0 in evaluation, as
    with PyTorch). With ``need_weights=True`` returns ``(output, weights)``, the weights (..., L, S) being
    those that multiplied ``value`` (after dropout) and differentiable; that path keeps one more
    (..., L, S) array for backward than the fused one.
    """
    if _autocast.enabled:
        query, key, value = _autocast.to_lower(query, key, value)
    mask, scale = _check(query, key, value, attn_mask, dropout_p, is_causal, scale)
    options = dict(is_causal=bool(is_causal), scale=scale, dropout_p=float(dropout_p))
    if need_weights:
        weights = AttentionWeights.apply(query, key, *mask, **options)  # float32 for float16 query and key
        return matmul(_as_dtype(weights, value.dtype), value), weights
    return ScaledDotProductAttention.apply(query, key, value, *mask, **options)


def attention_weights(query: Tensor, key: Tensor, attn_mask: Tensor | None = None, dropout_p: float = 0.0,
                      is_causal: bool = False, scale: float | None = None) -> Tensor:
    """The attention probabilities dropout(softmax(query key^T * scale + mask)), shape (..., L, S): what
    ``scaled_dot_product_attention`` multiplies ``value`` by. Each row sums to 1 (0 for a row that may attend
    nowhere) before dropout. Differentiable; for ``need_weights`` and for plotting."""
    if _autocast.enabled:
        query, key = _autocast.to_lower(query, key)
    mask, scale = _check(query, key, None, attn_mask, dropout_p, is_causal, scale)
    return AttentionWeights.apply(query, key, *mask, is_causal=bool(is_causal), scale=scale,
                                  dropout_p=float(dropout_p))
