"""``MultiheadAttention``: h heads of scaled dot-product attention side by side (Vaswani et al., 2017, 3.2).

    head_i = softmax(Q_i K_i^T / sqrt(d_head) + mask) V_i,   Q_i = query W_q^i,  K_i = key W_k^i,  V_i = value W_v^i
    output = concat(head_1, ..., head_h) W_o

The h projections of size d_head = embed_dim / h are one (embed_dim x embed_dim) matrix each for Q, K and
V, stored stacked as ``in_proj_weight`` (3 embed_dim x embed_dim), exactly as PyTorch stores them. For
self-attention (``query is key is value``) Q, K and V come from one matrix multiply with that stacked
matrix; for cross-attention with ``key is value``, K and V share one.

Masks follow ``torch.nn.MultiheadAttention``: a boolean mask is True where attention is NOT allowed, a
float mask is added to the scores (-inf forbids). ``F.scaled_dot_product_attention`` uses the opposite
boolean convention (True = may attend); ``_merge_masks`` is the one place where one becomes the other.
"""

from __future__ import annotations

import math
from typing import Any

from .. import functional as F
from ..creation import empty
from ..tensor import Tensor
from . import init
from .linear import Linear
from .module import Module
from .parameter import Parameter


class MultiheadAttention(Module):
    """Multi-head attention with PyTorch's signature, parameter names and mask conventions.

    Shapes (``batch_first=False``, PyTorch's default): query (L, N, E), key (S, N, kdim), value (S, N, vdim)
    -> output (L, N, E); with ``batch_first=True`` the batch comes first: (N, L, E). Unbatched inputs
    (L, E) are accepted too. L is the target (query) length, S the source (key) length.

    ``forward`` returns ``(attn_output, attn_weights)``; the weights are (N, L, S) averaged over heads
    (``average_attn_weights=True``), (N, num_heads, L, S) per head, or None when ``need_weights=False``
    (the faster path, through ``F.scaled_dot_product_attention``). ``dropout`` is applied to the
    attention weights in training mode.

    A query whose every key is masked (a fully padded row) gets all-zero attention weights and a zero
    attention result (so its output is just ``out_proj``'s bias), never NaN, as in PyTorch 2.5+.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False, kdim: int | None = None,
                 vdim: int | None = None, batch_first: bool = False, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(f"MultiheadAttention: embed_dim ({embed_dim}) and num_heads ({num_heads}) must be "
                             "positive")
        if embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim ({embed_dim}) must be divisible by num_heads "
                             f"({num_heads})")
        if add_bias_kv or add_zero_attn:
            raise NotImplementedError("MultiheadAttention: add_bias_kv and add_zero_attn are not supported")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"MultiheadAttention: dropout must be in [0, 1], got {dropout}")
        self.embed_dim, self.num_heads, self.dropout, self.batch_first = embed_dim, num_heads, dropout, batch_first
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.head_dim = embed_dim // num_heads
        self.bias_k = self.bias_v = None
        self.add_zero_attn = False

        def weight(*shape: int) -> Parameter:
            return Parameter(empty(*shape, device=device, dtype=dtype))

        if self._qkv_same_embed_dim:
            self.in_proj_weight = weight(3 * embed_dim, embed_dim)
            for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                self.register_parameter(name, None)
        else:
            self.q_proj_weight = weight(embed_dim, embed_dim)
            self.k_proj_weight = weight(embed_dim, self.kdim)
            self.v_proj_weight = weight(embed_dim, self.vdim)
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = weight(3 * embed_dim)
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, device=device, dtype=dtype)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        """PyTorch's initialisation: Xavier-uniform projections, zero input and output biases."""
        if self._qkv_same_embed_dim:
            init.xavier_uniform_(self.in_proj_weight)
        else:
            for w in (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
                init.xavier_uniform_(w)
        if self.in_proj_bias is not None:
            init.zeros_(self.in_proj_bias)
            init.zeros_(self.out_proj.bias)

    def extra_repr(self) -> str:
        s = f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}"
        if not self._qkv_same_embed_dim:
            s += f", kdim={self.kdim}, vdim={self.vdim}"
        return s + f", bias={self.in_proj_bias is not None}, batch_first={self.batch_first}"

    # ---- forward ---------------------------------------------------------------------------------------
    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None = None,
                need_weights: bool = True, attn_mask: Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[Tensor, Tensor | None]:
        """Attend from ``query`` to ``key``/``value``.

        ``key_padding_mask`` (N, S): True (or -inf) marks padding keys that no query may attend to.
        ``attn_mask`` (L, S) or (N * num_heads, L, S): True (or -inf) where query i may not attend to key j;
        float values are added to the scores. ``is_causal=True`` without ``attn_mask`` applies the causal
        mask (query i sees keys j <= i); with an ``attn_mask`` it is only a hint, as in PyTorch, and the
        given mask is used.
        """
        same_qkv = query is key and key is value  # decided before any reshaping changes the objects
        same_kv = key is value
        batched = self._check_inputs(query, key, value)
        seq_first = batched and not self.batch_first
        if not batched:  # (L, E) -> (1, L, E)
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
            if key_padding_mask is not None and key_padding_mask.ndim == 1:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        n, tgt_len = (query.shape[1], query.shape[0]) if seq_first else (query.shape[0], query.shape[1])
        src_len = key.shape[0] if seq_first else key.shape[1]

        q, k, v = self._in_projection(query, key, value, same_qkv, same_kv)
        q, k, v = (self._split_heads(t, seq_first) for t in (q, k, v))  # (N, H, T, d_head)

        mask, causal = _merge_masks(attn_mask, key_padding_mask, is_causal, n, self.num_heads, tgt_len, src_len, q)
        dropout_p = self.dropout if self.training else 0.0  # on the attention weights
        result = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=causal,
                                                need_weights=need_weights)
        out, weights = result if need_weights else (result, None)

        # (N, H, L, d_head) -> (L, N, E) or (N, L, E)
        out = out.permute(2, 0, 1, 3) if seq_first else out.permute(0, 2, 1, 3)
        out = self.out_proj(out.reshape(out.shape[0], out.shape[1], self.embed_dim))
        if weights is not None and average_attn_weights:
            weights = weights.mean(1)
        if not batched:
            out = out.squeeze(0)
            weights = weights.squeeze(0) if weights is not None else None
        return out, weights

    def _check_inputs(self, query: Tensor, key: Tensor, value: Tensor) -> bool:
        """Validate shapes; True for batched (3-D) inputs, False for unbatched (2-D) ones."""
        shapes = f"query {tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)}"
        if query.ndim not in (2, 3) or key.ndim != query.ndim or value.ndim != query.ndim:
            raise ValueError(f"MultiheadAttention: expected query, key and value all 3-D (batched) or all 2-D "
                             f"(unbatched), got {shapes}")
        for name, t, dim in (("query", query, self.embed_dim), ("key", key, self.kdim), ("value", value, self.vdim)):
            if t.shape[-1] != dim:
                raise ValueError(f"MultiheadAttention: {name} must have {dim} features in its last dim, got {shapes}")
        if key.shape[:-1] != value.shape[:-1]:
            raise ValueError(f"MultiheadAttention: key and value must have the same batch and length, got {shapes}")
        if query.ndim == 3:
            batch_dim = 0 if self.batch_first else 1
            if query.shape[batch_dim] != key.shape[batch_dim]:
                raise ValueError(f"MultiheadAttention: query and key have different batch sizes "
                                 f"(batch_first={self.batch_first}): {shapes}")
        return query.ndim == 3

    def _in_projection(self, query: Tensor, key: Tensor, value: Tensor, same_qkv: bool,
                       same_kv: bool) -> tuple[Tensor, Tensor, Tensor]:
        """Q, K, V = query W_q^T + b_q, key W_k^T + b_k, value W_v^T + b_v, sharing matrix multiplies
        where the inputs are the same tensor."""
        e, b, w = self.embed_dim, self.in_proj_bias, self.in_proj_weight
        if self._qkv_same_embed_dim and same_qkv:  # self-attention: one (3E x E) matrix multiply
            q, k, v = F.linear(query, w, b).chunk(3, dim=-1)
            return q, k, v
        bq, bk, bv = (b[:e], b[e:2 * e], b[2 * e:]) if b is not None else (None, None, None)
        if not self._qkv_same_embed_dim:
            return (F.linear(query, self.q_proj_weight, bq), F.linear(key, self.k_proj_weight, bk),
                    F.linear(value, self.v_proj_weight, bv))
        q = F.linear(query, w[:e], bq)
        if same_kv:  # cross-attention: one (2E x E) matrix multiply for K and V
            k, v = F.linear(key, w[e:], b[e:] if b is not None else None).chunk(2, dim=-1)
            return q, k, v
        return q, F.linear(key, w[e:2 * e], bk), F.linear(value, w[2 * e:], bv)

    def _split_heads(self, x: Tensor, seq_first: bool) -> Tensor:
        """(T, N, E) or (N, T, E) -> (N, num_heads, T, head_dim)."""
        a, b = x.shape[0], x.shape[1]
        x = x.reshape(a, b, self.num_heads, self.head_dim)
        return x.permute(1, 2, 0, 3) if seq_first else x.permute(0, 2, 1, 3)


def _as_mask(mask: Tensor, name: str, like: Tensor) -> Tensor:
    """A boolean mask stays boolean; integer (byte) masks become boolean; float masks take q's dtype."""
    if not isinstance(mask, Tensor):
        raise TypeError(f"MultiheadAttention: {name} must be a Tensor, got {type(mask).__name__}")
    if mask.device != like.device:
        raise RuntimeError(f"MultiheadAttention: {name} is on {mask.device} but the inputs are on {like.device}")
    if mask.dtype.kind in "iu":
        return mask != 0
    if mask.dtype.kind == "f" and mask.dtype != like.dtype:
        return mask.to(like.dtype)
    return mask


def _merge_masks(attn_mask: Tensor | None, key_padding_mask: Tensor | None, is_causal: bool, n: int, heads: int,
                 tgt_len: int, src_len: int, q: Tensor) -> tuple[Tensor | None, bool]:
    """Turn PyTorch's ``attn_mask`` and ``key_padding_mask`` (bool True = NOT allowed, or float added) into
    the one mask ``F.scaled_dot_product_attention`` takes (bool True = may attend, or float added),
    broadcastable to (N, H, L, S). Also returns whether to pass ``is_causal`` on: only when there is no
    other mask (the function takes one or the other); otherwise the causal mask is folded in here.
    ``is_causal`` with an ``attn_mask`` is only a hint, as in PyTorch: the given mask is used.
    """
    masks = []
    if attn_mask is not None:
        m = _as_mask(attn_mask, "attn_mask", q)
        if m.ndim == 2:
            if tuple(m.shape) != (tgt_len, src_len):
                raise ValueError(f"MultiheadAttention: 2-D attn_mask must have shape (L, S) = ({tgt_len}, "
                                 f"{src_len}), got {tuple(m.shape)}")
        elif m.ndim == 3:
            if tuple(m.shape) != (n * heads, tgt_len, src_len):
                raise ValueError(f"MultiheadAttention: 3-D attn_mask must have shape (N * num_heads, L, S) = "
                                 f"({n * heads}, {tgt_len}, {src_len}), got {tuple(m.shape)}")
            m = m.reshape(n, heads, tgt_len, src_len)
        else:
            raise ValueError(f"MultiheadAttention: attn_mask must be 2-D or 3-D, got shape {tuple(m.shape)}")
        masks.append(m)
    if key_padding_mask is not None:
        m = _as_mask(key_padding_mask, "key_padding_mask", q)
        if tuple(m.shape) != (n, src_len):
            raise ValueError(f"MultiheadAttention: key_padding_mask must have shape (N, S) = ({n}, {src_len}), "
                             f"got {tuple(m.shape)}")
        masks.append(m.reshape(n, 1, 1, src_len))
    if not masks:
        return None, is_causal
    if is_causal and attn_mask is None:  # query i may not see keys j > i
        masks.append(Tensor._make(q.xp.triu(q.xp.ones((tgt_len, src_len), dtype=bool), 1)))
    if all(m.dtype.kind == "b" for m in masks):  # stay boolean: allowed = not any of the "forbidden" masks
        allowed = ~masks[0]
        for m in masks[1:]:
            allowed = allowed & ~m
        return allowed, False
    total = None  # some mask is float: add them all, a boolean True becoming -inf
    for m in masks:
        term = m if m.dtype.kind == "f" else Tensor._make(q.xp.where(m.data, -math.inf, 0.0).astype(q.dtype))
        total = term if total is None else total + term
    return total, False
