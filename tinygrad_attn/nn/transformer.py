"""The Transformer's building blocks (Vaswani et al., 2017), with ``torch.nn``'s signatures and names.

- ``PositionalEncoding``: the paper's sinusoids, added to the embeddings (3.5).
- ``TransformerEncoderLayer``: self-attention, then a position-wise feed-forward network (3.1, 3.3).
- ``TransformerDecoderLayer``: masked self-attention, attention over the encoder output ("memory"), then
  the feed-forward network.
- ``TransformerEncoder`` / ``TransformerDecoder``: N copies of a layer, with an optional final LayerNorm.
- ``Transformer``: the whole encoder-decoder, and ``generate_square_subsequent_mask``.

Each sub-layer is wrapped in a residual connection and a LayerNorm. Post-LN (the paper, the default):
x = LayerNorm(x + Dropout(Sublayer(x))). Pre-LN (``norm_first=True``, easier to train deep stacks):
x = x + Dropout(Sublayer(LayerNorm(x))). Dropout sits where PyTorch puts it: on each sub-layer's output
(the paper's "residual dropout"), on the attention weights, and between the two feed-forward matrices.

Layout: like PyTorch, sequences are (S, N, E) by default; pass ``batch_first=True`` for (N, S, E).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import functional as F
from ..backend import to_device
from ..creation import full
from ..tensor import Tensor
from . import init
from .attention import MultiheadAttention
from .dropout import Dropout
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


class PositionalEncoding(Module):
    """Add the paper's sinusoidal position signal to a sequence of embeddings, then apply dropout:

        PE[pos, 2i] = sin(pos / 10000^(2i / d_model)),   PE[pos, 2i + 1] = cos(pos / 10000^(2i / d_model))

    Each pair of dimensions is a sinusoid of its own wavelength (2 pi to 10000 * 2 pi), so PE[pos + k] is a
    linear function of PE[pos]: relative positions are easy to attend to. The table is a non-persistent
    buffer ``pe`` of shape (max_len, d_model) (not in ``state_dict``: it is a function of the shape), and
    grows by itself when a longer sequence arrives.

    Input (S, N, d_model), or (N, S, d_model) with ``batch_first=True``. ``forward(x, start=k)`` adds the
    positions k, k+1, ... (for decoding one step at a time). The paper also scales the embeddings by
    sqrt(d_model) before adding; that belongs to the model, not to this layer.
    """

    def __init__(self, d_model: int, dropout: float = 0.1, max_len: int = 5000, *, batch_first: bool = False,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        self.d_model, self.batch_first = d_model, batch_first
        self.dropout = Dropout(dropout)
        self.register_buffer("pe", self._table(max_len, device, dtype), persistent=False)

    def _table(self, length: int, device: Any = None, dtype: Any = None) -> Tensor:
        position = np.arange(length, dtype=np.float64)[:, None]
        inv_freq = np.exp(np.arange(0, self.d_model, 2, dtype=np.float64) * (-math.log(10000.0) / self.d_model))
        angles = position * inv_freq  # (length, ceil(d_model / 2))
        pe = np.zeros((length, self.d_model))
        pe[:, 0::2] = np.sin(angles)
        pe[:, 1::2] = np.cos(angles[:, : self.d_model // 2])
        t = Tensor(pe, dtype=dtype if dtype is not None else "float32")
        return t.to(device) if device is not None else t

    def forward(self, x: Tensor, start: int = 0) -> Tensor:
        if x.ndim != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"PositionalEncoding: expected input of shape ({'N, S' if self.batch_first else 'S, N'}"
                             f", {self.d_model}), got {tuple(x.shape)}")
        length = x.shape[1] if self.batch_first else x.shape[0]
        end = start + length
        if end > self.pe.shape[0]:  # a longer sequence than seen so far: extend the table
            table = self._table(max(end, 2 * self.pe.shape[0]), dtype=self.pe.dtype)
            self.pe = Tensor._make(to_device(table.data, self.pe.device))
        pe = self.pe[start:end]
        pe = pe.unsqueeze(0) if self.batch_first else pe.unsqueeze(1)
        return self.dropout(x + pe.to(x.dtype))

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, max_len={self.pe.shape[0]}, batch_first={self.batch_first}"


class TransformerEncoderLayer(Module):
    """Self-attention and a feed-forward network, each with a residual connection and LayerNorm.

    ``src`` (S, N, E) ((N, S, E) with ``batch_first``); ``src_mask`` (S, S) or (N * nhead, S, S) and
    ``src_key_padding_mask`` (N, S) follow ``MultiheadAttention``'s conventions (True = not allowed).
    Feed-forward: linear2(dropout(activation(linear1(x)))), with d_model -> dim_feedforward -> d_model.
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: str | Callable[[Tensor], Tensor] = F.relu, layer_norm_eps: float = 1e-5,
                 batch_first: bool = False, norm_first: bool = False, bias: bool = True, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first, **kw)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, **kw)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, **kw)
        self.norm_first = norm_first
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **kw)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **kw)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.activation = _activation(activation)
        self.batch_first = batch_first

    def forward(self, src: Tensor, src_mask: Tensor | None = None, src_key_padding_mask: Tensor | None = None,
                is_causal: bool = False) -> Tensor:
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            x = x + self._ff_block(self.norm2(x))
        else:
            x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal))
            x = self.norm2(x + self._ff_block(x))
        return x

    def _sa_block(self, x: Tensor, attn_mask: Tensor | None, key_padding_mask: Tensor | None,
                  is_causal: bool) -> Tensor:
        return _attention_sublayer(self.self_attn, self.dropout1, x, x, attn_mask, key_padding_mask, is_causal)

    def _ff_block(self, x: Tensor) -> Tensor:
        return _feed_forward_sublayer(self, self.dropout2, x)


class TransformerDecoderLayer(Module):
    """Masked self-attention, attention over ``memory`` (the encoder output), and a feed-forward network,
    each with a residual connection and LayerNorm.

    ``tgt`` (T, N, E), ``memory`` (S, N, E) ((N, ., E) with ``batch_first``); ``tgt_mask`` (T, T) is
    usually the causal mask (``tgt_is_causal=True`` builds it when ``tgt_mask`` is None);
    ``memory_mask`` (T, S); key padding masks (N, T) and (N, S).
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: str | Callable[[Tensor], Tensor] = F.relu, layer_norm_eps: float = 1e-5,
                 batch_first: bool = False, norm_first: bool = False, bias: bool = True, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first, **kw)
        self.multihead_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first,
                                                 **kw)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, **kw)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, **kw)
        self.norm_first = norm_first
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **kw)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **kw)
        self.norm3 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **kw)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.dropout3 = Dropout(dropout)
        self.activation = _activation(activation)
        self.batch_first = batch_first

    def forward(self, tgt: Tensor, memory: Tensor, tgt_mask: Tensor | None = None, memory_mask: Tensor | None = None,
                tgt_key_padding_mask: Tensor | None = None, memory_key_padding_mask: Tensor | None = None,
                tgt_is_causal: bool = False, memory_is_causal: bool = False) -> Tensor:
        x = tgt
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), tgt_mask, tgt_key_padding_mask, tgt_is_causal)
            x = x + self._mha_block(self.norm2(x), memory, memory_mask, memory_key_padding_mask, memory_is_causal)
            x = x + self._ff_block(self.norm3(x))
        else:
            x = self.norm1(x + self._sa_block(x, tgt_mask, tgt_key_padding_mask, tgt_is_causal))
            x = self.norm2(x + self._mha_block(x, memory, memory_mask, memory_key_padding_mask, memory_is_causal))
            x = self.norm3(x + self._ff_block(x))
        return x

    def _sa_block(self, x: Tensor, attn_mask: Tensor | None, key_padding_mask: Tensor | None,
                  is_causal: bool) -> Tensor:
        return _attention_sublayer(self.self_attn, self.dropout1, x, x, attn_mask, key_padding_mask, is_causal)

    def _mha_block(self, x: Tensor, mem: Tensor, attn_mask: Tensor | None, key_padding_mask: Tensor | None,
                   is_causal: bool) -> Tensor:
        return _attention_sublayer(self.multihead_attn, self.dropout2, x, mem, attn_mask, key_padding_mask,
                                   is_causal)

    def _ff_block(self, x: Tensor) -> Tensor:
        return _feed_forward_sublayer(self, self.dropout3, x)


def _attention_sublayer(attn: MultiheadAttention, dropout: Dropout, x: Tensor, memory: Tensor,
                        attn_mask: Tensor | None, key_padding_mask: Tensor | None, is_causal: bool) -> Tensor:
    """Dropout(Attention(x, memory, memory)): an attention sublayer's output, before the residual add
    (memory is x itself for self-attention)."""
    return dropout(attn(x, memory, memory, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                        need_weights=False, is_causal=is_causal)[0])


def _feed_forward_sublayer(layer: TransformerEncoderLayer | TransformerDecoderLayer, dropout: Dropout,
                           x: Tensor) -> Tensor:
    """Dropout(linear2(dropout(activation(linear1(x))))): the position-wise feed-forward sublayer."""
    return dropout(layer.linear2(layer.dropout(layer.activation(layer.linear1(x)))))


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
                is_causal: bool | None = None) -> Tensor:
        x = src
        for layer in self.layers:
            x = layer(x, src_mask=mask, src_key_padding_mask=src_key_padding_mask, is_causal=bool(is_causal))
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
                tgt_is_causal: bool | None = None, memory_is_causal: bool = False) -> Tensor:
        x = tgt
        for layer in self.layers:
            x = layer(x, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                      tgt_key_padding_mask=tgt_key_padding_mask, memory_key_padding_mask=memory_key_padding_mask,
                      tgt_is_causal=bool(tgt_is_causal), memory_is_causal=memory_is_causal)
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
