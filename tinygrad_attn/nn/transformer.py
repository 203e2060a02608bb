"""The Transformer's building blocks (Vaswani et al., 2017), with ``torch.nn``'s signatures and names.

- ``TransformerEncoderLayer``: self-attention, then a position-wise feed-forward network (3.1, 3.3).
- ``TransformerDecoderLayer``: masked self-attention, attention over the encoder output ("memory"), then
  the feed-forward network.
- ``TransformerEncoder`` / ``TransformerDecoder``: N copies of a layer, with an optional final LayerNorm.
- ``Transformer``: the whole encoder-decoder, and ``generate_square_subsequent_mask``.
- (``PositionalEncoding`` is in ``nn.positional``, the key/value caches in ``nn.kv_cache``.)

Each sub-layer is wrapped in a residual connection and a LayerNorm, written once (``_Layer._residual``).
Post-LN (the paper, the default): x = LayerNorm(x + Dropout(Sublayer(x))). Pre-LN (``norm_first=True``,
easier to train deep stacks): x = x + Dropout(Sublayer(LayerNorm(x))). Dropout sits where PyTorch puts it:
on each sub-layer's output (the paper's "residual dropout"), on the attention weights, and between the two
feed-forward matrices; ``attention_dropout`` and ``activation_dropout`` set the last two apart from
``dropout`` (by default they are ``dropout``, as in PyTorch).

The same two classes make the three families of models:

- encoder-decoder (the paper): encoder layers with a padding mask, decoder layers attending to the memory;
- encoder-only (BERT-like): encoder layers, bidirectional, with ``src_key_padding_mask``;
- decoder-only (GPT-like): encoder layers with ``is_causal=True`` (self-attention only), typically
  ``norm_first=True, activation="gelu"``; for generation each layer takes ``self_attn_cache`` (a ``KVCache``).

Layout: like PyTorch, sequences are (S, N, E) by default; pass ``batch_first=True`` for (N, S, E).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

from .. import functional as F
from ..creation import full
from ..tensor import Tensor
from . import init
from .attention import MultiheadAttention
from .dropout import Dropout
from .kv_cache import DecoderCache, KVCache
from .linear import Linear
from .module import Module, ModuleList
from .normalization import LayerNorm


def generate_square_subsequent_mask(sz: int, device: Any = None, dtype: Any = None) -> Tensor:
    """The causal mask for a sequence of length ``sz``: 0.0 where query i may attend to key j (j <= i),
    -inf above the diagonal (a float mask, added to the attention scores, as PyTorch's)."""
    return full((sz, sz), -math.inf, dtype=dtype, device=device).triu(1)


def _activation(activation: str | Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    if activation == "relu":
        return F.relu
    if activation == "gelu":
        return F.gelu
    if callable(activation):
        return activation
    raise RuntimeError(f"activation should be 'relu', 'gelu' or a callable, not {activation!r}")


class _Layer(Module):
    """What encoder and decoder layers share: the feed-forward network, the residual wrapper and the
    attention sublayer. Parameter names are PyTorch's (``linear1``, ``linear2``, ``norm1``, ...)."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float,
                 activation: str | Callable[[Tensor], Tensor], layer_norm_eps: float, batch_first: bool,
                 norm_first: bool, bias: bool, attention_dropout: float | None, activation_dropout: float | None,
                 n_sublayers: int, device: Any, dtype: Any) -> None:
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        attn_p = dropout if attention_dropout is None else attention_dropout
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=attn_p, bias=bias, batch_first=batch_first, **kw)
        if n_sublayers == 3:  # a decoder layer: attention over the encoder's output too
            self.multihead_attn = MultiheadAttention(d_model, nhead, dropout=attn_p, bias=bias,
                                                     batch_first=batch_first, **kw)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, **kw)
        self.dropout = Dropout(dropout if activation_dropout is None else activation_dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, **kw)
        self.norm_first = norm_first
        for i in range(1, n_sublayers + 1):  # norm1, norm2[, norm3]: one per sublayer
            setattr(self, f"norm{i}", LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **kw))
        for i in range(1, n_sublayers + 1):  # dropout1, dropout2[, dropout3]: on each sublayer's output
            setattr(self, f"dropout{i}", Dropout(dropout))
        self.activation = _activation(activation)
        self.batch_first = batch_first

    def _residual(self, x: Tensor, norm: LayerNorm, dropout: Dropout, sublayer: Callable[[Tensor], Tensor]) -> Tensor:
        """One sublayer with its residual connection: post-LN ``norm(x + dropout(sublayer(x)))`` (the paper,
        3.1 and 5.4) or, with ``norm_first``, pre-LN ``x + dropout(sublayer(norm(x)))``."""
        if self.norm_first:
            return x + dropout(sublayer(norm(x)))
        return norm(x + dropout(sublayer(x)))

    def _ff_block(self, x: Tensor) -> Tensor:
        """The position-wise feed-forward network (3.3): linear2(dropout(activation(linear1(x))))."""
        return self.linear2(self.dropout(self.activation(self.linear1(x))))

    @staticmethod
    def _attention(attn: MultiheadAttention, memory: Tensor | None, attn_mask: Tensor | None,
                   key_padding_mask: Tensor | None, is_causal: bool, cache: KVCache | None,
                   weights: list[Tensor | None] | None) -> Callable[[Tensor], Tensor]:
        """The attention sublayer as a function of its (normalised, for pre-LN) input x: self-attention when
        ``memory`` is None, else attention from x to ``memory``. Per-head weights (N, H, L, S) are appended to
        ``weights`` when it is a list."""
        def sublayer(x: Tensor) -> Tensor:
            kv = x if memory is None else memory
            out, w = attn(x, kv, kv, key_padding_mask=key_padding_mask, need_weights=weights is not None,
                          attn_mask=attn_mask, average_attn_weights=False, is_causal=is_causal, cache=cache)
            if weights is not None:
                weights.append(w)
            return out
        return sublayer


class TransformerEncoderLayer(_Layer):
    """Self-attention and a feed-forward network, each with a residual connection and LayerNorm.

    ``src`` (S, N, E) ((N, S, E) with ``batch_first``); ``src_mask`` (S, S) or (N * nhead, S, S) and
    ``src_key_padding_mask`` (N, S) follow ``MultiheadAttention``'s conventions (True = not allowed);
    ``is_causal=True`` without ``src_mask`` makes the self-attention causal.
    Feed-forward: linear2(dropout(activation(linear1(x)))), with d_model -> dim_feedforward -> d_model.

    Beyond PyTorch: ``attention_dropout`` / ``activation_dropout`` (on the attention weights / after the
    activation; default ``dropout``); ``forward(..., self_attn_cache=KVCache())`` for decoding one step at a
    time (a decoder-only model); ``need_weights=True`` returns ``(output, weights)`` with the per-head
    attention weights (N, nhead, S, S).
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: str | Callable[[Tensor], Tensor] = F.relu, layer_norm_eps: float = 1e-5,
                 batch_first: bool = False, norm_first: bool = False, bias: bool = True, device: Any = None,
                 dtype: Any = None, *, attention_dropout: float | None = None,
                 activation_dropout: float | None = None) -> None:
        super().__init__(d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps, batch_first,
                         norm_first, bias, attention_dropout, activation_dropout, 2, device, dtype)

    def forward(self, src: Tensor, src_mask: Tensor | None = None, src_key_padding_mask: Tensor | None = None,
                is_causal: bool = False, *, self_attn_cache: KVCache | None = None, need_weights: bool = False) -> Any:
        weights: list[Tensor | None] | None = [] if need_weights else None
        self_attention = self._attention(self.self_attn, None, src_mask, src_key_padding_mask, is_causal,
                                         self_attn_cache, weights)
        x = self._residual(src, self.norm1, self.dropout1, self_attention)
        x = self._residual(x, self.norm2, self.dropout2, self._ff_block)
        return (x, weights[0]) if weights is not None else x


class TransformerDecoderLayer(_Layer):
    """Masked self-attention, attention over ``memory`` (the encoder output), and a feed-forward network,
    each with a residual connection and LayerNorm.

    ``tgt`` (T, N, E), ``memory`` (S, N, E) ((N, ., E) with ``batch_first``); ``tgt_mask`` (T, T) is
    usually the causal mask (``tgt_is_causal=True`` builds it when ``tgt_mask`` is None);
    ``memory_mask`` (T, S); key padding masks (N, T) and (N, S).

    Beyond PyTorch: ``attention_dropout`` / ``activation_dropout`` as in ``TransformerEncoderLayer``;
    ``forward(..., self_attn_cache=KVCache(), cross_attn_cache=KVCache(static=True))`` decodes the new
    positions only (the memory's keys and values are projected once, into the static cache); with
    ``need_weights=True`` the result is ``(output, self_weights, cross_weights)``, per head.
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: str | Callable[[Tensor], Tensor] = F.relu, layer_norm_eps: float = 1e-5,
                 batch_first: bool = False, norm_first: bool = False, bias: bool = True, device: Any = None,
                 dtype: Any = None, *, attention_dropout: float | None = None,
                 activation_dropout: float | None = None) -> None:
        super().__init__(d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps, batch_first,
                         norm_first, bias, attention_dropout, activation_dropout, 3, device, dtype)

    def forward(self, tgt: Tensor, memory: Tensor, tgt_mask: Tensor | None = None, memory_mask: Tensor | None = None,
                tgt_key_padding_mask: Tensor | None = None, memory_key_padding_mask: Tensor | None = None,
                tgt_is_causal: bool = False, memory_is_causal: bool = False, *,
                self_attn_cache: KVCache | None = None, cross_attn_cache: KVCache | None = None,
                need_weights: bool = False) -> Any:
        weights: list[Tensor | None] | None = [] if need_weights else None
        self_attention = self._attention(self.self_attn, None, tgt_mask, tgt_key_padding_mask, tgt_is_causal,
                                         self_attn_cache, weights)
        cross_attention = self._attention(self.multihead_attn, memory, memory_mask, memory_key_padding_mask,
                                          memory_is_causal, cross_attn_cache, weights)
        x = self._residual(tgt, self.norm1, self.dropout1, self_attention)
        x = self._residual(x, self.norm2, self.dropout2, cross_attention)
        x = self._residual(x, self.norm3, self.dropout3, self._ff_block)
        return (x, weights[0], weights[1]) if weights is not None else x


def _layer_caches(cache: DecoderCache | None, n_layers: int, cross: bool) -> list[tuple[Any, Any]]:
    """Each layer's (self-attention, cross-attention) caches from a stack's ``DecoderCache`` (Nones without)."""
    if cache is None:
        return [(None, None)] * n_layers
    if not isinstance(cache, DecoderCache) or len(cache.self_attn) != n_layers:
        raise ValueError(f"expected a DecoderCache for {n_layers} layers, got {cache!r}")
    if cross and any(c is None for c in cache.cross_attn):
        raise ValueError("a decoder with cross-attention needs DecoderCache(num_layers, cross_attention=True)")
    return list(zip(cache.self_attn, cache.cross_attn))


def _length(layers: ModuleList, x: Tensor) -> int:
    """The sequence length of a stack's input x: (S, N, E), (N, S, E) with batch_first, or (S, E)."""
    batch_first = len(layers) > 0 and layers[0].batch_first
    return x.shape[1] if x.ndim == 3 and batch_first else x.shape[0]


def _clones(module: Module, n: int) -> ModuleList:
    """n deep copies of ``module``: the same initial values, but each its own Parameters (as PyTorch)."""
    return ModuleList([copy.deepcopy(module) for _ in range(n)])


class TransformerEncoder(Module):
    """``num_layers`` copies of ``encoder_layer`` applied in turn (``layers.0``, ``layers.1``, ...), then
    ``norm`` if given (pre-LN stacks need that final LayerNorm)."""

    def __init__(self, encoder_layer: TransformerEncoderLayer, num_layers: int, norm: Module | None = None,
                 enable_nested_tensor: bool = True, mask_check: bool = True) -> None:
        super().__init__()
        self.layers = _clones(encoder_layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm

    def forward(self, src: Tensor, mask: Tensor | None = None, src_key_padding_mask: Tensor | None = None,
                is_causal: bool | None = None, *, cache: DecoderCache | None = None) -> Tensor:
        """``cache`` (a ``DecoderCache(num_layers, cross_attention=False)``, with ``is_causal=True``): a
        decoder-only stack decoding the new positions ``src`` after the ``cache.length`` cached ones."""
        caches = _layer_caches(cache, len(self.layers), cross=False)
        x = src
        for layer, (self_cache, _) in zip(self.layers, caches):
            x = layer(x, src_mask=mask, src_key_padding_mask=src_key_padding_mask, is_causal=bool(is_causal),
                      self_attn_cache=self_cache)
        if cache is not None:
            cache.length += _length(self.layers, src)
        return self.norm(x) if self.norm is not None else x


class TransformerDecoder(Module):
    """``num_layers`` copies of ``decoder_layer``, each attending to the same ``memory``, then ``norm``."""

    def __init__(self, decoder_layer: TransformerDecoderLayer, num_layers: int, norm: Module | None = None) -> None:
        super().__init__()
        self.layers = _clones(decoder_layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm

    def forward(self, tgt: Tensor, memory: Tensor, tgt_mask: Tensor | None = None, memory_mask: Tensor | None = None,
                tgt_key_padding_mask: Tensor | None = None, memory_key_padding_mask: Tensor | None = None,
                tgt_is_causal: bool | None = None, memory_is_causal: bool = False, *,
                cache: DecoderCache | None = None) -> Tensor:
        """``cache`` (a ``DecoderCache(num_layers)``, under ``ta.no_grad()``): decode the new positions ``tgt``
        after the ``cache.length`` cached ones; the memory's keys and values are projected on the first call."""
        caches = _layer_caches(cache, len(self.layers), cross=True)
        x = tgt
        for layer, (self_cache, cross_cache) in zip(self.layers, caches):
            x = layer(x, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                      tgt_key_padding_mask=tgt_key_padding_mask, memory_key_padding_mask=memory_key_padding_mask,
                      tgt_is_causal=bool(tgt_is_causal), memory_is_causal=memory_is_causal,
                      self_attn_cache=self_cache, cross_attn_cache=cross_cache)
        if cache is not None:
            cache.length += _length(self.layers, tgt)
        return self.norm(x) if self.norm is not None else x


class Transformer(Module):
    """The encoder-decoder of the paper (``torch.nn.Transformer``): an encoder stack and a decoder stack,
    each ending in a LayerNorm, every weight matrix Xavier-uniform initialised. It takes embedded
    sequences (embedding, positional encoding and the output projection are the model's own)."""

    def __init__(self, d_model: int = 512, nhead: int = 8, num_encoder_layers: int = 6, num_decoder_layers: int = 6,
                 dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: str | Callable[[Tensor], Tensor] = F.relu, custom_encoder: Module | None = None,
                 custom_decoder: Module | None = None, layer_norm_eps: float = 1e-5, batch_first: bool = False,
                 norm_first: bool = False, bias: bool = True, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        layer_args = (d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps, batch_first, norm_first,
                      bias)
        self.encoder = custom_encoder if custom_encoder is not None else TransformerEncoder(
            TransformerEncoderLayer(*layer_args, **kw), num_encoder_layers,
            LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **kw))
        self.decoder = custom_decoder if custom_decoder is not None else TransformerDecoder(
            TransformerDecoderLayer(*layer_args, **kw), num_decoder_layers,
            LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **kw))
        self.d_model, self.nhead, self.batch_first = d_model, nhead, batch_first
        for p in self.parameters():
            if p.ndim > 1:
                init.xavier_uniform_(p)

    generate_square_subsequent_mask = staticmethod(generate_square_subsequent_mask)

    def forward(self, src: Tensor, tgt: Tensor, src_mask: Tensor | None = None, tgt_mask: Tensor | None = None,
                memory_mask: Tensor | None = None, src_key_padding_mask: Tensor | None = None,
                tgt_key_padding_mask: Tensor | None = None, memory_key_padding_mask: Tensor | None = None,
                src_is_causal: bool | None = None, tgt_is_causal: bool | None = None,
                memory_is_causal: bool = False) -> Tensor:
        batch_dim = 0 if self.batch_first else 1
        if src.ndim == 3 and tgt.ndim == 3 and src.shape[batch_dim] != tgt.shape[batch_dim]:
            raise RuntimeError(f"Transformer: src {tuple(src.shape)} and tgt {tuple(tgt.shape)} have different "
                               f"batch sizes (batch_first={self.batch_first})")
        if src.shape[-1] != self.d_model or tgt.shape[-1] != self.d_model:
            raise RuntimeError(f"Transformer: src {tuple(src.shape)} and tgt {tuple(tgt.shape)} must have "
                               f"d_model={self.d_model} features")
        memory = self.encoder(src, mask=src_mask, src_key_padding_mask=src_key_padding_mask, is_causal=src_is_causal)
        return self.decoder(tgt, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                            tgt_key_padding_mask=tgt_key_padding_mask,
                            memory_key_padding_mask=memory_key_padding_mask, tgt_is_causal=tgt_is_causal,
                            memory_is_causal=memory_is_causal)
