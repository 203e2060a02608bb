"""The Transformer of "Attention Is All You Need" (Vaswani et al., 2017), read next to the paper.

Section numbers (§) and equations refer to the paper (arXiv:1706.03762). Everything is built from
``tinygrad_attn``: ``nn.Linear``, ``nn.LayerNorm``, ``nn.Embedding``, ``nn.Dropout`` and
``functional.scaled_dot_product_attention``. Shapes are batch-first::

    B batch   S source length   T target length   D = d_model   H heads   d_k = D / H   V vocabulary

The path of a sentence pair through the model::

    src (B, S) ids --embed--> (B, S, D) --N x EncoderLayer--> memory (B, S, D)
    tgt_in (B, T) ids --embed--> (B, T, D) --N x DecoderLayer(memory)--> (B, T, D) --project--> logits (B, T, V)

Where this follows the paper and where it chooses:

- Residual blocks are the paper's **post-LN** ``LayerNorm(x + Dropout(Sublayer(x)))`` (§3.1, §5.4). The
  Annotated Transformer uses pre-LN ``x + Dropout(Sublayer(LayerNorm(x)))`` "for code simplicity";
  here that is ``norm_first=True`` (it then needs a final LayerNorm after each stack, as it has).
- One embedding table for source tokens, target tokens and the pre-softmax projection (§3.4: "we share
  the same weight matrix between the two embedding layers and the pre-softmax linear transformation"),
  which needs a joint source/target vocabulary (our SentencePiece model is trained on both languages).
- Dropout (§5.4, P_drop = 0.1) on each sublayer output before the residual add, and on the sums of
  embeddings and positional encodings. Not on the attention weights by default (``attention_dropout``, 0.0):
  the paper has none there, fairseq's default has none; tensor2tensor's later base settings use 0.1, and on
  Multi30k that slowed learning (``small``, 400 steps: val BLEU 17.5 with 0.1 against 20.0 without).
  Not after the FFN's ReLU (the Annotated Transformer and ``torch.nn.Transformer`` put one there; the paper
  does not, nor fairseq by default): that dropout would touch the widest activations (d_ff per position) and
  cost ~8% of a training step on a CPU. ``FeedForward(dropout=p)`` has it, for experiments.
- Initialisation, which the paper does not state: Glorot/xavier-uniform for every projection (as the
  Annotated Transformer), zero biases; the embedding ~ N(0, D^-1/2), because the same matrix is also the
  output projection: with unit-variance rows the initial logits would have variance D, far too peaked.
  Times sqrt(D) (§3.4) the input embeddings then have unit variance, the scale of the positional encoding.
- ``MultiHeadAttention`` is written here rather than taken from ``tinygrad_attn.nn`` because decoding keeps a
  key/value cache (``DecoderCache``): each new target token costs one position of work per layer.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

import tinygrad_attn as ta
import tinygrad_attn.functional as F
from tinygrad_attn import Tensor, nn
from tinygrad_attn.backend import array_module, device_of, to_device

__all__ = [
    "PRESETS",
    "build_model",
    "count_parameters",
    "Transformer",
    "EncoderLayer",
    "DecoderLayer",
    "MultiHeadAttention",
    "FeedForward",
    "PositionalEncoding",
    "DecoderCache",
]

# ---------------------------------------------------------------------------------------------------------
# Presets. Parameter counts for a joint vocabulary of V = 8,000 (``count_parameters`` computes them for any
# V; the shared embedding, V * D, is counted once).
# ---------------------------------------------------------------------------------------------------------

PRESETS: dict[str, dict[str, Any]] = {
    # 2.41M parameters (1.02M of them the shared embedding). Chosen for "~15 minutes on 2 CPU cores": at
    # D = 128 the tied output projection (D x V per target token) costs about as much as all six layers,
    # so a narrow model with 3+3 layers buys depth cheaply; it trains ~2.3x as fast as `small` (about 5,600
    # target tokens/s on a 2-core AMD EPYC). configs/tiny.yaml, 15 minutes there: 35.3 BLEU greedy, 36.0
    # beam 4 on test_2016_flickr (sacreBLEU, de-en).
    "tiny": dict(d_model=128, n_heads=4, n_encoder_layers=3, n_decoder_layers=3, d_ff=512, dropout=0.1,
                 attention_dropout=0.0),
    # 7.58M parameters (2.05M embedding): the CPU preset worth 35 minutes (configs/small.yaml, same machine,
    # about 2,400-2,600 target tokens/s: 37.5 greedy, 38.1 beam 4 on test_2016_flickr).
    "small": dict(d_model=256, n_heads=4, n_encoder_layers=3, n_decoder_layers=3, d_ff=1024, dropout=0.1,
                  attention_dropout=0.0),
    # 48.2M parameters (4.10M embedding): the paper's base model (Table 3, 65M with its 37k vocabulary); GPU.
    "base": dict(d_model=512, n_heads=8, n_encoder_layers=6, n_decoder_layers=6, d_ff=2048, dropout=0.1,
                 attention_dropout=0.0),
}


def count_parameters(vocab_size: int, d_model: int = 512, n_encoder_layers: int = 6, n_decoder_layers: int = 6,
                     d_ff: int = 2048, norm_first: bool = False, tie_embeddings: bool = True, **_: Any) -> int:
    """The number of parameters of ``Transformer(vocab_size, ...)``, from the shapes alone.

    Per encoder layer: attention 4 (D^2 + D), FFN 2 D d_ff + d_ff + D, two LayerNorms 4 D.
    Per decoder layer: two attentions 8 (D^2 + D), the FFN, three LayerNorms 6 D.
    """
    D = d_model
    attention = 4 * (D * D + D)
    ffn = 2 * D * d_ff + d_ff + D
    encoder = n_encoder_layers * (attention + ffn + 4 * D)
    decoder = n_decoder_layers * (2 * attention + ffn + 6 * D)
    final_norms = 4 * D if norm_first else 0
    embeddings = vocab_size * D * (1 if tie_embeddings else 2)
    return embeddings + encoder + decoder + final_norms


# ---------------------------------------------------------------------------------------------------------
# §3.2 Attention
# ---------------------------------------------------------------------------------------------------------


class KVBuffer:
    """The keys and values of one attention layer for the positions decoded so far: (B, H, L, d_k) each.

    New positions are written into preallocated arrays (capacity doubles when full), so a decoding step
    appends one position instead of copying the whole prefix. Plain arrays, no autograd: inference only.
    """

    def __init__(self) -> None:
        self.k: Any = None
        self.v: Any = None
        self.length = 0

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Add (B, H, t, d_k) keys and values; return all of them so far, (B, H, length, d_k) views."""
        t = k.shape[2]
        if self.k is None or self.length + t > self.k.shape[2]:
            capacity = max(16, 2 * (self.length + t))
            grown_k = k.xp.empty(k.shape[:2] + (capacity,) + k.shape[3:], dtype=k.dtype)
            grown_v = k.xp.empty_like(grown_k)
            if self.k is not None:
                grown_k[:, :, : self.length] = self.k[:, :, : self.length]
                grown_v[:, :, : self.length] = self.v[:, :, : self.length]
            self.k, self.v = grown_k, grown_v
        self.k[:, :, self.length : self.length + t] = k.data
        self.v[:, :, self.length : self.length + t] = v.data
        self.length += t
        return ta.from_numpy(self.k[:, :, : self.length]), ta.from_numpy(self.v[:, :, : self.length])

    def reorder(self, index: np.ndarray) -> None:
        """Keep rows ``index`` (a NumPy integer array) of the batch, in that order (beam search's reshuffles,
        finished sentences). Only the positions decoded so far are copied, not the spare capacity."""
        if self.k is None:
            return
        used = self.length
        if len(index) == self.k.shape[0]:  # a permutation (with repeats): rewrite only the rows that change
            moved = np.flatnonzero(index != np.arange(len(index)))
            if len(moved):
                source, moved = _on_device_of(index[moved], self.k), _on_device_of(moved, self.k)
                self.k[moved, :, :used] = self.k[source, :, :used]  # the right side is a copy: read before written
                self.v[moved, :, :used] = self.v[source, :, :used]
            return
        index = _on_device_of(index, self.k)
        k = array_module(self.k).empty((len(index),) + self.k.shape[1:], dtype=self.k.dtype)
        v = array_module(self.k).empty_like(k)
        k[:, :, :used] = self.k[index, :, :used]
        v[:, :, :used] = self.v[index, :, :used]
        self.k, self.v = k, v


class DecoderCache:
    """Everything the decoder computed for earlier positions, so that the next step computes only itself.

    Per decoder layer: the projected keys/values of its self-attention, one position appended per step,
    and the projected keys/values of the encoder memory for its cross-attention, computed once on the
    first step and reused. ``length`` is the number of target positions already decoded (the offset of
    the next position's encoding). Create an empty one per batch of sentences and pass it to every
    ``Transformer.decode`` call with the new tokens only; call ``reorder`` when rows change.
    """

    def __init__(self) -> None:
        self.length = 0
        self.self_attention: dict[int, KVBuffer] = {}
        self.cross_attention: dict[int, tuple[Any, Any]] = {}  # layer -> (k, v) arrays (B, H, S, d_k)

    def reorder(self, index: Any, cross: bool = True) -> None:
        """Keep batch rows ``index`` (an integer array) in that order. ``cross=False`` leaves the encoder
        keys/values alone: right when rows are only shuffled among copies of the same sentence (beams)."""
        index = np.asarray(index)
        for buffer in self.self_attention.values():
            buffer.reorder(index)
        if cross:
            for layer, (k, v) in self.cross_attention.items():
                idx = _on_device_of(index, k)
                self.cross_attention[layer] = (k[idx], v[idx])


def _on_device_of(index: np.ndarray, array: Any) -> Any:
    """The integer array ``index`` on the device of ``array`` (a no-op on the CPU)."""
    return index if array is None else to_device(index, device_of(array))


class MultiHeadAttention(nn.Module):
    """§3.2.2 Multi-head attention, eq. (1) inside:

        Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V                                  (1)
        MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O,  head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)

    The h matrices W_i^Q (D x d_k each) sit side by side in one D x D matrix, so one matmul projects all
    heads and a reshape (B, T, D) -> (B, H, T, d_k) separates them (a view: no data moves). Self-attention
    fuses W^Q, W^K, W^V into one D x 3D projection (one matmul instead of three); cross-attention fuses
    W^K, W^V (they read the encoder memory, the queries read the decoder). ``mask`` (bool, True = may attend)
    hides padding and, in the decoder, the future.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, self_attention: bool = True) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"MultiHeadAttention: d_model={d_model} is not divisible by n_heads={n_heads}")
        self.d_model, self.n_heads, self.d_k = d_model, n_heads, d_model // n_heads
        self.dropout, self.self_attention = dropout, self_attention
        if self_attention:
            self.qkv_proj = nn.Linear(d_model, 3 * d_model)
        else:
            self.q_proj = nn.Linear(d_model, d_model)
            self.kv_proj = nn.Linear(d_model, 2 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform for each D x D projection, as if W^Q, W^K, W^V were separate layers: U(-b, b) with
        b = sqrt(6 / (D + D)), also inside the fused matrices (whose own fan would give a smaller b). Zero biases."""
        bound = math.sqrt(6.0 / (2 * self.d_model))
        for linear in (self.qkv_proj,) if self.self_attention else (self.q_proj, self.kv_proj):
            nn.init.uniform_(linear.weight, -bound, bound)
            nn.init.zeros_(linear.bias)
        nn.init.xavier_uniform_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)

    def _heads(self, x: Tensor, n: int) -> tuple[Tensor, ...]:
        """(B, T, n * D) -> n tensors (B, H, T, d_k): the n projections, split into H heads; views of x."""
        B, T, _ = x.shape
        split = x.reshape(B, T, n, self.n_heads, self.d_k).permute(2, 0, 3, 1, 4)  # (n, B, H, T, d_k)
        return tuple(split[i] for i in range(n))

    def project_memory(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        """Cross-attention's keys and values of the encoder output (B, S, D): two (B, H, S, d_k) views."""
        k, v = self._heads(self.kv_proj(memory), 2)
        return k, v

    def forward(self, x: Tensor, memory: Tensor | None = None, mask: Tensor | None = None,
                cache: DecoderCache | None = None, layer: int = 0,
                need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """Attend from the positions of ``x`` (B, T, D) to those of ``x`` itself (self-attention) or of
        ``memory`` (B, S, D) (cross-attention). Returns the output (B, T, D) and, if ``need_weights``,
        the attention weights (B, H, T, S).

        With a ``cache``, ``x`` holds only the new positions: self-attention appends their keys/values to
        the cache and attends to all positions so far; cross-attention projects ``memory`` on the first
        call and reuses it afterwards.
        """
        B, T, D = x.shape
        if self.self_attention:
            q, k, v = self._heads(self.qkv_proj(x), 3)  # each (B, H, T, d_k)
            if cache is not None:
                k, v = cache.self_attention.setdefault(layer, KVBuffer()).append(k, v)
        else:
            (q,) = self._heads(self.q_proj(x), 1)
            if cache is not None and layer in cache.cross_attention:
                k, v = (ta.from_numpy(a) for a in cache.cross_attention[layer])
            else:
                if memory is None:
                    raise ValueError("MultiHeadAttention: cross-attention needs the encoder memory")
                k, v = self.project_memory(memory)
                if cache is not None:
                    cache.cross_attention[layer] = (k.data, v.data)
        weights = None
        if need_weights:  # eq. (1) spelled out, to see the weights (plots); inference only, no dropout
            scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.d_k))
            if mask is not None:
                scores = scores.masked_fill(mask.logical_not(), float("-inf"))
            weights = F.softmax(scores, dim=-1)
            out = weights @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                 dropout_p=self.dropout if self.training else 0.0)
        out = out.permute(0, 2, 1, 3).reshape(B, T, D)  # Concat(head_1, ..., head_h): (B, T, H * d_k)
        return self.out_proj(out), weights


# ---------------------------------------------------------------------------------------------------------
# §3.3 Position-wise feed-forward networks
# ---------------------------------------------------------------------------------------------------------


class FeedForward(nn.Module):
    """§3.3, eq. (2): FFN(x) = max(0, x W_1 + b_1) W_2 + b_2, the same two-layer ReLU network applied to
    every position separately (D -> d_ff -> D). ``dropout`` > 0 adds dropout after the ReLU (not in the paper;
    the layers here leave it at 0)."""

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.w_1 = nn.Linear(d_model, d_ff)
        self.w_2 = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)
        for linear in (self.w_1, self.w_2):
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.w_2(self.dropout(self.w_1(x).relu()))


# ---------------------------------------------------------------------------------------------------------
# §3.1 Encoder and decoder stacks
# ---------------------------------------------------------------------------------------------------------


class EncoderLayer(nn.Module):
    """§3.1 Encoder layer: multi-head self-attention, then the FFN. Each sublayer is wrapped in a residual
    connection and layer normalisation: post-LN ``LayerNorm(x + Dropout(Sublayer(x)))`` (the paper) or,
    with ``norm_first``, pre-LN ``x + Dropout(Sublayer(LayerNorm(x)))``."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.1, norm_first: bool = False,
                 attention_dropout: float = 0.0):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_heads, attention_dropout, self_attention=True)
        self.ffn = FeedForward(d_model, d_ff)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.norm_first = norm_first

    def forward(self, x: Tensor, mask: Tensor, need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """x (B, S, D), mask (B, 1, 1, S): True at real source tokens. Returns (B, S, D) and the weights."""
        if self.norm_first:
            a, weights = self.self_attn(self.norm1(x), mask=mask, need_weights=need_weights)
            x = x + self.dropout(a)
            return x + self.dropout(self.ffn(self.norm2(x))), weights
        a, weights = self.self_attn(x, mask=mask, need_weights=need_weights)
        x = self.norm1(x + self.dropout(a))
        return self.norm2(x + self.dropout(self.ffn(x))), weights


class DecoderLayer(nn.Module):
    """§3.1 Decoder layer: masked multi-head self-attention (position i sees positions <= i only), then
    multi-head attention over the encoder output ("encoder-decoder attention", §3.2.3), then the FFN;
    each sublayer with its residual connection and layer normalisation, as in ``EncoderLayer``."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.1, norm_first: bool = False,
                 attention_dropout: float = 0.0):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_heads, attention_dropout, self_attention=True)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, attention_dropout, self_attention=False)
        self.ffn = FeedForward(d_model, d_ff)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d_model), nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.norm_first = norm_first

    def forward(self, x: Tensor, memory: Tensor, src_mask: Tensor, tgt_mask: Tensor | None,
                cache: DecoderCache | None = None, layer: int = 0,
                need_weights: bool = False) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """x (B, T, D) target positions, memory (B, S, D), src_mask (B, 1, 1, S), tgt_mask (T, T') causal.
        Returns (B, T, D) and the self- and cross-attention weights (if ``need_weights``)."""
        kw = dict(cache=cache, layer=layer, need_weights=need_weights)
        if self.norm_first:
            a, self_w = self.self_attn(self.norm1(x), mask=tgt_mask, **kw)
            x = x + self.dropout(a)
            a, cross_w = self.cross_attn(self.norm2(x), memory, mask=src_mask, **kw)
            x = x + self.dropout(a)
            return x + self.dropout(self.ffn(self.norm3(x))), self_w, cross_w
        a, self_w = self.self_attn(x, mask=tgt_mask, **kw)
        x = self.norm1(x + self.dropout(a))
        a, cross_w = self.cross_attn(x, memory, mask=src_mask, **kw)
        x = self.norm2(x + self.dropout(a))
        return self.norm3(x + self.dropout(self.ffn(x))), self_w, cross_w


# ---------------------------------------------------------------------------------------------------------
# §3.5 Positional encoding
# ---------------------------------------------------------------------------------------------------------


class PositionalEncoding(nn.Module):
    """§3.5: PE(pos, 2i) = sin(pos / 10000^(2i / D)),  PE(pos, 2i + 1) = cos(pos / 10000^(2i / D)).

    Each pair of dimensions is a sinusoid of its own wavelength (2 pi to 10000 * 2 pi), so PE(pos + k) is a
    linear function of PE(pos): relative positions are easy to attend to. The table is computed once for
    ``max_positions`` positions (a non-persistent buffer: it follows ``.to(device)`` but is not saved) and
    recomputed larger if a longer sequence comes.
    """

    def __init__(self, d_model: int, max_positions: int = 1024) -> None:
        super().__init__()
        self.d_model = d_model
        self.register_buffer("table", ta.from_numpy(self.sinusoids(max_positions, d_model)), persistent=False)

    @staticmethod
    def sinusoids(n_positions: int, d_model: int) -> np.ndarray:
        """The (n_positions, d_model) float32 table of §3.5 (computed in float64, then rounded)."""
        pos = np.arange(n_positions, dtype=np.float64)[:, None]
        inv_wavelength = np.exp(-math.log(10000.0) * np.arange(0, d_model, 2, dtype=np.float64) / d_model)
        table = np.zeros((n_positions, d_model), dtype=np.float64)
        table[:, 0::2] = np.sin(pos * inv_wavelength)
        table[:, 1::2] = np.cos(pos * inv_wavelength[: d_model // 2])
        return table.astype(np.float32)

    def forward(self, length: int, offset: int = 0) -> Tensor:
        """The encodings of positions offset, ..., offset + length - 1: (length, D)."""
        if offset + length > self.table.shape[0]:
            device = self.table.device
            bigger = self.sinusoids(max(offset + length, 2 * self.table.shape[0]), self.d_model)
            self.table = ta.tensor(bigger, device=device, dtype=self.table.dtype)
        return self.table[offset : offset + length]


# ---------------------------------------------------------------------------------------------------------
# The whole model
# ---------------------------------------------------------------------------------------------------------


class Transformer(nn.Module):
    """§3 The encoder-decoder Transformer (Figure 1) with one shared, tied embedding.

    ``forward(src, tgt_in)`` gives next-token logits for every target position ("teacher forcing");
    ``encode`` + ``decode`` (with a ``DecoderCache``) are the two halves, for decoding one step at a time.
    """

    def __init__(self, vocab_size: int, d_model: int = 512, n_heads: int = 8, n_encoder_layers: int = 6,
                 n_decoder_layers: int = 6, d_ff: int = 2048, dropout: float = 0.1, pad_id: int = 0,
                 norm_first: bool = False, max_positions: int = 1024, tie_embeddings: bool = True,
                 attention_dropout: float = 0.0) -> None:
        super().__init__()
        _check_hparams(vocab_size, d_model, n_heads, n_encoder_layers, n_decoder_layers, d_ff, dropout, pad_id,
                       max_positions, attention_dropout)
        self.vocab_size, self.d_model, self.n_heads = vocab_size, d_model, n_heads
        self.n_encoder_layers, self.n_decoder_layers, self.d_ff = n_encoder_layers, n_decoder_layers, d_ff
        self.dropout_p, self.attention_dropout = dropout, attention_dropout
        self.pad_id, self.norm_first = pad_id, norm_first
        self.max_positions, self.tie_embeddings = max_positions, tie_embeddings

        # §3.4 One embedding for source and target tokens (joint vocabulary) ...
        self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        nn.init.normal_(self.embedding.weight, 0.0, d_model**-0.5)
        with ta.no_grad():
            self.embedding.weight[pad_id] = 0.0  # the padding row starts at zero (and gets no gradient)
        # ... and, tied, the pre-softmax projection (see ``project``); untied, a matrix of its own.
        if not tie_embeddings:
            self.output_proj = nn.Linear(d_model, vocab_size, bias=False)
            nn.init.xavier_uniform_(self.output_proj.weight)
        self.positional = PositionalEncoding(d_model, max_positions)
        self.dropout = nn.Dropout(dropout)  # §5.4: on the sums of embeddings and positional encodings

        self.encoder_layers = nn.ModuleList(
            EncoderLayer(d_model, n_heads, d_ff, dropout, norm_first, attention_dropout)
            for _ in range(n_encoder_layers))
        self.decoder_layers = nn.ModuleList(
            DecoderLayer(d_model, n_heads, d_ff, dropout, norm_first, attention_dropout)
            for _ in range(n_decoder_layers))
        if norm_first:  # pre-LN leaves the residual stream unnormalised: normalise each stack's output
            self.encoder_norm, self.decoder_norm = nn.LayerNorm(d_model), nn.LayerNorm(d_model)

    # ---- §3.4 Embeddings and softmax ------------------------------------------------------------------------
    def embed(self, tokens: Tensor, offset: int = 0) -> Tensor:
        """Token ids (B, T) -> Dropout(Embedding(tokens) * sqrt(D) + PE(offset .. offset + T - 1)): (B, T, D)."""
        x = self.embedding(tokens) * math.sqrt(self.d_model)
        return self.dropout(x + self.positional(tokens.shape[1], offset))

    def project(self, h: Tensor) -> Tensor:
        """§3.4 The pre-softmax linear transformation, tied with the embedding: logits = h E^T (no bias)."""
        weight = self.embedding.weight if self.tie_embeddings else self.output_proj.weight
        return F.linear(h, weight)

    # ---- the two stacks ------------------------------------------------------------------------------------
    def encode(self, src: Tensor | np.ndarray, return_attention: bool = False) -> Any:
        """§3.1 Encoder: src ids (B, S) -> (memory (B, S, D), src_keep (B, S) bool, True at real tokens).

        Padding is masked out as a key in every self-attention; padded positions still get (meaningless)
        outputs, which the decoder never attends to. With ``return_attention`` a third item: the
        self-attention weights of every layer, a list of (B, H, S, S).
        """
        src = self._ids(src, "src")
        B, S = src.shape
        src_keep = src != self.pad_id
        mask = src_keep.reshape(B, 1, 1, S)
        x = self.embed(src)
        weights = []
        for layer in self.encoder_layers:
            x, w = layer(x, mask, need_weights=return_attention)
            weights.append(w)
        if self.norm_first:
            x = self.encoder_norm(x)
        return (x, src_keep, weights) if return_attention else (x, src_keep)

    def decode_hidden(self, tgt_in: Tensor | np.ndarray, memory: Tensor, src_keep: Tensor,
                      cache: DecoderCache | None = None, return_attention: bool = False) -> Any:
        """§3.1 Decoder up to its last layer's output (B, T, D), before the projection to the vocabulary."""
        tgt_in = self._ids(tgt_in, "tgt_in")
        B, T = tgt_in.shape
        if memory.ndim != 3 or memory.shape[0] != B or tuple(src_keep.shape) != tuple(memory.shape[:2]):
            raise ValueError(f"Transformer.decode: tgt_in {tuple(tgt_in.shape)}, memory {tuple(memory.shape)} and "
                             f"src_keep {tuple(src_keep.shape)} do not fit together (expected memory (B, S, D), "
                             "src_keep (B, S) with the same B)")
        past = 0
        if cache is not None:
            if ta.is_grad_enabled() and any(p.requires_grad for p in self.parameters()):
                raise RuntimeError("Transformer.decode: a DecoderCache is for inference; run under ta.no_grad()")
            past = cache.length
        # Causal mask: position past + i may attend to positions 0 .. past + i (the cached ones and itself).
        tgt_mask = None
        if T > 1:
            rows = ta.arange(T, device=tgt_in.device).reshape(T, 1) + past
            tgt_mask = rows >= ta.arange(past + T, device=tgt_in.device).reshape(1, past + T)
        src_mask = src_keep.reshape(B, 1, 1, src_keep.shape[1])
        x = self.embed(tgt_in, offset=past)
        self_weights, cross_weights = [], []
        for i, layer in enumerate(self.decoder_layers):
            x, sw, cw = layer(x, memory, src_mask, tgt_mask, cache=cache, layer=i, need_weights=return_attention)
            self_weights.append(sw)
            cross_weights.append(cw)
        if self.norm_first:
            x = self.decoder_norm(x)
        if cache is not None:
            cache.length += T
        return (x, {"self": self_weights, "cross": cross_weights}) if return_attention else x

    def decode(self, tgt_in: Tensor | np.ndarray, memory: Tensor, src_keep: Tensor,
               cache: DecoderCache | None = None, return_attention: bool = False) -> Any:
        """Decoder: target ids (B, T) -> next-token logits (B, T, V) float32.

        Without a cache, ``tgt_in`` is the whole prefix (bos first). With one, it holds only the positions
        not yet decoded (usually one) and the logits are for those. With ``return_attention``, also a dict
        ``{"self": [...], "cross": [...]}`` of per-layer weights (B, H, T, T') and (B, H, T, S).
        """
        out = self.decode_hidden(tgt_in, memory, src_keep, cache, return_attention)
        if return_attention:
            return self.project(out[0]), out[1]
        return self.project(out)

    def init_cache(self, memory: Tensor) -> DecoderCache:
        """An empty ``DecoderCache`` with every cross-attention's keys and values of ``memory`` projected
        already (§3.2.3: they are the same at every step). Copying them (``cache.reorder``) is cheaper than
        projecting copies of the memory: beam search projects each sentence once, then repeats the result."""
        cache = DecoderCache()
        for i, layer in enumerate(self.decoder_layers):
            k, v = layer.cross_attn.project_memory(memory)
            cache.cross_attention[i] = (k.data, v.data)
        return cache

    def forward(self, src: Tensor | np.ndarray, tgt_in: Tensor | np.ndarray) -> Tensor:
        """Teacher forcing: logits (B, T, V) for every target position, given the source and the target
        shifted right (bos first)."""
        memory, src_keep = self.encode(src)
        return self.decode(tgt_in, memory, src_keep)

    def loss(self, logits: Tensor, tgt_out: Tensor | np.ndarray, label_smoothing: float = 0.1) -> tuple[Tensor, int]:
        """§5.4 Cross-entropy with label smoothing (eps_ls = 0.1), *summed* over the non-pad target tokens,
        and their number (divide by it for the mean; summing lets gradient accumulation weigh tokens equally).

        With smoothing eps the target distribution is (1 - eps) on the right token plus eps spread evenly
        over the vocabulary (PyTorch's ``label_smoothing``), which "hurts perplexity ... but improves BLEU".
        """
        tgt_out = self._ids(tgt_out, "tgt_out")
        if tuple(logits.shape[:-1]) != tuple(tgt_out.shape):
            raise ValueError(f"Transformer.loss: logits {tuple(logits.shape)} do not match tgt_out "
                             f"{tuple(tgt_out.shape)}")
        target = tgt_out.reshape(-1)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target, ignore_index=self.pad_id,
                               reduction="sum", label_smoothing=label_smoothing)
        return loss, int((target != self.pad_id).sum().item())

    # ---- helpers --------------------------------------------------------------------------------------------
    @property
    def device(self) -> Any:
        return self.embedding.weight.device

    def _ids(self, ids: Tensor | np.ndarray, name: str) -> Tensor:
        if not isinstance(ids, Tensor):
            ids = ta.tensor(np.asarray(ids), device=self.device)
        if ids.ndim != 2 or ids.dtype.kind not in "iu":
            raise ValueError(f"Transformer: {name} must be integer token ids of shape (batch, time), got "
                             f"{ids.dtype} of shape {tuple(ids.shape)}")
        return ids

    def extra_repr(self) -> str:
        return (f"vocab_size={self.vocab_size}, d_model={self.d_model}, n_heads={self.n_heads}, "
                f"layers={self.n_encoder_layers}+{self.n_decoder_layers}, d_ff={self.d_ff}, "
                f"dropout={self.dropout_p}, attention_dropout={self.attention_dropout}, norm_first={self.norm_first}, "
                f"tie_embeddings={self.tie_embeddings}")


def _check_hparams(vocab_size: int, d_model: int, n_heads: int, n_encoder_layers: int, n_decoder_layers: int,
                   d_ff: int, dropout: float, pad_id: int, max_positions: int, attention_dropout: float) -> None:
    problems = []
    for name, value in (("vocab_size", vocab_size), ("d_model", d_model), ("n_heads", n_heads), ("d_ff", d_ff),
                        ("max_positions", max_positions)):
        if not isinstance(value, int) or value < 1:
            problems.append(f"{name}={value!r} must be a positive integer")
    for name, value in (("n_encoder_layers", n_encoder_layers), ("n_decoder_layers", n_decoder_layers)):
        if not isinstance(value, int) or value < 0:
            problems.append(f"{name}={value!r} must be a non-negative integer")
    if isinstance(d_model, int) and isinstance(n_heads, int) and n_heads > 0 and d_model % n_heads:
        problems.append(f"d_model={d_model} must be divisible by n_heads={n_heads} (d_k = d_model / n_heads)")
    if isinstance(d_model, int) and d_model % 2:
        problems.append(f"d_model={d_model} must be even (sin/cos pairs of the positional encoding)")
    for name, value in (("dropout", dropout), ("attention_dropout", attention_dropout)):
        if not 0.0 <= value < 1.0:
            problems.append(f"{name}={value!r} must be in [0, 1)")
    if isinstance(vocab_size, int) and not 0 <= pad_id < vocab_size:
        problems.append(f"pad_id={pad_id!r} must be a token id in [0, vocab_size={vocab_size})")
    if problems:
        raise ValueError("Transformer: " + "; ".join(problems))


def build_model(vocab_size: int, pad_id: int = 0, preset: str | None = None, **hparams: Any) -> Transformer:
    """A ``Transformer`` from a preset (``PRESETS``) with any hyperparameter overridden by keyword:
    ``build_model(8000, preset="small", dropout=0.2)``; without a preset, ``Transformer``'s defaults."""
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"build_model: unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    allowed = {"d_model", "n_heads", "n_encoder_layers", "n_decoder_layers", "d_ff", "dropout", "attention_dropout",
               "norm_first", "max_positions", "tie_embeddings"}
    unknown = sorted(set(hparams) - allowed)
    if unknown:
        raise ValueError(f"build_model: unknown hyperparameter(s) {unknown}; allowed: {sorted(allowed)}")
    kwargs = {**(PRESETS[preset] if preset is not None else {}), **hparams}
    return Transformer(vocab_size, pad_id=pad_id, **kwargs)
