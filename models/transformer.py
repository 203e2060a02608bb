"""The Transformer of "Attention Is All You Need" (Vaswani et al., 2017), read next to the paper.

Section numbers (§) and equations refer to the paper (arXiv:1706.03762). The blocks are ``tinygrad_attn.nn``'s,
the same ones any other model uses (PyTorch's classes, names and arguments); this file composes them into the
translator. Shapes are batch-first::

    B batch   S source length   T target length   D = d_model   H heads   d_k = D / H   V vocabulary

The path of a sentence pair through the model::

    src (B, S) ids --embed--> (B, S, D) --N x nn.TransformerEncoderLayer--> memory (B, S, D)
    tgt_in (B, T) ids --embed--> (B, T, D) --N x nn.TransformerDecoderLayer(memory)--> (B, T, D)
                      --project--> logits (B, T, V)

Where each part of the paper is implemented (``nn`` is ``tinygrad_attn.nn``, ``F`` ``tinygrad_attn.functional``):

=========================================  ===================================================================
§3.1   Encoder and decoder stacks           ``Transformer.encode`` / ``Transformer.decode_hidden`` (below), over
                                            ``nn.TransformerEncoderLayer`` / ``nn.TransformerDecoderLayer``;
                                            residual + LayerNorm around each sublayer: ``_Layer._residual``
                                            (``tinygrad_attn/nn/transformer.py``)
§3.2.1 Scaled dot-product attention (1)     ``F.scaled_dot_product_attention`` (``tinygrad_attn/attention.py``)
§3.2.2 Multi-head attention                 ``nn.MultiheadAttention`` (``tinygrad_attn/nn/attention.py``):
                                            ``_in_projection`` and ``_heads`` (Q, K, V into heads), ``forward``
                                            (Concat(head_1, ..., head_h) W^O)
§3.2.3 Applications of attention            encoder self-attention with a padding mask (``encode``); masked
                                            decoder self-attention (``tgt_is_causal``) and encoder-decoder
                                            attention (``memory_key_padding_mask``) in ``decode_hidden``
§3.3   Position-wise feed-forward (2)       ``_Layer._ff_block``: ``linear2(relu(linear1(x)))``
§3.4   Embeddings and softmax               ``Transformer.embed`` (times sqrt(D)), ``Transformer.project``
                                            (the embedding matrix, tied)
§3.5   Positional encoding                  ``nn.PositionalEncoding``, ``nn.positional.sinusoids``
§5.4   Regularization                       residual dropout: the layers' ``dropout1..3`` and
                                            ``positional.dropout`` (embeddings + positions); label smoothing:
                                            ``Transformer.loss``
(decoding) key/value cache                  ``Transformer.init_cache``, ``nn.DecoderCache``, ``nn.KVCache``
=========================================  ===================================================================

Where this follows the paper and where it chooses:

- Residual blocks are the paper's **post-LN** ``LayerNorm(x + Dropout(Sublayer(x)))`` (§3.1, §5.4). The
  Annotated Transformer uses pre-LN ``x + Dropout(Sublayer(LayerNorm(x)))`` "for code simplicity";
  here that is ``norm_first=True`` (it then needs a final LayerNorm after each stack, as it has).
- One embedding table for source tokens, target tokens and the pre-softmax projection (§3.4: "we share
  the same weight matrix between the two embedding layers and the pre-softmax linear transformation"),
  which needs a joint source/target vocabulary (our SentencePiece model is trained on both languages).
- Dropout (§5.4, P_drop = 0.1) on each sublayer output before the residual add, and on the sums of
  embeddings and positional encodings. Not on the attention weights by default (``attention_dropout``, 0.0):
  the paper has none there, nor fairseq by default; tensor2tensor's later base settings use 0.1, which
  slowed learning on Multi30k (docs/experiments.md). Not after the FFN's ReLU (``activation_dropout=0``;
  ``torch.nn.Transformer`` and the Annotated Transformer put one there, the paper and fairseq do not): it
  would touch the widest activations (d_ff per position), a cost on a CPU for no gain (docs/experiments.md).
- Initialisation, which the paper does not state (``Transformer.reset_parameters``): Glorot/xavier-uniform for
  every projection (as the Annotated Transformer), W^Q, W^K, W^V each as its own D x D matrix, zero biases; the
  embedding ~ N(0, D^-1/2), because the same matrix is also the output projection: with unit-variance rows the
  initial logits would have variance D, far too peaked. Times sqrt(D) (§3.4) the input embeddings then have
  unit variance, the scale of the positional encoding.
- Decoding keeps a key/value cache (``nn.DecoderCache``): each new target token costs one position of work
  per layer.

State-dict names are those of the ``nn`` blocks (PyTorch's: ``self_attn.in_proj_weight``,
``multihead_attn``, ``linear1``, ...). Checkpoints written before the model used them load through
``upgrade_state_dict`` (applied by ``Transformer.load_state_dict``; the mapping is in ``OLD_NAMES``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

import tinygrad_attn as ta
import tinygrad_attn.functional as F
from models.token_ids import token_ids
from tinygrad_attn import Tensor, nn

__all__ = ["PRESETS", "build_model", "count_parameters", "Transformer", "upgrade_state_dict", "OLD_NAMES",
           "upgrade_optimizer_state_dict"]

# ---------------------------------------------------------------------------------------------------------
# Presets. Parameter counts for a joint vocabulary of V = 8,000 (``count_parameters`` computes them for any
# V; the shared embedding, V * D, is counted once). Speeds and scores: docs/experiments.md.
# ---------------------------------------------------------------------------------------------------------

PRESETS: dict[str, dict[str, Any]] = {
    # 2.41M parameters (1.02M of them the shared embedding): for a short CPU run (configs/tiny.yaml). At
    # D = 128 the tied output projection (D x V per target token) costs about as much as all six layers,
    # so a narrow model with 3+3 layers buys depth cheaply.
    "tiny": dict(d_model=128, n_heads=4, n_encoder_layers=3, n_decoder_layers=3, d_ff=512, dropout=0.1,
                 attention_dropout=0.0),
    # 7.58M parameters (2.05M embedding): the CPU preset of configs/small.yaml.
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
# The whole model (§3, Figure 1)
# ---------------------------------------------------------------------------------------------------------


class Transformer(nn.Module):
    """§3 The encoder-decoder Transformer (Figure 1) with one shared, tied embedding.

    ``forward(src, tgt_in)`` gives next-token logits for every target position ("teacher forcing");
    ``encode`` + ``decode`` (with the cache of ``init_cache``) are the two halves, for decoding one step at a time.
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
        # ... and, tied, the pre-softmax projection (see ``project``); untied, a matrix of its own.
        if not tie_embeddings:
            self.output_proj = nn.Linear(d_model, vocab_size, bias=False)
        # §3.5 + §5.4: Dropout(embedding * sqrt(D) + PE), batch-first
        self.positional = nn.PositionalEncoding(d_model, dropout, max_positions, batch_first=True)

        # §3.1 N identical layers per stack; post-LN (the paper) or pre-LN; ReLU FFN without inner dropout.
        layer: dict[str, Any] = dict(d_model=d_model, nhead=n_heads, dim_feedforward=d_ff, dropout=dropout,
                                     activation="relu", batch_first=True, norm_first=norm_first,
                                     attention_dropout=attention_dropout, activation_dropout=0.0)
        self.encoder_layers = nn.ModuleList(nn.TransformerEncoderLayer(**layer) for _ in range(n_encoder_layers))
        self.decoder_layers = nn.ModuleList(nn.TransformerDecoderLayer(**layer) for _ in range(n_decoder_layers))
        if norm_first:  # pre-LN leaves the residual stream unnormalised: normalise each stack's output
            self.encoder_norm, self.decoder_norm = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform projections with zero biases; W^Q, W^K, W^V each initialised as the D x D matrix it
        is, U(-b, b) with b = sqrt(6 / (D + D)), although they are stored stacked (whose (3D, D) fan would give a
        smaller b). The embedding ~ N(0, D^-1/2), its padding row 0. LayerNorms: ones and zeros (their default)."""
        D = self.d_model
        nn.init.normal_(self.embedding.weight, 0.0, D**-0.5)
        with ta.no_grad():
            self.embedding.weight[self.pad_id] = 0.0  # the padding row starts at zero (and gets no gradient)
        if not self.tie_embeddings:
            nn.init.xavier_uniform_(self.output_proj.weight)
        bound = math.sqrt(6.0 / (2 * D))
        for module in self.modules():
            if isinstance(module, nn.MultiheadAttention):
                nn.init.uniform_(module.in_proj_weight, -bound, bound)
                nn.init.zeros_(module.in_proj_bias)
                nn.init.xavier_uniform_(module.out_proj.weight)
                nn.init.zeros_(module.out_proj.bias)
            elif isinstance(module, (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)):
                for linear in (module.linear1, module.linear2):
                    nn.init.xavier_uniform_(linear.weight)
                    nn.init.zeros_(linear.bias)

    # ---- §3.4 Embeddings and softmax ------------------------------------------------------------------------
    def embed(self, tokens: Tensor, offset: int = 0) -> Tensor:
        """Token ids (B, T) -> Dropout(Embedding(tokens) * sqrt(D) + PE(offset .. offset + T - 1)): (B, T, D)."""
        return self.positional(self.embedding(tokens) * math.sqrt(self.d_model), start=offset)

    def project(self, h: Tensor) -> Tensor:
        """§3.4 The pre-softmax linear transformation, tied with the embedding: logits = h E^T (no bias)."""
        weight = self.embedding.weight if self.tie_embeddings else self.output_proj.weight
        return F.linear(h, weight)

    # ---- §3.1 the two stacks ---------------------------------------------------------------------------------
    def encode(self, src: Tensor | np.ndarray, return_attention: bool = False) -> Any:
        """§3.1 Encoder: src ids (B, S) -> (memory (B, S, D), src_keep (B, S) bool, True at real tokens).

        §3.2.3 Padding is masked out as a key in every self-attention; padded positions still get
        (meaningless) outputs, which the decoder never attends to. With ``return_attention`` a third item:
        the self-attention weights of every layer, a list of (B, H, S, S).
        """
        src = self._ids(src, "src")
        src_keep = src != self.pad_id
        padding = src == self.pad_id  # nn's convention: True where attention is NOT allowed
        x = self.embed(src)
        weights = []
        for layer in self.encoder_layers:
            if return_attention:
                x, w = layer(x, src_key_padding_mask=padding, need_weights=True)
                weights.append(w)
            else:
                x = layer(x, src_key_padding_mask=padding)
        if self.norm_first:
            x = self.encoder_norm(x)
        return (x, src_keep, weights) if return_attention else (x, src_keep)

    def decode_hidden(self, tgt_in: Tensor | np.ndarray, memory: Tensor, src_keep: Tensor,
                      cache: nn.DecoderCache | None = None, return_attention: bool = False) -> Any:
        """§3.1 Decoder up to its last layer's output (B, T, D), before the projection to the vocabulary.

        §3.2.3 Target position i attends to positions 0 .. i (``tgt_is_causal``: with a cache, the positions
        cached before it too), and to every real source token."""
        tgt_in = self._ids(tgt_in, "tgt_in")
        B, T = tgt_in.shape
        if memory.ndim != 3 or memory.shape[0] != B or tuple(src_keep.shape) != tuple(memory.shape[:2]):
            raise ValueError(f"Transformer.decode: tgt_in {tuple(tgt_in.shape)}, memory {tuple(memory.shape)} and "
                             f"src_keep {tuple(src_keep.shape)} do not fit together (expected memory (B, S, D), "
                             "src_keep (B, S) with the same B)")
        if cache is not None and (not isinstance(cache, nn.DecoderCache) or len(cache.self_attn) != len(
                self.decoder_layers) or any(c is None for c in cache.cross_attn)):
            raise ValueError(f"Transformer.decode: cache must be the DecoderCache of model.init_cache(), got {cache!r}")
        past = cache.length if cache is not None else 0
        padding = src_keep.logical_not()
        x = self.embed(tgt_in, offset=past)
        self_weights, cross_weights = [], []
        for i, layer in enumerate(self.decoder_layers):
            caches = {} if cache is None else {"self_attn_cache": cache.self_attn[i],
                                               "cross_attn_cache": cache.cross_attn[i]}
            out = layer(x, memory, memory_key_padding_mask=padding, tgt_is_causal=True,
                        need_weights=return_attention, **caches)
            if return_attention:
                x, sw, cw = out
                self_weights.append(sw)
                cross_weights.append(cw)
            else:
                x = out
        if self.norm_first:
            x = self.decoder_norm(x)
        if cache is not None:
            cache.length += T
        return (x, {"self": self_weights, "cross": cross_weights}) if return_attention else x

    def decode(self, tgt_in: Tensor | np.ndarray, memory: Tensor, src_keep: Tensor,
               cache: nn.DecoderCache | None = None, return_attention: bool = False) -> Any:
        """Decoder: target ids (B, T) -> next-token logits (B, T, V) float32.

        Without a cache, ``tgt_in`` is the whole prefix (bos first). With one, it holds only the positions
        not yet decoded (usually one) and the logits are for those. With ``return_attention``, also a dict
        ``{"self": [...], "cross": [...]}`` of per-layer weights (B, H, T, T') and (B, H, T, S).
        """
        out = self.decode_hidden(tgt_in, memory, src_keep, cache, return_attention)
        if return_attention:
            return self.project(out[0]), out[1]
        return self.project(out)

    def init_cache(self, memory: Tensor | None = None) -> nn.DecoderCache:
        """A ``DecoderCache`` for decoding a batch one step at a time (under ``ta.no_grad()``), with every
        cross-attention's keys and values of ``memory`` projected already (§3.2.3: they are the same at every
        step; without ``memory``, the first ``decode`` call projects them). Copying them (``cache.reorder``)
        is cheaper than projecting copies of the memory: beam search projects each sentence once, then
        repeats the result."""
        cache = nn.DecoderCache(len(self.decoder_layers), cross_attention=True)
        if memory is not None:
            for layer, cross in zip(self.decoder_layers, cache.cross_attn):
                assert cross is not None  # cross_attention=True
                cross.update(*layer.multihead_attn.key_value(memory, memory))
        return cache

    def forward(self, src: Tensor | np.ndarray, tgt_in: Tensor | np.ndarray) -> Tensor:
        """Teacher forcing: logits (B, T, V) for every target position, given the source and the target
        shifted right (bos first)."""
        memory, src_keep = self.encode(src)
        return self.decode(tgt_in, memory, src_keep)

    def loss(self, logits: Tensor, tgt_out: Tensor | np.ndarray,
             label_smoothing: float = 0.1) -> tuple[Tensor, int | Tensor]:
        """§5.4 Cross-entropy with label smoothing (eps_ls = 0.1), *summed* over the non-pad target tokens,
        and their number (divide by it for the mean; summing lets gradient accumulation weigh tokens equally).

        With smoothing eps the target distribution is (1 - eps) on the right token plus eps spread evenly
        over the vocabulary (PyTorch's ``label_smoothing``), which "hurts perplexity ... but improves BLEU".

        The number is counted where ``tgt_out`` is: an int for a NumPy array or a CPU tensor; for a tensor on
        a GPU, a 0-d tensor there (an int would read it back to the host, a stall; ``int(n)`` does when asked).
        """
        if isinstance(tgt_out, Tensor) and not isinstance(tgt_out.data, np.ndarray):
            n_tokens: int | Tensor = (tgt_out != self.pad_id).sum()
        else:
            host = tgt_out.data if isinstance(tgt_out, Tensor) else np.asarray(tgt_out)
            n_tokens = int(np.count_nonzero(host != self.pad_id))
        tgt_out = self._ids(tgt_out, "tgt_out")
        if tuple(logits.shape[:-1]) != tuple(tgt_out.shape):
            raise ValueError(f"Transformer.loss: logits {tuple(logits.shape)} do not match tgt_out "
                             f"{tuple(tgt_out.shape)}")
        target = tgt_out.reshape(-1)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target, ignore_index=self.pad_id,
                               reduction="sum", label_smoothing=label_smoothing)
        return loss, n_tokens

    # ---- checkpoints -----------------------------------------------------------------------------------------
    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True,
                        assign: bool = False) -> nn.IncompatibleKeys:
        """``nn.Module.load_state_dict``, after ``upgrade_state_dict``: a state dict with the names of the
        model before it was built from ``nn``'s blocks (``OLD_NAMES``) loads too."""
        return super().load_state_dict(upgrade_state_dict(state_dict), strict=strict, assign=assign)

    # ---- helpers --------------------------------------------------------------------------------------------
    @property
    def device(self) -> Any:
        return self.embedding.weight.device

    def _ids(self, ids: Tensor | np.ndarray, name: str) -> Tensor:
        return token_ids(ids, self.device, f"Transformer: {name}")

    def extra_repr(self) -> str:
        return (f"vocab_size={self.vocab_size}, d_model={self.d_model}, n_heads={self.n_heads}, "
                f"layers={self.n_encoder_layers}+{self.n_decoder_layers}, d_ff={self.d_ff}, "
                f"dropout={self.dropout_p}, attention_dropout={self.attention_dropout}, norm_first={self.norm_first}, "
                f"tie_embeddings={self.tie_embeddings}")


# ---------------------------------------------------------------------------------------------------------
# Checkpoints from before the nn blocks
# ---------------------------------------------------------------------------------------------------------

# Old name (inside ``encoder_layers.<i>.`` / ``decoder_layers.<i>.``) -> new name. The model had its own
# attention with packed Q/K/V (``qkv_proj``) for self-attention and Q + packed K/V (``q_proj``, ``kv_proj``) for
# cross-attention, and its own FFN (``ffn.w_1``, ``ffn.w_2``). Same shapes and layouts, except cross-attention:
# its ``in_proj_weight`` is the old q_proj weight stacked on top of the kv_proj weight (and so for the biases).
_RENAMED = {
    "self_attn.qkv_proj.weight": "self_attn.in_proj_weight",
    "self_attn.qkv_proj.bias": "self_attn.in_proj_bias",
    "cross_attn.out_proj.weight": "multihead_attn.out_proj.weight",
    "cross_attn.out_proj.bias": "multihead_attn.out_proj.bias",
    "ffn.w_1.weight": "linear1.weight",
    "ffn.w_1.bias": "linear1.bias",
    "ffn.w_2.weight": "linear2.weight",
    "ffn.w_2.bias": "linear2.bias",
}
_STACKED = {  # new name <- (old query part, old key/value part), stacked along dim 0
    "multihead_attn.in_proj_weight": ("cross_attn.q_proj.weight", "cross_attn.kv_proj.weight"),
    "multihead_attn.in_proj_bias": ("cross_attn.q_proj.bias", "cross_attn.kv_proj.bias"),
}
OLD_NAMES: dict[str, str] = {**_RENAMED, **{" + ".join(parts): new for new, parts in _STACKED.items()}}
_STACKED_PART = {part: (new, parts) for new, parts in _STACKED.items() for part in parts}
_LAYER_KEY = re.compile(r"^((?:encoder|decoder)_layers\.\d+\.)(.+)$")


def upgrade_state_dict(state_dict: Mapping[str, Any]) -> Mapping[str, Any]:
    """``state_dict`` with the old names of ``OLD_NAMES`` renamed (cross-attention's q_proj and kv_proj
    stacked into one ``in_proj``); returned as it is when it has none of them. Other keys are kept, and so
    is half of a q_proj/kv_proj pair (for ``load_state_dict`` to report)."""
    if not _has_old_names(state_dict):
        return state_dict
    layer_keys = [(key, m.group(1), m.group(2)) for key in state_dict if (m := _LAYER_KEY.match(key))]
    out = {key: value for key, value in state_dict.items() if key not in {k for k, _, _ in layer_keys}}
    for key, prefix, name in layer_keys:
        if name in _RENAMED:
            out[prefix + _RENAMED[name]] = state_dict[key]
        elif name in _STACKED_PART:
            new, (q, kv) = _STACKED_PART[name]
            if prefix + new in out:
                continue
            if prefix + q in state_dict and prefix + kv in state_dict:
                out[prefix + new] = np.concatenate([_array(state_dict[prefix + q]), _array(state_dict[prefix + kv])])
            else:
                out[key] = state_dict[key]
        else:
            out[key] = state_dict[key]
    return out


# The old parameter order within a layer (the optimizer's state is keyed by position, not by name).
_OLD_LAYER_ORDER = {
    "encoder_layers": ["self_attn.qkv_proj", "self_attn.out_proj", "ffn.w_1", "ffn.w_2", "norm1", "norm2"],
    "decoder_layers": ["self_attn.qkv_proj", "self_attn.out_proj", "cross_attn.q_proj", "cross_attn.kv_proj",
                       "cross_attn.out_proj", "ffn.w_1", "ffn.w_2", "norm1", "norm2", "norm3"],
}


def _old_parameter_names(model: Transformer) -> list[str]:
    """The parameter names of ``model``'s configuration as the old model listed them, in its order."""
    names = ["embedding.weight"] + ([] if model.tie_embeddings else ["output_proj.weight"])
    for stack, n in (("encoder_layers", model.n_encoder_layers), ("decoder_layers", model.n_decoder_layers)):
        names += [f"{stack}.{i}.{part}.{kind}" for i in range(n) for part in _OLD_LAYER_ORDER[stack]
                  for kind in ("weight", "bias")]
    if model.norm_first:
        names += ["encoder_norm.weight", "encoder_norm.bias", "decoder_norm.weight", "decoder_norm.bias"]
    return names


def upgrade_optimizer_state_dict(optimizer_state: dict[str, Any], saved_model_state: Mapping[str, Any],
                                 model: Transformer) -> dict[str, Any]:
    """An optimizer's ``state_dict`` saved with a model of the old names (``saved_model_state`` has them),
    renumbered for ``model``'s parameters: old position -> old name -> new name -> new position, with the
    state of cross-attention's q_proj and kv_proj stacked as their weights are (``upgrade_state_dict``).
    Returned as it is when ``saved_model_state`` has the new names. For resuming an old run:
    ``optimizer.load_state_dict(upgrade_optimizer_state_dict(saved.optimizer, saved.model, model))``."""
    if not _has_old_names(saved_model_state):
        return optimizer_state
    groups = optimizer_state["param_groups"]
    old_names = _old_parameter_names(model)
    if len(groups) != 1 or len(groups[0]["params"]) != len(old_names):
        raise ValueError(f"upgrade_optimizer_state_dict: expected one parameter group of {len(old_names)} "
                         f"parameters (the old model's), got {[len(g['params']) for g in groups]}")
    by_name = {old_names[position]: optimizer_state["state"].get(index, {})
               for position, index in enumerate(groups[0]["params"])}
    new_to_old = {new: old for old, new in _RENAMED.items()}
    names = [name for name, _ in model.named_parameters()]
    state: dict[int, dict[str, Any]] = {}
    for position, name in enumerate(names):
        m = _LAYER_KEY.match(name)
        if m is None:
            parts = [name]
        elif m.group(2) in _STACKED:
            parts = [m.group(1) + part for part in _STACKED[m.group(2)]]
        else:
            parts = [m.group(1) + new_to_old.get(m.group(2), m.group(2))]
        entries = [by_name[part] for part in parts]
        if not all(entries):  # no state yet (never stepped)
            continue
        state[position] = {key: np.concatenate([_array(e[key]) for e in entries]) if _is_array(value) else value
                           for key, value in entries[0].items()}
    return {"state": state, "param_groups": [{**groups[0], "params": list(range(len(names)))}]}


def _has_old_names(state_dict: Mapping[str, Any]) -> bool:
    return any((m := _LAYER_KEY.match(key)) and (m.group(2) in _RENAMED or m.group(2) in _STACKED_PART)
               for key in state_dict)


def _is_array(value: Any) -> bool:
    return hasattr(value, "shape") and len(value.shape) > 0


def _array(value: Any) -> np.ndarray:
    """A state-dict value (Tensor, NumPy or PyTorch array) as a NumPy array."""
    if isinstance(value, Tensor):
        return value.numpy()
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return np.asarray(value)


# ---------------------------------------------------------------------------------------------------------
# Construction
# ---------------------------------------------------------------------------------------------------------


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
    for name, p in (("dropout", dropout), ("attention_dropout", attention_dropout)):
        if not 0.0 <= p < 1.0:
            problems.append(f"{name}={p!r} must be in [0, 1)")
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
