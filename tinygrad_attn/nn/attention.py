"""``MultiheadAttention``: h heads of scaled dot-product attention side by side (Vaswani et al., 2017, 3.2).

    head_i = softmax(Q_i K_i^T / sqrt(d_head) + mask) V_i,   Q_i = query W_q^i,  K_i = key W_k^i,  V_i = value W_v^i
    output = concat(head_1, ..., head_h) W_o

The h projections of size d_head = embed_dim / h are one (embed_dim x embed_dim) matrix each for Q, K and
V, stored stacked as ``in_proj_weight`` (3 embed_dim x embed_dim), exactly as PyTorch stores them: rows
[0, E) are W_q, [E, 2E) W_k, [2E, 3E) W_v, and within each, rows [i d_head, (i + 1) d_head) are head i's.
For self-attention (``query is key is value``) Q, K and V come from one matrix multiply with that stacked
matrix; for cross-attention with ``key is value``, K and V share one (its rows [E, 3E)).

Incremental decoding: ``forward(..., cache=KVCache())`` (``nn.kv_cache``) keeps the keys and values of
earlier calls, so each call projects only its new positions (self-attention) or nothing but the queries
(cross-attention over a fixed memory, ``KVCache(static=True)``).

Masks follow ``torch.nn.MultiheadAttention``: a boolean mask is True where attention is NOT allowed, a
float mask is added to the scores (-inf forbids). ``F.scaled_dot_product_attention`` uses the opposite
boolean convention (True = may attend); ``_merge_masks`` is the one place where one becomes the other.
"""

from __future__ import annotations

import math
from typing import Any

from .. import functional as F
from ..autograd import is_grad_enabled
from ..creation import empty
from ..tensor import Tensor
from . import init
from .kv_cache import KVCache
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
                is_causal: bool = False, *, cache: KVCache | None = None) -> tuple[Tensor, Tensor | None]:
        """Attend from ``query`` to ``key``/``value``.

        ``key_padding_mask`` (N, S): True (or -inf) marks padding keys that no query may attend to.
        ``attn_mask`` (L, S) or (N * num_heads, L, S): True (or -inf) where query i may not attend to key j;
        float values are added to the scores. ``is_causal=True`` without ``attn_mask`` applies the causal
        mask (query i sees keys j <= i); with an ``attn_mask`` it is only a hint, as in PyTorch, and the
        given mask is used.

        ``cache`` (inference only, under ``ta.no_grad()``): a growing ``KVCache`` gets the new positions'
        keys and values appended, and the queries attend to every position cached so far (S counts them
        all, for the masks); with ``is_causal`` the queries are the positions after the cached ones. A
        static ``KVCache`` is filled on its first call and then used instead of ``key``/``value``.
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

        past = 0  # positions already in a growing cache: the new queries come after them
        if cache is None:
            q, k, v = self._in_projection(query, key, value, same_qkv, same_kv, seq_first)  # (N, H, T, d_head)
        else:
            self._check_cache(cache, n)
            if cache.static and cache.filled:  # the keys and values of a fixed memory, projected before
                (q,) = self._heads(self._project(query, 0, 1), 1, seq_first)
                k, v = cache.keys_values()
            else:
                past = 0 if cache.static else cache.length
                q, k, v = self._in_projection(query, key, value, same_qkv, same_kv, seq_first)
                k, v = cache.update(k, v)  # every position so far: (N, H, past + S_new, d_head)
        src_len = k.shape[2]
        if past and is_causal and attn_mask is None:  # query i is position past + i: it sees keys j <= past + i
            is_causal = False
            if tgt_len > 1:
                attn_mask = Tensor._make(q.xp.triu(q.xp.ones((tgt_len, src_len), dtype=bool), past + 1))

        mask, causal = _merge_masks(attn_mask, key_padding_mask, is_causal, n, self.num_heads, tgt_len, src_len, q)
        dropout_p = self.dropout if self.training else 0.0  # on the attention weights
        result = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=causal,
                                                need_weights=need_weights)
        out, weights = result if isinstance(result, tuple) else (result, None)

        # concat(head_1, ..., head_h): (N, H, L, d_head) -> (L, N, H, d_head) or (N, L, H, d_head) -> (., ., E)
        out = out.permute(2, 0, 1, 3) if seq_first else out.permute(0, 2, 1, 3)
        out = self.out_proj(out.reshape(out.shape[0], out.shape[1], self.embed_dim))
        if weights is not None and average_attn_weights:
            weights = weights.mean(1)
        if not batched:
            out = out.squeeze(0)
            weights = weights.squeeze(0) if weights is not None else None
        return out, weights

    def key_value(self, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
        """The keys and values (N, H, S, d_head) that attending to ``key``/``value`` uses: what a static
        ``KVCache`` holds. ``cache.update(*attn.key_value(memory, memory))`` fills one ahead of decoding."""
        if key.ndim not in (2, 3) or value.ndim != key.ndim or key.shape[:-1] != value.shape[:-1]:
            raise ValueError(f"MultiheadAttention.key_value: expected key and value of the same batch and length, "
                             f"got {tuple(key.shape)} and {tuple(value.shape)}")
        seq_first = key.ndim == 3 and not self.batch_first
        same_kv = key is value
        if key.ndim == 2:  # (S, E) -> (1, S, E)
            key, value = key.unsqueeze(0), value.unsqueeze(0)
        return self._key_value(key, value, same_kv, seq_first)

    def _check_inputs(self, query: Tensor, key: Tensor, value: Tensor) -> bool:
        """Validate shapes; True for batched (3-D) inputs, False for unbatched (2-D) ones."""
        def shapes() -> str:
            return f"query {tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)}"

        if query.ndim not in (2, 3) or key.ndim != query.ndim or value.ndim != query.ndim:
            raise ValueError(f"MultiheadAttention: expected query, key and value all 3-D (batched) or all 2-D "
                             f"(unbatched), got {shapes()}")
        for name, t, dim in (("query", query, self.embed_dim), ("key", key, self.kdim), ("value", value, self.vdim)):
            if t.shape[-1] != dim:
                raise ValueError(f"MultiheadAttention: {name} must have {dim} features in its last dim, got "
                                 f"{shapes()}")
        if key.shape[:-1] != value.shape[:-1]:
            raise ValueError(f"MultiheadAttention: key and value must have the same batch and length, got {shapes()}")
        if query.ndim == 3:
            batch_dim = 0 if self.batch_first else 1
            if query.shape[batch_dim] != key.shape[batch_dim]:
                raise ValueError(f"MultiheadAttention: query and key have different batch sizes "
                                 f"(batch_first={self.batch_first}): {shapes()}")
        return query.ndim == 3

    def _check_cache(self, cache: KVCache, n: int) -> None:
        if not isinstance(cache, KVCache):
            raise TypeError(f"MultiheadAttention: cache must be a KVCache, got {type(cache).__name__}")
        if is_grad_enabled() and any(p.requires_grad for p in self.parameters()):
            raise RuntimeError("MultiheadAttention: a KVCache holds plain arrays, outside autograd: it is for "
                               "inference; run under ta.no_grad()")
        if cache.filled and (cache.k.shape[0] != n or cache.k.shape[1] != self.num_heads
                             or cache.k.shape[3] != self.head_dim):
            raise ValueError(f"MultiheadAttention: the cache holds keys of shape (N, H, S, d_head) = "
                             f"{(cache.k.shape[0], cache.k.shape[1], cache.length, cache.k.shape[3])}, but this call "
                             f"has N = {n}, H = {self.num_heads}, d_head = {self.head_dim}")

    def _project(self, x: Tensor, first: int, count: int) -> Tensor:
        """x W^T + b with the ``count`` stacked projections of ``in_proj_weight`` from number ``first`` on
        (0: W_q, 1: W_k, 2: W_v): (., ., count E). Slicing the packed weight's rows is a view. With kdim or
        vdim != embed_dim the three are separate matrices, and ``count`` is 1."""
        e, b = self.embed_dim, self.in_proj_bias
        rows = slice(first * e, (first + count) * e)
        if not self._qkv_same_embed_dim:
            weight = (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight)[first]
            return F.linear(x, weight, _rows(b, rows) if b is not None else None)
        w = self.in_proj_weight
        if count == 3:  # the whole matrix: no slicing op at all
            return F.linear(x, w, b)
        return F.linear(x, _rows(w, rows), _rows(b, rows) if b is not None else None)

    def _in_projection(self, query: Tensor, key: Tensor, value: Tensor, same_qkv: bool, same_kv: bool,
                       seq_first: bool) -> tuple[Tensor, Tensor, Tensor]:
        """Q, K, V = query W_q^T + b_q, key W_k^T + b_k, value W_v^T + b_v, split into heads (N, H, T, d_head),
        sharing matrix multiplies where the inputs are the same tensor."""
        if self._qkv_same_embed_dim and same_qkv:  # self-attention: one (3E x E) matrix multiply
            q, k, v = self._heads(self._project(query, 0, 3), 3, seq_first)
            return q, k, v
        (q,) = self._heads(self._project(query, 0, 1), 1, seq_first)
        return (q, *self._key_value(key, value, same_kv, seq_first))

    def _key_value(self, key: Tensor, value: Tensor, same_kv: bool, seq_first: bool) -> tuple[Tensor, Tensor]:
        """K, V split into heads (N, H, S, d_head) from 3-D inputs."""
        if self._qkv_same_embed_dim and same_kv:  # cross-attention: one (2E x E) matrix multiply for K and V
            k, v = self._heads(self._project(key, 1, 2), 2, seq_first)
            return k, v
        (k,) = self._heads(self._project(key, 1, 1), 1, seq_first)
        (v,) = self._heads(self._project(value, 2, 1), 1, seq_first)
        return k, v

    def _heads(self, x: Tensor, count: int, seq_first: bool) -> tuple[Tensor, ...]:
        """Split ``count`` stacked projections into heads: (T, N, count E) or (N, T, count E) -> ``count``
        tensors (N, H, T, d_head), views of x: feature c E + i d_head + j is head i's feature j of
        projection c."""
        a, b = x.shape[0], x.shape[1]  # (T, N) or (N, T)
        if count == 1:
            x = x.reshape(a, b, self.num_heads, self.head_dim)  # (T or N, N or T, H, d_head)
            return (x.permute(1, 2, 0, 3) if seq_first else x.permute(0, 2, 1, 3),)  # (N, H, T, d_head)
        x = x.reshape(a, b, count, self.num_heads, self.head_dim)  # (T or N, N or T, count, H, d_head)
        x = x.permute(2, 1, 3, 0, 4) if seq_first else x.permute(2, 0, 3, 1, 4)  # (count, N, H, T, d_head)
        return tuple(x[c] for c in range(count))


def _rows(t: Tensor, rows: slice) -> Tensor:
    """``t[rows]``; when no gradient can flow (decoding under no_grad), a plain view with no op recorded."""
    if is_grad_enabled() and t.requires_grad:
        return t[rows]
    return Tensor._make(t.data[rows])


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
        masks.append(Tensor._make(m.data.reshape(n, 1, 1, src_len)) if m.dtype.kind == "b" else
                     m.reshape(n, 1, 1, src_len))
    if not masks:
        return None, is_causal
    if is_causal and attn_mask is None:  # query i may not see keys j > i
        masks.append(Tensor._make(q.xp.triu(q.xp.ones((tgt_len, src_len), dtype=bool), 1)))
    if all(m.dtype.kind == "b" for m in masks):  # stay boolean: allowed = not any of the "forbidden" masks
        forbidden = masks[0].data  # (boolean masks carry no gradient: plain array operations)
        for m in masks[1:]:
            forbidden = forbidden | m.data
        return Tensor._make(~forbidden), False
    total = None  # some mask is float: add them all, a boolean True becoming -inf
    for m in masks:
        term = m if m.dtype.kind == "f" else Tensor._make(q.xp.where(m.data, -math.inf, 0.0).astype(q.dtype))
        total = term if total is None else total + term
    return total, False
