"""A decoder-only Transformer language model (GPT; Radford et al. 2018, 2019), from ``tinygrad_attn.nn``'s blocks.

What changes from the paper's encoder-decoder (models/transformer.py) is the mask and the objective, almost
nothing else: one stack of ``nn.TransformerEncoderLayer`` run with ``is_causal=True`` (position t attends to
positions <= t only), trained to predict token t + 1 from tokens <= t. Shapes are batch-first::

    B batch   T positions (<= block_size)   E = n_embd   V vocabulary

    idx (B, T) ids --token embedding + position embedding--> (B, T, E) --dropout-->
        --n_layer x nn.TransformerEncoderLayer(is_causal)--> --final LayerNorm--> (B, T, E)
        --x @ token_embedding^T (tied)--> logits (B, T, V)

As GPT-2 (and nanoGPT's ``model.py``, whose parameter count this matches for the same configuration):

- learned position embeddings (``positions="sinusoidal"``: the paper's fixed ``nn.PositionalEncoding``);
- pre-LN blocks ``x + Dropout(Sublayer(LayerNorm(x)))`` and a final LayerNorm (``norm_first=False``: GPT-1's
  post-LN ``LayerNorm(x + Dropout(Sublayer(x)))``, whose last block already ends in a LayerNorm, so no final one);
- a GELU MLP of width 4 E (exact GELU as nanoGPT; ``gelu="tanh"``: GPT-2's own tanh approximation); dropout
  on embeddings + positions, on the attention weights and on each sublayer's output (not between the MLP's two
  matrices: GPT-2 has none there);
- the output projection is the token embedding matrix (weight tying: one Parameter, one gradient);
- initial weights N(0, 0.02), zero biases, and the projections that write into the residual stream (attention
  ``out_proj`` and the MLP's ``linear2``) N(0, 0.02 / sqrt(2 n_layer)): each of the 2 n_layer residual
  additions then adds variance ~1 / (2 n_layer) of the stream's, not 1.

Generation (``generate``) keeps a key/value cache (``nn.DecoderCache``): after the prompt, each new token costs
one position of work per layer. A context longer than ``block_size`` cannot use a cache with absolute positions
(every position shifts when the window slides), so past that point each token recomputes the last
``block_size`` tokens, as nanoGPT always does.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

import tinygrad_attn as ta
import tinygrad_attn.functional as F
from models.sampling import sample_next
from tinygrad_attn import Tensor, nn

__all__ = ["GPTConfig", "GPT", "count_parameters"]

POSITIONS = ("learned", "sinusoidal")
GELUS = ("exact", "tanh")


@dataclass
class GPTConfig:
    """The model's shape. Defaults: nanoGPT's ``shakespeare_char`` CPU recipe (0.80M parameters for V = 65)."""

    vocab_size: int = 65
    block_size: int = 64  # the longest context the model takes (rows of the position table)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True  # biases in every Linear and LayerNorm (GPT-2); False: a little faster
    norm_first: bool = True  # pre-LN (GPT-2); False: post-LN (GPT-1)
    positions: str = "learned"  # or "sinusoidal"
    gelu: str = "exact"  # x Phi(x), as nanoGPT; "tanh": the approximation GPT-2 itself used (cheaper on a CPU)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"GPTConfig: {name} must be a positive integer, got {getattr(self, name)!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"GPTConfig: n_head ({self.n_head}) must divide n_embd ({self.n_embd})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig: dropout must be in [0, 1), got {self.dropout!r}")
        if self.gelu not in GELUS:
            raise ValueError(f"GPTConfig: gelu must be one of {', '.join(GELUS)}, got {self.gelu!r}")
        if self.positions not in POSITIONS:
            raise ValueError(f"GPTConfig: positions must be one of {', '.join(POSITIONS)}, got {self.positions!r}")


def count_parameters(config: GPTConfig, non_embedding: bool = False) -> int:
    """The parameters of ``GPT(config)`` from the shapes alone (the tied embedding counted once).

    Per block: attention 4 E^2 (+ 4 E biases), MLP 8 E^2 (+ 5 E), two LayerNorms 2 E each (E without bias).
    ``non_embedding=True`` leaves out the position table, as nanoGPT's ``get_num_params`` reports."""
    E, b = config.n_embd, int(config.bias)
    norm = E * (1 + b)
    block = 12 * E * E + 9 * E * b + 2 * norm
    final_norm = norm if config.norm_first else 0
    positions = config.block_size * E if config.positions == "learned" and not non_embedding else 0
    return config.vocab_size * E + positions + config.n_layer * block + final_norm


class GPT(nn.Module):
    """A GPT language model: ``forward(idx) -> logits`` (B, T, V); ``generate`` continues a prompt."""

    def __init__(self, config: GPTConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        config = GPTConfig(**{**asdict(config or GPTConfig()), **overrides})
        self.config = config
        E = config.n_embd
        self.token_embedding = nn.Embedding(config.vocab_size, E)
        if config.positions == "learned":
            self.position_embedding: nn.Embedding | None = nn.Embedding(config.block_size, E)
            self.positional_encoding: nn.PositionalEncoding | None = None
        else:
            self.position_embedding = None
            self.positional_encoding = nn.PositionalEncoding(E, 0.0, max_len=config.block_size, batch_first=True)
        self.dropout = nn.Dropout(config.dropout)
        activation = "gelu" if config.gelu == "exact" else functools.partial(F.gelu, approximate="tanh")
        layer = nn.TransformerEncoderLayer(E, config.n_head, 4 * E, config.dropout, activation=activation,
                                           batch_first=True, norm_first=config.norm_first, bias=config.bias,
                                           activation_dropout=0.0)
        final_norm = nn.LayerNorm(E, bias=config.bias) if config.norm_first else None
        self.blocks = nn.TransformerEncoder(layer, config.n_layer, norm=final_norm)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2's initialisation (see the module docstring); LayerNorms start as the identity (1, 0)."""
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        for name, p in self.named_parameters():
            if name.endswith(("out_proj.weight", "linear2.weight")):
                nn.init.normal_(p, 0.0, residual_std)
            elif p.ndim >= 2:  # token and position embeddings, in_proj_weight, linear1
                nn.init.normal_(p, 0.0, 0.02)
            elif name.endswith("weight"):  # a LayerNorm's gain
                nn.init.ones_(p)
            else:  # biases
                nn.init.zeros_(p)

    def num_parameters(self, non_embedding: bool = False) -> int:
        """Parameters counted once each (the tied embedding is one); ``non_embedding`` drops the position table."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and self.position_embedding is not None:
            n -= self.position_embedding.weight.numel()
        return n

    # ---- the forward pass --------------------------------------------------------------------------------
    def embed(self, idx: Tensor, start: int = 0) -> Tensor:
        """Dropout(token embedding + embedding of positions start, start + 1, ...): (B, T) ids -> (B, T, E)."""
        T = idx.shape[1]
        if start + T > self.config.block_size:
            raise ValueError(f"GPT: a context of {start + T} positions is longer than the model's block_size "
                             f"({self.config.block_size}); crop it to the last {self.config.block_size} tokens")
        x = self.token_embedding(idx)
        if self.position_embedding is not None:
            positions = ta.arange(start, start + T, dtype=ta.int64, device=idx.device)
            x = x + self.position_embedding(positions)
        elif self.positional_encoding is not None:
            x = self.positional_encoding(x, start=start)
        return self.dropout(x)

    def forward(self, idx: Tensor, *, cache: nn.DecoderCache | None = None) -> Tensor:
        """Logits (B, T, V) for the next token after each position of ``idx`` (B, T).

        ``cache`` (a ``DecoderCache(n_layer, cross_attention=False)``, under ``ta.no_grad()``): ``idx`` are the
        positions after the ``cache.length`` cached ones, whose keys and values are reused."""
        if idx.ndim != 2:
            raise ValueError(f"GPT: expected token ids of shape (B, T), got {tuple(idx.shape)}")
        x = self.embed(idx, start=cache.length if cache is not None else 0)
        x = self.blocks(x, is_causal=True, cache=cache)
        return self.project(x)

    def project(self, x: Tensor) -> Tensor:
        """Hidden states (..., E) -> logits (..., V) through the token embedding matrix (tied)."""
        return F.linear(x, self.token_embedding.weight)

    @staticmethod
    def loss(logits: Tensor, targets: Tensor) -> Tensor:
        """Mean cross-entropy of the next-token predictions: -mean log softmax(logits)[targets]."""
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

    def attention_weights(self, idx: Tensor) -> np.ndarray:
        """Every layer's per-head attention weights for ``idx`` (1, T): (n_layer, n_head, T, T), rows summing to 1."""
        with ta.no_grad():
            x = self.embed(idx)
            maps = []
            for layer in self.blocks.layers:
                x, w = layer(x, is_causal=True, need_weights=True)
                maps.append(w.numpy()[0])
        return np.stack(maps)

    def crop_block_size(self, block_size: int) -> None:
        """Shrink the context the model takes to ``block_size`` (keeps the first rows of the position table)."""
        if not 1 <= block_size <= self.config.block_size:
            raise ValueError(f"GPT.crop_block_size: block_size must be in [1, {self.config.block_size}], "
                             f"got {block_size}")
        if self.position_embedding is not None:
            table = self.position_embedding.weight.data[:block_size].copy()
            self.position_embedding = nn.Embedding(block_size, self.config.n_embd, _weight=Tensor._make(table))
        self.config = GPTConfig(**{**asdict(self.config), "block_size": block_size})

    # ---- generation ---------------------------------------------------------------------------------------
    def generate_tokens(self, idx: Any, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                        top_p: float | None = None, seed: int | None = None,
                        use_cache: bool = True) -> Iterator[np.ndarray]:
        """Continue the prompts ``idx`` (B, T) token by token; yield each step's new tokens (B,).

        Each token is drawn from softmax(logits / temperature), restricted to the ``top_k`` most likely and
        to the smallest set whose probability reaches ``top_p`` (``sampling.sample_next``); ``temperature=0``
        takes the most likely. ``seed`` makes the draws reproducible. A prompt longer than ``block_size``
        keeps its last ``block_size`` tokens."""
        if max_new_tokens < 0:
            raise ValueError(f"GPT.generate: max_new_tokens must be >= 0, got {max_new_tokens}")
        context = np.asarray(idx.numpy() if isinstance(idx, Tensor) else idx, dtype=np.int64)
        if context.ndim != 2 or context.shape[1] == 0:
            raise ValueError(f"GPT.generate: the prompt must be token ids of shape (B, T) with T >= 1, got "
                             f"{context.shape}")
        rng = np.random.default_rng(seed)
        block = self.config.block_size
        device = self.token_embedding.weight.device
        was_training = self.training
        self.eval()
        try:
            with ta.no_grad():
                cache = nn.DecoderCache(self.config.n_layer, cross_attention=False) if use_cache else None
                window = context[:, -block:]
                logits = self(ta.tensor(window, device=device), cache=cache)
                for _ in range(max_new_tokens):
                    token = sample_next(logits.numpy()[:, -1, :], temperature, top_k, top_p, rng)
                    yield token
                    context = np.concatenate([context, token[:, None]], axis=1)
                    if cache is not None and cache.length < block:  # one new position, the rest from the cache
                        logits = self(ta.tensor(token[:, None], device=device), cache=cache)
                    else:  # the window slides (or no cache): recompute it
                        cache = None
                        logits = self(ta.tensor(context[:, -block:], device=device))
        finally:
            self.train(was_training)

    def generate(self, idx: Any, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, seed: int | None = None, use_cache: bool = True) -> np.ndarray:
        """The prompts ``idx`` (B, T) followed by ``max_new_tokens`` sampled tokens: (B, T + max_new_tokens)."""
        context = np.asarray(idx.numpy() if isinstance(idx, Tensor) else idx, dtype=np.int64)
        new = list(self.generate_tokens(context, max_new_tokens, temperature, top_k, top_p, seed, use_cache))
        return np.concatenate([context] + [t[:, None] for t in new], axis=1)
