"""BERT (Devlin et al., 2019): the encoder-only Transformer, read next to the paper.

The same ``tinygrad_attn.nn`` blocks as the translator's encoder (``nn.TransformerEncoderLayer``), with no
causal mask: every token attends to every real token on both sides ("bidirectional"); only padding is
masked. What makes it BERT is the input and the two heads::

    ids (B, S), segments (B, S) --embed--> (B, S, D) --N x nn.TransformerEncoderLayer--> hidden (B, S, D)
        masked LM:      hidden[chosen positions] (M, D) --dense, GELU, LayerNorm, E^T + b--> logits (M, V)
        classification: hidden[:, 0] ([CLS]) (B, D) --dense, tanh ("pooler"), dropout, linear--> logits (B, C)

Where each part of the paper (arXiv:1810.04805) is implemented:

=====================================  =====================================================================
§3 input representation (Figure 2)     ``BERT.embed``: token + learned position + segment embeddings, summed,
                                       then LayerNorm and dropout
§3 the encoder                         ``BERT.encode``: post-LN (BERT's) ``nn.TransformerEncoderLayer`` with
                                       GELU, padding mask only; ``norm_first=True`` gives pre-LN
§3.1 Task #1: masked LM                ``BERT.mlm_logits`` (scores only the chosen positions),
                                       ``BERT.mlm_loss``; which positions and how they are corrupted:
                                       ``models.mlm.masking.mask_tokens``
§3.2 fine-tuning, [CLS] pooling        ``BERT.pooled``, ``BERT.classify``, ``BERT.classification_loss``
appendix A.2 initialisation            ``BERT.reset_parameters``: N(0, 0.02) weights, zero biases
=====================================  =====================================================================

Choices: the masked-LM output projection is the token embedding (tied, as BERT) plus a bias per token; the
hidden states of the chosen positions are gathered *before* that projection, so a batch with M masked
tokens costs M x D x V there, not B x S x D x V. Next-sentence prediction (§3.1 Task #2) is left out, as
RoBERTa found it does not help; sentence pairs still carry segment ids (``models.mlm.examples``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

import tinygrad_attn as ta
import tinygrad_attn.functional as F
from models.token_ids import token_ids
from tinygrad_attn import Tensor, nn

__all__ = ["BERT", "PRESETS", "build_bert"]

PRESETS: dict[str, dict[str, Any]] = {
    # For tests and trying things out: seconds per hundred steps.
    "mini": dict(d_model=64, n_heads=2, n_layers=2, d_ff=256),
    # 0.96M parameters with a 4,000-piece vocabulary (0.51M of them the token embedding): configs/mlm_small.yaml.
    "small": dict(d_model=128, n_heads=4, n_layers=2, d_ff=512),
    # Twice as deep (1.36M parameters with 4,000 pieces): configs/mlm_medium.yaml, then configs/pairs.yaml.
    "medium": dict(d_model=128, n_heads=4, n_layers=4, d_ff=512),
    # BERT-base's shape (110M with its 30k WordPiece vocabulary); a GPU model.
    "base": dict(d_model=768, n_heads=12, n_layers=12, d_ff=3072),
}


class BERT(nn.Module):
    """Token, position and segment embeddings, a stack of bidirectional encoder layers, and two heads:
    the masked-LM head (tied to the token embedding) and a [CLS]-pooled classifier with ``n_classes``."""

    def __init__(self, vocab_size: int, d_model: int = 128, n_heads: int = 4, n_layers: int = 4, d_ff: int = 512,
                 dropout: float = 0.1, attention_dropout: float = 0.1, max_positions: int = 128, n_segments: int = 2,
                 n_classes: int = 2, pad_id: int = 0, norm_first: bool = False, layer_norm_eps: float = 1e-12) -> None:
        super().__init__()
        _check_hparams(vocab_size, d_model, n_heads, n_layers, d_ff, dropout, attention_dropout, max_positions,
                       n_segments, n_classes, pad_id)
        self.vocab_size, self.d_model, self.n_heads, self.n_layers, self.d_ff = (vocab_size, d_model, n_heads,
                                                                                 n_layers, d_ff)
        self.dropout_p, self.attention_dropout, self.max_positions = dropout, attention_dropout, max_positions
        self.n_segments, self.n_classes, self.pad_id, self.norm_first = n_segments, n_classes, pad_id, norm_first

        # §3 Input representation: the sum of three learned embeddings, normalised.
        self.token_embedding = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        self.position_embedding = nn.Embedding(max_positions, d_model)
        self.segment_embedding = nn.Embedding(n_segments, d_model)
        self.embedding_norm = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.embedding_dropout = nn.Dropout(dropout)

        # The encoder: the translator's layer, GELU (tanh form) instead of ReLU, dropout on the attention weights too.
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(d_model, n_heads, d_ff, dropout, activation=gelu,
                                       layer_norm_eps=layer_norm_eps, batch_first=True, norm_first=norm_first,
                                       attention_dropout=attention_dropout, activation_dropout=0.0)
            for _ in range(n_layers))
        if norm_first:  # pre-LN leaves the residual stream unnormalised
            self.final_norm = nn.LayerNorm(d_model, eps=layer_norm_eps)

        # §3.1 The masked-LM head: a transform, then the token embedding (tied) plus a bias per token.
        self.mlm_dense = nn.Linear(d_model, d_model)
        self.mlm_norm = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.mlm_bias = nn.Parameter(ta.zeros(vocab_size))

        # §3.2 The classifier on [CLS]: the "pooler" (dense + tanh), dropout, a linear layer to the classes.
        self.pooler = nn.Linear(d_model, d_model)
        self.classifier_dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(d_model, n_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """BERT's initialisation: every weight matrix and embedding ~ N(0, 0.02), biases 0, LayerNorms 1 and 0,
        the padding embedding 0."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, 0.0, 0.02)
            elif isinstance(module, nn.MultiheadAttention):
                nn.init.normal_(module.in_proj_weight, 0.0, 0.02)
                nn.init.zeros_(module.in_proj_bias)
        with ta.no_grad():
            self.token_embedding.weight[self.pad_id] = 0.0
        nn.init.zeros_(self.mlm_bias)

    # ---- §3 the encoder ------------------------------------------------------------------------------------
    def embed(self, ids: Tensor, segments: Tensor) -> Tensor:
        """ids, segments (B, S) -> Dropout(LayerNorm(E_token[ids] + E_position[0..S-1] + E_segment[segments]))."""
        positions = ta.arange(ids.shape[1], device=ids.device)
        x = self.token_embedding(ids) + self.position_embedding(positions) + self.segment_embedding(segments)
        return self.embedding_dropout(self.embedding_norm(x))

    def encode(self, ids: Tensor | np.ndarray, segments: Tensor | np.ndarray | None = None,
               return_attention: bool = False) -> Any:
        """Token ids (B, S) (and segment ids, default all 0) -> hidden states (B, S, D).

        Every position attends to every real token of its sequence; padding is masked as a key only, so
        padded positions get (meaningless) outputs that no head reads. With ``return_attention``, also the
        self-attention weights of every layer, a list of (B, H, S, S)."""
        ids = self._ids(ids, "ids")
        segments = ta.zeros_like(ids) if segments is None else self._ids(segments, "segments")
        if tuple(segments.shape) != tuple(ids.shape):
            raise ValueError(f"BERT: segments {tuple(segments.shape)} must have the shape of ids {tuple(ids.shape)}")
        if ids.shape[1] > self.max_positions:
            raise ValueError(f"BERT: a sequence of {ids.shape[1]} tokens is longer than max_positions="
                             f"{self.max_positions}")
        padding = ids == self.pad_id  # nn's convention: True where attention is NOT allowed
        x = self.embed(ids, segments)
        weights = []
        for layer in self.layers:
            if return_attention:
                x, w = layer(x, src_key_padding_mask=padding, need_weights=True)
                weights.append(w)
            else:
                x = layer(x, src_key_padding_mask=padding)
        if self.norm_first:
            x = self.final_norm(x)
        return (x, weights) if return_attention else x

    # ---- §3.1 the masked language model --------------------------------------------------------------------
    def mlm_logits(self, hidden: Tensor, positions: np.ndarray) -> Tensor:
        """Scores over the vocabulary (M, V) at the M flat ``positions`` (indices into B * S) of ``hidden``
        (B, S, D): the rows are gathered first, then GELU(dense), LayerNorm, and h E^T + b (E tied)."""
        rows = hidden.reshape(-1, self.d_model)[np.asarray(positions, dtype=np.int64)]
        h = self.mlm_norm(gelu(self.mlm_dense(rows)))
        return F.linear(h, self.token_embedding.weight, self.mlm_bias)

    def mlm_loss(self, ids: Tensor | np.ndarray, segments: Tensor | np.ndarray | None,
                 labels: np.ndarray, ignore_id: int = -1) -> tuple[Tensor, Tensor, np.ndarray]:
        """Mean cross-entropy over the chosen positions (``labels != ignore_id``; ``labels`` (B, S) holds the
        original token there), with the logits (M, V) and the targets (M,). Only chosen rows are scored."""
        labels = np.asarray(labels)
        positions = np.flatnonzero(labels.reshape(-1) != ignore_id)
        if positions.size == 0:
            raise ValueError("BERT.mlm_loss: no position is chosen (every label is ignore_id)")
        logits = self.mlm_logits(self.encode(ids, segments), positions)
        targets = labels.reshape(-1)[positions]
        loss = F.cross_entropy(logits, ta.tensor(targets, device=self.device))
        return loss, logits, targets

    # ---- §3.2 classification from [CLS] --------------------------------------------------------------------
    def pooled(self, hidden: Tensor) -> Tensor:
        """The "pooler": tanh(W h_[CLS] + b), from the first position's hidden state (B, D)."""
        return self.pooler(hidden[:, 0]).tanh()

    def classify(self, ids: Tensor | np.ndarray, segments: Tensor | np.ndarray | None = None) -> Tensor:
        """Class logits (B, C) of each sequence, read from its [CLS] token."""
        return self.classifier(self.classifier_dropout(self.pooled(self.encode(ids, segments))))

    def classification_loss(self, ids: Tensor | np.ndarray, segments: Tensor | np.ndarray | None,
                            labels: np.ndarray) -> tuple[Tensor, Tensor]:
        """Mean cross-entropy of the class logits against ``labels`` (B,), and the logits."""
        logits = self.classify(ids, segments)
        return F.cross_entropy(logits, ta.tensor(np.asarray(labels, dtype=np.int64), device=self.device)), logits

    def load_encoder(self, state_dict: Mapping[str, Any]) -> list[str]:
        """Load every parameter of a pre-trained model's ``state_dict`` except the classifier's (its
        ``pooler`` and ``classifier``, which a new task starts afresh); returns the names loaded."""
        head = ("pooler.", "classifier.")
        own = self.state_dict()
        kept = {k: v for k, v in state_dict.items() if not k.startswith(head)}
        self.load_state_dict({**{k: v for k, v in own.items() if k.startswith(head)}, **kept})
        return sorted(kept)

    # ---- helpers -------------------------------------------------------------------------------------------
    @property
    def device(self) -> Any:
        return self.token_embedding.weight.device

    def _ids(self, ids: Tensor | np.ndarray, name: str) -> Tensor:
        return token_ids(ids, self.device, f"BERT: {name}")

    def extra_repr(self) -> str:
        return (f"vocab_size={self.vocab_size}, d_model={self.d_model}, n_heads={self.n_heads}, "
                f"n_layers={self.n_layers}, d_ff={self.d_ff}, dropout={self.dropout_p}, "
                f"norm_first={self.norm_first}, n_classes={self.n_classes}")


def gelu(x: Tensor) -> Tensor:
    """BERT's GELU, x Phi(x) in the tanh form of its code: x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    return F.gelu(x, approximate="tanh")


def _check_hparams(vocab_size: int, d_model: int, n_heads: int, n_layers: int, d_ff: int, dropout: float,
                   attention_dropout: float, max_positions: int, n_segments: int, n_classes: int, pad_id: int) -> None:
    problems = []
    for name, value in (("vocab_size", vocab_size), ("d_model", d_model), ("n_heads", n_heads), ("d_ff", d_ff),
                        ("n_layers", n_layers), ("max_positions", max_positions), ("n_segments", n_segments),
                        ("n_classes", n_classes)):
        if not isinstance(value, int) or value < 1:
            problems.append(f"{name}={value!r} must be a positive integer")
    if isinstance(d_model, int) and isinstance(n_heads, int) and n_heads > 0 and d_model % n_heads:
        problems.append(f"d_model={d_model} must be divisible by n_heads={n_heads}")
    for name, p in (("dropout", dropout), ("attention_dropout", attention_dropout)):
        if not 0.0 <= p < 1.0:
            problems.append(f"{name}={p!r} must be in [0, 1)")
    if isinstance(vocab_size, int) and not 0 <= pad_id < vocab_size:
        problems.append(f"pad_id={pad_id!r} must be a token id in [0, vocab_size={vocab_size})")
    if problems:
        raise ValueError("BERT: " + "; ".join(problems))


def build_bert(vocab_size: int, preset: str | None = None, **hparams: Any) -> BERT:
    """A ``BERT`` from a preset (``PRESETS``) with any hyperparameter overridden by keyword."""
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"build_bert: unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    return BERT(vocab_size, **{**(PRESETS[preset] if preset is not None else {}), **hparams})
