"""The configuration of a BERT run, pre-training (``task: mlm``) or fine-tuning (``task: classify``).

Sections, every key with a default (so an empty file is a valid config)::

    task:     mlm (masked-LM pre-training) | classify (the translation-pair task, pairs.py)
    init_from a pre-trained run directory or checkpoint to start a classify run from (null: from scratch)
    model:    preset (mini | small | base, models.bert.PRESETS) and any hyperparameter to override
    data:     data_dir, vocab_size, max_len, train_subset, singles (mlm), hard_fraction,
              swap_fraction (classify)
    train:    seed, AdamW (lr, betas, weight decay), warmup + cosine to 0 at the budget, batch_size, clip_norm,
              mask_prob, stopping rules, evaluation/checkpoint cadence
    device:   "cpu" or "cuda[:N]"

Files, ``--set section.key=value`` overrides and their checks are the translator's (``models.translator.config``:
``read_file``, ``fill``, ``apply_overrides``); the resolved config is saved in the run directory.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.bert import BERT, PRESETS
from models.translator import config as base
from models.translator.config import CONFIG_NAME, ConfigError, check_device

TASKS = ("mlm", "classify")


@dataclass
class ModelConfig:
    preset: str = "small"
    d_model: int | None = None
    n_heads: int | None = None
    n_layers: int | None = None
    d_ff: int | None = None
    dropout: float | None = None
    attention_dropout: float | None = None
    max_positions: int | None = None
    norm_first: bool | None = None  # False: BERT's post-LN; True: pre-LN


@dataclass
class DataConfig:
    data_dir: str | None = None  # folder with the Multi30k .gz files (default: see models.translator.data)
    vocab_size: int = 4000  # joint de+en SentencePiece vocabulary, the five specials included
    max_len: int = 96  # tokens per sequence, [CLS] and [SEP]s included (longer ones are cut)
    train_subset: int | None = None  # the first N training pairs only
    vocab_subset: int | None = None  # the vocabulary is trained on the first N training pairs (None: all)
    singles: bool = True  # mlm: besides each pair, each sentence alone ([CLS] s [SEP]), for `fill`
    hard_fraction: float = 0.5  # classify: the share of negatives that are hard (pairs.py)
    swap_fraction: float = 0.0  # classify: the share of pairs with a swappable word whose negative is swapped
    eval_subset: int | None = None  # periodic evaluation on the first N validation sequences (None: all)
    final_subset: int | None = None  # the final evaluation on the first N sequences of each split (None: all)


@dataclass
class TrainConfig:
    seed: int = 1234
    lr: float = 5e-4  # peak, after the linear warmup
    warmup: int = 200
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-6
    weight_decay: float = 0.01  # AdamW, on weight matrices only
    batch_size: int = 64  # sequences per step
    clip_norm: float | None = 1.0
    mask_prob: float = 0.15  # mlm: the share of ordinary tokens chosen (80% [MASK], 10% random, 10% kept)
    max_steps: int | None = 2000
    max_minutes: float | None = None  # training time budget (evaluation and checkpoints not counted)
    log_every: int = 50
    eval_every: int = 500  # 0: only at the end
    checkpoint_every: int = 500  # 0: only at the end
    keep_last: int = 2
    progress: bool = True


@dataclass
class Config:
    task: str = "mlm"
    init_from: str | None = None
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    device: str = "cpu"

    def to_dict(self) -> dict[str, Any]:
        """Plain dicts, lists and scalars (tuples become lists), ready for YAML or JSON."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def model_hparams(self) -> dict[str, Any]:
        """Keyword arguments for ``build_bert`` (after ``resolve``): every model field but ``preset``."""
        return {k: v for k, v in dataclasses.asdict(self.model).items() if k != "preset" and v is not None}


def load(path: str | os.PathLike[str] | None = None, overrides: Iterable[str] = ()) -> Config:
    """Defaults, then the file at ``path`` (if any), then ``overrides`` (``"section.key=value"``); checked."""
    config = Config()
    if path is not None:
        base.fill(config, base.read_file(path), str(path))
    base.apply_overrides(config, overrides)
    return validate(config)


def from_dict(data: Mapping[str, Any], where: str = "config") -> Config:
    return validate(base.fill(Config(), data, where))


def resolve(config: Config) -> Config:
    """Fill every unset model hyperparameter from the preset, then from ``BERT``'s defaults (in place)."""
    if config.model.preset not in PRESETS:
        raise ConfigError(f"model.preset must be one of {', '.join(PRESETS)}, got {config.model.preset!r}")
    params = inspect.signature(BERT.__init__).parameters
    defaults = {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}
    defaults.update(PRESETS[config.model.preset])
    for f in dataclasses.fields(config.model):
        if f.name != "preset" and getattr(config.model, f.name) is None and f.name in defaults:
            base.set_value(config, f"model.{f.name}", defaults[f.name])
    return validate(config)


def validate(config: Config) -> Config:
    """Check value ranges and cross-field rules; ``ConfigError`` names the key."""
    m, d, t = config.model, config.data, config.train

    def need(ok: bool, key: str, value: Any, rule: str) -> None:
        if not ok:
            raise ConfigError(f"{key} = {value!r} is not allowed: {rule}")

    need(config.task in TASKS, "task", config.task, f"use one of {', '.join(TASKS)}")
    need(config.init_from is None or config.task == "classify", "init_from", config.init_from,
         "only a classify run starts from a pre-trained model")
    for name in ("d_model", "n_heads", "n_layers", "d_ff", "max_positions"):
        v = getattr(m, name)
        need(v is None or v >= 1, f"model.{name}", v, "must be a positive integer")
    if m.d_model is not None and m.n_heads is not None:
        need(m.d_model % m.n_heads == 0, "model.n_heads", m.n_heads, f"must divide model.d_model = {m.d_model}")
    for name in ("dropout", "attention_dropout"):
        v = getattr(m, name)
        need(v is None or 0.0 <= v < 1.0, f"model.{name}", v, "must be in [0, 1)")
    need(d.vocab_size >= 16, "data.vocab_size", d.vocab_size, "must be at least 16")
    need(d.max_len >= 8, "data.max_len", d.max_len, "must be at least 8")
    if m.max_positions is not None:
        need(d.max_len <= m.max_positions, "data.max_len", d.max_len,
             f"must not exceed model.max_positions = {m.max_positions}")
    for name in ("train_subset", "vocab_subset", "eval_subset", "final_subset"):
        v = getattr(d, name)
        need(v is None or v >= 2, f"data.{name}", v, "must be at least 2 or null")
    need(0.0 <= d.hard_fraction <= 1.0, "data.hard_fraction", d.hard_fraction, "must be in [0, 1]")
    need(0.0 <= d.swap_fraction <= 1.0, "data.swap_fraction", d.swap_fraction, "must be in [0, 1]")
    need(t.lr > 0, "train.lr", t.lr, "must be positive")
    need(t.warmup >= 0, "train.warmup", t.warmup, "must be non-negative")
    need(all(0.0 <= b < 1.0 for b in t.betas), "train.betas", t.betas, "both must be in [0, 1)")
    need(t.eps > 0, "train.eps", t.eps, "must be positive")
    need(t.weight_decay >= 0, "train.weight_decay", t.weight_decay, "must be non-negative")
    need(t.batch_size >= 1, "train.batch_size", t.batch_size, "must be positive")
    need(t.clip_norm is None or t.clip_norm > 0, "train.clip_norm", t.clip_norm, "must be positive or null")
    need(0.0 < t.mask_prob <= 1.0, "train.mask_prob", t.mask_prob, "must be in (0, 1]")
    need(t.max_steps is not None or t.max_minutes is not None, "train.max_steps", t.max_steps,
         "set train.max_steps or train.max_minutes")
    need(t.max_steps is None or t.max_steps >= max(t.warmup, 1), "train.max_steps", t.max_steps,
         f"must be positive and at least train.warmup = {t.warmup}")
    need(t.max_minutes is None or t.max_minutes > 0, "train.max_minutes", t.max_minutes, "must be positive or null")
    need(t.log_every >= 1, "train.log_every", t.log_every, "must be at least 1")
    for name in ("eval_every", "checkpoint_every"):
        v = getattr(t, name)
        need(v >= 0, f"train.{name}", v, "must be 0 (off) or a positive number of steps")
    need(t.keep_last >= 1, "train.keep_last", t.keep_last, "must be at least 1")
    check_device(config.device)
    return config


def save_config(config: Config, run_dir: str | os.PathLike[str]) -> Path:
    """Write the resolved config to ``<run_dir>/config.yaml`` (atomically)."""
    return base.save(config, Path(run_dir) / CONFIG_NAME)
