"""The language model's experiment config: model, data and train sections, read from YAML/TOML, overridden
with ``--set section.key=value`` (the translator's readers, ``models.translator.config``, do the parsing and
type checks; ``validate`` here checks the ranges).

    model:  the GPT's shape (``models.gpt.GPTConfig`` without vocab_size, which the vocabulary sets)
    data:   data_dir, vocab (char | bpe), vocab_size (bpe), block_size, batch_size
    train:  seed, AdamW (lr, betas, weight_decay on the 2-D parameters only, as nanoGPT), warmup and cosine
            decay to min_lr over max_iters (``ta.optim.lr_scheduler.LinearWarmupCosineDecay``), clip_norm,
            stopping (max_iters, max_minutes), evaluation (every eval_every iterations, eval_iters batches),
            log and checkpoint cadence
    device: cpu or cuda[:N]

The defaults are nanoGPT's shakespeare_char CPU recipe (0.80M parameters, block 64, batch 12, 2,000 iterations).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from models.gpt import GELUS, POSITIONS
from models.lm.vocab import KINDS
from models.translator import config as cfg
from models.translator.config import ConfigError

__all__ = ["LMConfig", "ModelSection", "DataSection", "TrainSection", "load", "from_dict", "validate", "ConfigError"]


@dataclass
class ModelSection:
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0  # on embeddings, attention weights and every sublayer's output
    bias: bool = True
    norm_first: bool = True  # pre-LN (GPT-2); false: post-LN (GPT-1)
    positions: str = "learned"  # or "sinusoidal"
    gelu: str = "exact"  # or "tanh" (GPT-2's approximation; cheaper on a CPU)


@dataclass
class DataSection:
    data_dir: str | None = None  # folder holding input.txt (default: models.lm.data's lookup)
    vocab: str = "char"  # "char" (65 characters) or "bpe" (SentencePiece, vocab_size pieces)
    vocab_size: int = 1024  # for vocab = "bpe"
    block_size: int = 64  # context length: the model's positions
    batch_size: int = 12


@dataclass
class TrainSection:
    seed: int = 1337
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup: int = 100
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.1
    clip_norm: float | None = 1.0
    max_iters: int = 2000  # the cosine reaches min_lr here
    max_minutes: float | None = None  # also stop (and end the cosine) after this much training time
    eval_every: int = 250
    eval_iters: int = 200  # random val (and train) batches per loss estimate, as nanoGPT's estimate_loss
    log_every: int = 10
    checkpoint_every: int = 250  # 0: only at the end
    keep_last: int = 3
    progress: bool = True


@dataclass
class LMConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    train: TrainSection = field(default_factory=TrainSection)
    device: str = "cpu"

    def to_dict(self) -> dict[str, Any]:
        """Plain dicts/lists/scalars, ready for YAML or JSON."""
        d = dataclasses.asdict(self)
        d["train"]["betas"] = list(d["train"]["betas"])
        return d

    def gpt_kwargs(self) -> dict[str, Any]:
        """``GPTConfig`` keyword arguments, all but vocab_size."""
        return {**dataclasses.asdict(self.model), "block_size": self.data.block_size}


def from_dict(data: Mapping[str, Any], where: str = "config") -> LMConfig:
    return validate(cfg.fill(LMConfig(), data, where))


def load(path: str | os.PathLike[str] | None = None, overrides: Iterable[str] = ()) -> LMConfig:
    """Defaults, then the file at ``path`` (if any), then ``overrides`` (``"section.key=value"``); checked."""
    config = LMConfig()
    if path is not None:
        cfg.fill(config, cfg.read_file(path), str(path))
    return validate(cfg.apply_overrides(config, overrides))


def validate(config: LMConfig) -> LMConfig:
    """Check value ranges and cross-field rules; ``ConfigError`` names the offending key."""
    m, d, t = config.model, config.data, config.train

    def need(ok: bool, key: str, value: Any, rule: str) -> None:
        if not ok:
            raise ConfigError(f"{key} = {value!r} is not allowed: {rule}")

    for name in ("n_layer", "n_head", "n_embd"):
        need(getattr(m, name) >= 1, f"model.{name}", getattr(m, name), "must be a positive integer")
    need(m.n_embd % m.n_head == 0, "model.n_head", m.n_head, f"must divide model.n_embd = {m.n_embd}")
    need(0.0 <= m.dropout < 1.0, "model.dropout", m.dropout, "must be in [0, 1)")
    need(m.positions in POSITIONS, "model.positions", m.positions, f"use one of {', '.join(POSITIONS)}")
    need(m.gelu in GELUS, "model.gelu", m.gelu, f"use one of {', '.join(GELUS)}")
    need(d.vocab in KINDS, "data.vocab", d.vocab, f"use one of {', '.join(KINDS)}")
    need(d.vocab_size >= 8, "data.vocab_size", d.vocab_size, "must be at least 8")
    need(d.block_size >= 1, "data.block_size", d.block_size, "must be a positive integer")
    need(d.batch_size >= 1, "data.batch_size", d.batch_size, "must be a positive integer")
    need(t.lr > 0, "train.lr", t.lr, "must be positive")
    need(0 <= t.min_lr <= t.lr, "train.min_lr", t.min_lr, f"must be in [0, train.lr = {t.lr}]")
    need(t.max_iters >= 1, "train.max_iters", t.max_iters, "must be a positive integer")
    need(0 <= t.warmup <= t.max_iters, "train.warmup", t.warmup, f"must be in [0, train.max_iters = {t.max_iters}]")
    need(all(0.0 <= b < 1.0 for b in t.betas), "train.betas", t.betas, "both must be in [0, 1)")
    need(t.weight_decay >= 0, "train.weight_decay", t.weight_decay, "must be >= 0")
    need(t.clip_norm is None or t.clip_norm > 0, "train.clip_norm", t.clip_norm, "must be positive or null")
    need(t.max_minutes is None or t.max_minutes > 0, "train.max_minutes", t.max_minutes, "must be positive or null")
    for name in ("eval_every", "checkpoint_every"):
        need(getattr(t, name) >= 0, f"train.{name}", getattr(t, name), "must be 0 (off) or a number of iterations")
    for name in ("eval_iters", "log_every", "keep_last"):
        need(getattr(t, name) >= 1, f"train.{name}", getattr(t, name), "must be at least 1")
    cfg.check_device(config.device)
    return config
