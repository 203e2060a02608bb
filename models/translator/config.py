"""The experiment configuration: one dataclass tree, loaded from YAML/TOML, overridden from the CLI.

A run is described by four sections (every key has a default, so an empty file is a valid config)::

    model:   preset (tiny | small | base) and any of its hyperparameters to override
    data:    direction, data_dir, vocab_size, max_tokens per batch, max_len, train_subset
    train:   seed, the optimiser and its schedule, workers (CPU processes sharing a batch), stopping rules,
             evaluation/checkpoint cadence
    decode:  beam_size, alpha, max length, batch size, workers (CPU processes decoding side by side), for
             validation BLEU and translation
    device:  "cpu" or "cuda[:N]"

``train.precision = "fp16"`` trains in mixed precision: matmuls and attention in float16 under
``ta.amp.autocast``, softmax, layer norm and the loss in float32, float32 master weights and Adam state,
and dynamic loss scaling (``ta.amp.GradScaler``, whose scale is saved in checkpoints). It is meant for
GPUs; on the CPU it runs, slowly (NumPy's float16 matmuls are not accelerated), and the run logs so.
``train.tf32 = true`` lets float32 matmuls use TF32 on NVIDIA Ampere and later (``ta.amp.allow_tf32``);
on the CPU it changes nothing.

Model hyperparameters left unset (``None``) come from the preset (``models.transformer.PRESETS``) and,
for keys the preset does not name, from ``Transformer``'s defaults; ``resolve()`` fills them in, and
the *resolved* config is what ``save()`` writes to ``<run_dir>/config.yaml``: a run can always be
reproduced from its own directory.

The learning rate follows the paper's warmup ("Noam") schedule::

    lr(step) = lr_factor * d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)

It rises linearly for ``warmup`` steps and then decays as ``1/sqrt(step)``; its peak, at
``step == warmup``, is ``lr_factor / sqrt(d_model * warmup)``. The paper uses ``lr_factor = 1`` and
``warmup = 4000`` on 4.5M sentence pairs. Multi30k has 29k pairs (about 100 batches of 4,000 target
tokens per epoch), so 4,000 warmup steps would be 40 epochs of tiny learning rates. We warm up over
250 steps (2.5 epochs) and use ``lr_factor = 0.4``: for ``d_model = 256`` the peak is
``0.4 / sqrt(256 * 250) = 1.58e-3``, the value a PyTorch twin of the ``small`` preset was tuned to.
``peak_lr(config)`` computes it. ``configs/small.yaml`` reaches the same peak over a longer warmup of 550
steps (``lr_factor = 0.593``); what that changes is measured in docs/experiments.md.

``train.schedule = "cosine"`` keeps the warmup and the peak and then follows a half cosine down to 0 at
``train.max_steps`` or at the end of ``train.max_minutes`` of training, whichever comes first (the budget
fraction used is ``max(step / max_steps, minutes / max_minutes)``; ``max_epochs`` stops a run but does not
shape the cosine). For a run with a fixed budget this anneals the weights at the end, where the
``1/sqrt(step)`` decay stops at whatever learning rate the budget leaves it. With a budget in minutes the
cosine fits the steps that a machine manages in that time, fast or slow (``configs/small.yaml``: 35 minutes);
the price is that the learning rate, and so the run, depends on measured time.

Overrides from the command line use dotted keys, ``--set model.d_model=256 --set train.warmup=400``; values
are parsed as YAML (``true``, ``null``, ``[0.9, 0.98]``) and then checked against the field's type.
Mistakes raise ``ConfigError`` naming the key, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import re
import sys
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from models.transformer import PRESETS, Transformer
from models.translator.data import parse_direction

T = TypeVar("T")  # any config dataclass: the readers below fill the language model's config too (models/lm)
CONFIG_NAME = "config.yaml"  # the resolved config inside a run directory
SCHEDULES = ("noam", "cosine")
PRECISIONS = ("fp32", "fp16")
DISTRIBUTED = ("auto", "mpi", "none")  # train.distributed (models/translator/ranks.py)


class ConfigError(ValueError):
    """A config file or override names an unknown key or holds a value that is not allowed."""


@dataclass
class ModelConfig:
    """The Transformer's shape. ``None`` means: take it from the preset."""

    preset: str = "small"
    d_model: int | None = None
    n_heads: int | None = None
    n_encoder_layers: int | None = None
    n_decoder_layers: int | None = None
    d_ff: int | None = None
    dropout: float | None = None  # on embeddings + positions and on every sublayer output
    attention_dropout: float | None = None  # on the attention weights (the paper: none)
    norm_first: bool | None = None  # False: the paper's post-LN; True: pre-LN
    max_positions: int | None = None  # size of the positional table: the longest sequence the model takes
    tie_embeddings: bool | None = None  # one embedding for source, target and the output projection


@dataclass
class DataConfig:
    direction: str = "de-en"  # source-target: de-en, en-de, en-fr, fr-en
    data_dir: str | None = None  # folder with the Multi30k .gz files (default: see models.translator.data)
    vocab_size: int = 8000  # joint SentencePiece BPE vocabulary, special pieces included
    max_tokens: int = 4000  # padded tokens per batch (source and target each at most this)
    max_len: int = 256  # longer pairs (in pieces, + bos/eos) are skipped and counted
    train_subset: int | None = None  # use only the first N training pairs (quick experiments, tests)


@dataclass
class TrainConfig:
    seed: int = 1234
    lr_factor: float = 0.4  # peak lr = lr_factor / sqrt(d_model * warmup), reached at the end of the warmup
    warmup: int = 250  # steps of linear warmup
    schedule: str = "noam"  # after the warmup: "noam" (the paper: ~1/sqrt(step)) or "cosine" (to 0 at the budget's end)
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-9
    label_smoothing: float = 0.1
    accum_steps: int = 1  # batches whose gradients are summed before one optimiser step
    clip_norm: float | None = None  # clip the global gradient norm to this (None: no clipping)
    workers: int = 1  # CPU processes sharing each batch in fp32 (data parallel, parallel.py); GPU or fp16: one
    distributed: str = "auto"  # "auto": MPI ranks when started by mpirun/srun (ranks.py), "mpi": always, "none": never
    precision: str = "fp32"  # "fp16": mixed precision (ta.amp autocast + GradScaler, float32 master weights)
    tf32: bool = False  # float32 matmuls on TF32 tensor cores (NVIDIA Ampere+; no effect on the CPU)
    # Stopping: training ends at whichever comes first; at least one must be set.
    max_steps: int | None = None
    max_epochs: int | None = 30
    max_minutes: float | None = None  # training time budget (evaluation and checkpointing not counted)
    log_every: int = 50  # a line in train.log and metrics.jsonl every N steps
    eval_every: int = 500  # validation loss and greedy BLEU every N steps (0: only at the end)
    eval_subset: int | None = 500  # ... on the first N val sentence pairs (None: all 1,014)
    checkpoint_every: int = 500  # 0: only at the end
    keep_last: int = 5  # step checkpoints kept (best.safetensors is kept besides)
    final_eval: bool = True  # greedy and beam BLEU on val and test_2016_flickr at the end
    final_subset: int | None = None  # final evaluation on the first N sentences of each split (None: all)
    progress: bool = True  # tqdm progress bar


@dataclass
class DecodeConfig:
    beam_size: int = 4
    alpha: float = 0.6  # GNMT length penalty ((5 + len) / 6) ** alpha
    max_len_a: float = 1.0  # longest output = max_len_a * source length + max_len_b
    max_len_b: int = 50
    batch_size: int = 128  # sentences decoded together (with beam k, k times as many rows)
    workers: int = 1  # CPU processes decoding batches side by side (parallel.py; on a GPU: one process)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    device: str = "cpu"

    def to_dict(self) -> dict[str, Any]:
        """Plain dicts/lists/scalars (tuples become lists), ready for YAML or JSON."""
        return _plain(dataclasses.asdict(self))

    def model_hparams(self) -> dict[str, Any]:
        """Keyword arguments for ``build_model`` (call after ``resolve``): every model field but ``preset``."""
        return {k: v for k, v in dataclasses.asdict(self.model).items() if k != "preset" and v is not None}


# ---- reading and writing ------------------------------------------------------------------------------


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def read_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The raw mapping in a ``.yaml``/``.yml`` or ``.toml`` file (not yet checked)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".toml":
        if sys.version_info >= (3, 11):
            import tomllib  # only for .toml files
        else:
            try:  # Python 3.10: the optional backport
                import tomli as tomllib  # type: ignore[import-not-found]
            except ModuleNotFoundError as e:
                raise ConfigError(f"{path}: reading TOML needs Python 3.11+ or `pip install tomli`") from e
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: invalid TOML: {e}") from e
    elif path.suffix in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML: {e}") from e
    else:
        raise ConfigError(f"{path}: unknown config format {path.suffix!r}; use .yaml, .yml or .toml")
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top, got {type(data).__name__}")
    return data


def from_dict(data: Mapping[str, Any], where: str = "config") -> Config:
    """Build and check a ``Config`` from nested mappings; unset keys keep their defaults."""
    config = Config()
    _update(config, data, where)
    validate(config)
    return config


def load(path: str | os.PathLike[str] | None = None, overrides: Iterable[str] = ()) -> Config:
    """Defaults, then the file at ``path`` (if any), then ``overrides`` (``"section.key=value"``); checked."""
    config = Config()
    if path is not None:
        _update(config, read_file(path), str(path))
    apply_overrides(config, overrides)
    validate(config)
    return config


def save(config: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``config`` (a config dataclass with ``to_dict``) as YAML (atomically: a temporary file renamed
    into place)."""
    path = Path(path)
    if path.suffix == "" or path.is_dir():
        path = path / CONFIG_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(dump(config), encoding="utf-8")
    os.replace(tmp, path)
    return path


def dump(config: Any) -> str:
    """The config as YAML text, sections in their natural order."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=None)


# ---- overrides ----------------------------------------------------------------------------------------


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"model.d_model=256"`` -> ``(["model", "d_model"], 256)``; the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {text!r} is not of the form section.key=value (e.g. model.d_model=256)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw  # not YAML: keep the string, the type check decides
    return key.split("."), value


def apply_overrides(config: T, overrides: Iterable[str]) -> T:
    """Apply ``"section.key=value"`` strings in order (later ones win). Does not validate."""
    for text in overrides:
        keys, value = parse_override(text)
        nested: Any = value
        for k in reversed(keys):
            nested = {k: nested}
        _update(config, nested, f"--set {text}")
    return config


def set_value(config: T, dotted_key: str, value: Any) -> T:
    """Set one (already typed) value, e.g. ``set_value(cfg, "train.max_minutes", 15)``, with type checks."""
    nested: Any = value
    for k in reversed(dotted_key.split(".")):
        nested = {k: nested}
    _update(config, nested, dotted_key)
    return config


def fill(config: T, data: Mapping[str, Any], where: str = "config") -> T:
    """Copy the nested mapping ``data`` onto the config dataclass ``config``, checking keys and types (not
    ranges); returns ``config``."""
    _update(config, data, where)
    return config


def check_resumable(now: Mapping[str, Any], saved: Mapping[str, Any]) -> None:
    """Raise ``ConfigError`` unless a run's config (``to_dict()``) may resume from a checkpoint saved with
    ``saved``: the model and data sections (data_dir may move) and the seed (it fixes the data order) match."""
    for section in ("model", "data"):
        for key, value in saved.get(section, {}).items():
            if key != "data_dir" and now[section].get(key) != value:
                raise ConfigError(
                    f"cannot resume: {section}.{key} is {now[section].get(key)!r} but the checkpoint was trained "
                    f"with {value!r}; drop the override or start a new run"
                )
    if now["train"]["seed"] != saved.get("train", {}).get("seed", now["train"]["seed"]):
        raise ConfigError("cannot resume: train.seed differs from the checkpoint's (it fixes the data order)")


def _update(obj: Any, data: Mapping[str, Any], where: str, prefix: str = "") -> None:
    """Copy ``data`` onto the dataclass ``obj``, recursing into sections and coercing leaf values."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: {prefix.rstrip('.') or 'config'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"{where}: unknown key {full!r}; valid keys here: {', '.join(prefix + n for n in names)}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if value is None:
                continue  # an empty section in YAML
            _update(current, value, where, prefix=f"{full}.")
        else:
            setattr(obj, key, _coerce(value, hints[key], full, where))


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _coerce(value: Any, hint: Any, key: str, where: str) -> Any:
    """``value`` as type ``hint`` (int, float, bool, str, X | None, tuple[float, float]) or ConfigError."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, key, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{where}: {key} must be a list of {len(args)} numbers, got {value!r}")
        return tuple(_coerce(v, a, key, where) for v, a in zip(value, args))
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
            return float(value)  # YAML 1.1 reads "1e-3" (no dot) as a string
    elif hint is str:
        if isinstance(value, str):
            return value
    nullable = " or null" if value is None else ""
    raise ConfigError(f"{where}: {key} must be {getattr(hint, '__name__', hint)}{nullable}, got {value!r}")


# ---- the preset and checks ----------------------------------------------------------------------------


def _transformer_defaults() -> dict[str, Any]:
    """Defaults of ``Transformer.__init__`` (keys a preset may leave out)."""
    params = inspect.signature(Transformer.__init__).parameters
    return {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}


def resolve(config: Config) -> Config:
    """Fill every unset model hyperparameter from the preset, then from ``Transformer``'s defaults.

    Works in place and returns ``config``; raises ``ConfigError`` for an unknown preset.
    """
    if config.model.preset not in PRESETS:
        raise ConfigError(f"model.preset must be one of {', '.join(PRESETS)}, got {config.model.preset!r}")
    defaults = {**_transformer_defaults(), **PRESETS[config.model.preset]}
    for f in dataclasses.fields(config.model):
        if f.name != "preset" and getattr(config.model, f.name) is None and f.name in defaults:
            set_value(config, f"model.{f.name}", defaults[f.name])
    validate(config)
    return config


def validate(config: Config) -> Config:
    """Check value ranges and cross-field rules; raise ``ConfigError`` naming the offending key."""
    m, d, t, dec = config.model, config.data, config.train, config.decode

    def need(ok: bool, key: str, value: Any, rule: str) -> None:
        if not ok:
            raise ConfigError(f"{key} = {value!r} is not allowed: {rule}")

    for name in ("d_model", "n_heads", "n_encoder_layers", "n_decoder_layers", "d_ff", "max_positions"):
        v = getattr(m, name)
        need(v is None or v >= 1, f"model.{name}", v, "must be a positive integer")
    if m.d_model is not None and m.n_heads is not None:
        need(m.d_model % m.n_heads == 0, "model.n_heads", m.n_heads, f"must divide model.d_model = {m.d_model}")
    need(m.dropout is None or 0.0 <= m.dropout < 1.0, "model.dropout", m.dropout, "must be in [0, 1)")
    need(m.attention_dropout is None or 0.0 <= m.attention_dropout < 1.0, "model.attention_dropout",
         m.attention_dropout, "must be in [0, 1)")

    try:
        parse_direction(d.direction)
    except ValueError as e:
        raise ConfigError(f"data.direction: {e}") from None
    need(d.vocab_size >= 8, "data.vocab_size", d.vocab_size, "must be at least 8 (4 special pieces + some)")
    need(d.max_tokens >= 1, "data.max_tokens", d.max_tokens, "must be a positive integer")
    need(d.max_len >= 2, "data.max_len", d.max_len, "must be at least 2")
    if m.max_positions is not None:
        need(d.max_len <= m.max_positions, "data.max_len", d.max_len,
             f"must not exceed model.max_positions = {m.max_positions}")
    need(d.train_subset is None or d.train_subset >= 1, "data.train_subset", d.train_subset, "must be positive")

    need(t.lr_factor > 0, "train.lr_factor", t.lr_factor, "must be positive")
    need(t.warmup >= 1, "train.warmup", t.warmup, "must be at least 1")
    need(t.schedule in SCHEDULES, "train.schedule", t.schedule, f"use one of {', '.join(SCHEDULES)}")
    need(t.schedule != "cosine" or t.max_minutes is not None or (t.max_steps is not None and t.max_steps > t.warmup),
         "train.schedule", t.schedule, "needs a budget to end with: train.max_steps above train.warmup, or "
         "train.max_minutes")
    need(t.schedule != "cosine" or t.max_steps is None or t.max_steps >= t.warmup, "train.max_steps", t.max_steps,
         f"must be at least train.warmup = {t.warmup} with the cosine schedule")
    need(all(0.0 <= b < 1.0 for b in t.betas), "train.betas", t.betas, "both must be in [0, 1)")
    need(t.eps > 0, "train.eps", t.eps, "must be positive")
    need(0.0 <= t.label_smoothing < 1.0, "train.label_smoothing", t.label_smoothing, "must be in [0, 1)")
    need(t.accum_steps >= 1, "train.accum_steps", t.accum_steps, "must be at least 1")
    need(t.clip_norm is None or t.clip_norm > 0, "train.clip_norm", t.clip_norm, "must be positive or null")
    need(t.workers >= 1, "train.workers", t.workers, "must be at least 1")
    need(t.distributed in DISTRIBUTED, "train.distributed", t.distributed, f"use one of {', '.join(DISTRIBUTED)}")
    need(t.precision in PRECISIONS, "train.precision", t.precision, f"use one of {', '.join(PRECISIONS)}")
    for name in ("max_steps", "max_epochs", "max_minutes"):
        v = getattr(t, name)
        need(v is None or v > 0, f"train.{name}", v, "must be positive or null")
    need(any(v is not None for v in (t.max_steps, t.max_epochs, t.max_minutes)), "train.max_steps",
         None, "set at least one of train.max_steps, train.max_epochs, train.max_minutes")
    for name in ("eval_every", "checkpoint_every"):
        v = getattr(t, name)
        need(v >= 0, f"train.{name}", v, "must be 0 (off) or a positive number of steps")
    need(t.log_every >= 1, "train.log_every", t.log_every, "must be at least 1")
    need(t.keep_last >= 1, "train.keep_last", t.keep_last, "must be at least 1")
    for name in ("eval_subset", "final_subset"):
        v = getattr(t, name)
        need(v is None or v >= 1, f"train.{name}", v, "must be positive or null")

    need(dec.beam_size >= 1, "decode.beam_size", dec.beam_size, "must be at least 1")
    need(dec.alpha >= 0, "decode.alpha", dec.alpha, "must be non-negative")
    need(dec.max_len_a >= 0 and dec.max_len_b >= 0, "decode.max_len_b", (dec.max_len_a, dec.max_len_b),
         "max_len_a and max_len_b must be non-negative")
    need(dec.max_len_a > 0 or dec.max_len_b > 0, "decode.max_len_b", dec.max_len_b,
         "max_len_a and max_len_b cannot both be 0")
    need(dec.batch_size >= 1, "decode.batch_size", dec.batch_size, "must be at least 1")
    need(dec.workers >= 1, "decode.workers", dec.workers, "must be at least 1")

    check_device(config.device)
    return config


def check_device(spec: str) -> str:
    """Accept ``cpu``, ``cuda`` and ``cuda:N``; raise ``ConfigError`` otherwise (availability is checked later)."""
    kind, _, index = spec.partition(":")
    if kind not in ("cpu", "cuda") or (index and not index.isdigit()) or (kind == "cpu" and index):
        raise ConfigError(f"device = {spec!r} is not allowed: use cpu, cuda or cuda:N")
    return spec


def peak_lr(config: Config) -> float:
    """The Noam schedule's largest learning rate, reached at ``step == warmup``."""
    d_model = config.model.d_model
    if d_model is None:
        raise ConfigError("peak_lr needs a resolved config (model.d_model is unset; call resolve first)")
    return config.train.lr_factor / math.sqrt(d_model * config.train.warmup)


def noam_lr(config: Config, step: int) -> float:
    """The learning rate of optimiser step ``step`` (1-based) under the Noam schedule."""
    d_model = config.model.d_model
    if d_model is None:
        raise ConfigError("noam_lr needs a resolved config (model.d_model is unset; call resolve first)")
    step = max(step, 1)
    return config.train.lr_factor * d_model**-0.5 * min(step**-0.5, step * config.train.warmup**-1.5)
