"""Training checkpoints: one self-contained file per save, the last K kept, the best by BLEU kept aside.

A checkpoint is written with ``ta.save`` (tensors in safetensors, everything else as JSON; never
pickle, so loading a file cannot run code) and holds::

    model       the model's state_dict
    optimizer   the optimizer's state_dict (Adam's moments and step counts)   } absent in an averaged
    scheduler   the learning-rate schedule's state_dict                      } or exported checkpoint
    scaler      the GradScaler's state_dict (loss scale, growth tracker)     } only with train.precision fp16
    rng         ta.random.get_rng_state(): dropout continues with the same random numbers
    progress    step, epoch, batch_in_epoch (data order), train_seconds, best_bleu, best_step
    config      the resolved experiment config (a plain dict)
    vocab       the SentencePiece model's bytes (as a uint8 array)

so ``translate`` needs nothing but the file, and ``--resume`` continues a killed run exactly.

In a run directory, step checkpoints are ``ckpt_step<N>.safetensors``; ``CheckpointManager`` keeps
the last ``keep_last`` of them and writes ``best.safetensors`` whenever validation BLEU improves.
``average_checkpoints`` averages the parameters of several checkpoints, as the paper does with the
last 5 (base) or 20 (big) checkpoints.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import tinygrad_attn as ta
from models.transformer import Transformer, build_model
from models.translator import config as cfg
from models.translator.vocab import PAD_ID, Vocab

SUFFIX = ".safetensors"
BEST_NAME = "best" + SUFFIX
AVERAGED_NAME = "averaged" + SUFFIX
_STEP_RE = re.compile(r"^ckpt_step(\d+)\.safetensors$")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, or does not fit the model/vocabulary it is loaded into."""


@dataclass
class Checkpoint:
    """What ``load_checkpoint`` returns. ``model`` maps parameter names to tensors."""

    path: Path
    model: dict[str, Any]
    config: dict[str, Any]
    vocab_bytes: bytes
    progress: dict[str, Any] = field(default_factory=dict)
    optimizer: dict[str, Any] | None = None
    scheduler: dict[str, Any] | None = None
    rng: dict[str, Any] | None = None
    scaler: dict[str, Any] | None = None

    @property
    def step(self) -> int:
        return int(self.progress.get("step", 0))


def step_path(run_dir: str | os.PathLike[str], step: int) -> Path:
    """``<run_dir>/ckpt_step<step>.safetensors``."""
    return Path(run_dir) / f"ckpt_step{step}{SUFFIX}"


def step_of(path: str | os.PathLike[str]) -> int | None:
    """The step in a ``ckpt_step<N>.safetensors`` name, else None."""
    m = _STEP_RE.match(Path(path).name)
    return int(m.group(1)) if m else None


def list_checkpoints(run_dir: str | os.PathLike[str]) -> list[Path]:
    """The step checkpoints of a run, oldest first (by step number, not by file time)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [(step_of(p), p) for p in run_dir.iterdir() if step_of(p) is not None]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | os.PathLike[str]) -> Path | None:
    """The step checkpoint with the highest step, or None."""
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """A checkpoint file from a file path or a run directory (its ``best.safetensors``, else the latest).

    Raises ``CheckpointError`` saying what was looked for when there is none.
    """
    path = Path(path).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        if (path / BEST_NAME).is_file():
            return path / BEST_NAME
        latest = latest_checkpoint(path)
        if latest is not None:
            return latest
        raise CheckpointError(
            f"no checkpoint in {path}: expected {BEST_NAME} or ckpt_step<N>{SUFFIX} "
            "(is this a run directory? train one with `python -m models.translator train`)"
        )
    raise CheckpointError(f"checkpoint not found: {path} (pass a {SUFFIX} file or a run directory)")


# ---- saving and loading -------------------------------------------------------------------------------


def save_checkpoint(
    path: str | os.PathLike[str],
    *,
    model_state: Mapping[str, Any],
    config: Mapping[str, Any],
    vocab_bytes: bytes,
    progress: Mapping[str, Any] | None = None,
    optimizer: Mapping[str, Any] | None = None,
    scheduler: Mapping[str, Any] | None = None,
    rng: Mapping[str, Any] | None = None,
    scaler: Mapping[str, Any] | None = None,
    kind: str = "translator",
) -> Path:
    """Write one checkpoint atomically (``ta.save`` writes a temporary file and renames it); ``kind`` names
    the model family in its ``format`` (``"translator"``, ``"mlm"``, ...)."""
    obj: dict[str, Any] = {
        "format": f"tinygrad_attn-{kind}-checkpoint/1",
        "model": dict(model_state),
        "config": dict(config),
        "vocab": np.frombuffer(vocab_bytes, dtype=np.uint8).copy(),
        "progress": dict(progress or {}),
    }
    for key, value in (("optimizer", optimizer), ("scheduler", scheduler), ("rng", rng), ("scaler", scaler)):
        if value is not None:
            obj[key] = value
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ta.save(obj, path)
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a checkpoint file (or a run directory's best/latest one); ``CheckpointError`` if unusable."""
    path = resolve_checkpoint(path)
    try:
        obj = ta.load(path)
    except Exception as e:  # truncated, corrupt, or not a ta.save file at all
        raise CheckpointError(
            f"cannot read checkpoint {path}: {type(e).__name__}: {e}\n"
            "The file is truncated or corrupt (a run killed while copying it?). Use another checkpoint "
            "of the run, e.g. an earlier ckpt_step<N>.safetensors."
        ) from e
    missing = [k for k in ("model", "config", "vocab") if not isinstance(obj, Mapping) or k not in obj]
    if missing:
        raise CheckpointError(f"{path} is not a translator checkpoint: it lacks {', '.join(missing)}")
    vocab = obj["vocab"]
    vocab_bytes = np.asarray(vocab.numpy() if hasattr(vocab, "numpy") else vocab, dtype=np.uint8).tobytes()
    return Checkpoint(
        path=path,
        model=dict(obj["model"]),
        config=dict(obj["config"]),
        vocab_bytes=vocab_bytes,
        progress=dict(obj.get("progress") or {}),
        optimizer=obj.get("optimizer"),
        scheduler=obj.get("scheduler"),
        rng=obj.get("rng"),
        scaler=obj.get("scaler"),
    )


def _array(value: Any) -> np.ndarray:
    return value.numpy() if hasattr(value, "numpy") else np.asarray(value)


def average_checkpoints(paths: Sequence[str | os.PathLike[str]]) -> dict[str, ta.Tensor]:
    """The element-wise mean of the model parameters of ``paths``: theta = (theta_1 + ... + theta_K) / K.

    All checkpoints must hold the same parameter names and shapes. Sums are accumulated in float64
    and the result cast back to each parameter's dtype; integer buffers are taken from the last file.
    """
    if not paths:
        raise ValueError("average_checkpoints: no checkpoints given")
    total: dict[str, np.ndarray] = {}
    dtypes: dict[str, np.dtype] = {}
    last: dict[str, np.ndarray] = {}
    for i, path in enumerate(paths):
        state = load_checkpoint(path).model
        if i == 0:
            for k, v in state.items():
                a = _array(v)
                dtypes[k], total[k] = a.dtype, a.astype(np.float64)
            first = path
            continue
        if set(state) != set(total):
            diff = sorted(set(state) ^ set(total))
            raise CheckpointError(f"cannot average {first} and {path}: parameter names differ ({', '.join(diff[:5])})")
        for k, v in state.items():
            a = _array(v)
            if a.shape != total[k].shape:
                raise CheckpointError(
                    f"cannot average {first} and {path}: {k} has shape {total[k].shape} vs {a.shape}")
            total[k] += a
            last[k] = a
    out: dict[str, ta.Tensor] = {}
    for k, s in total.items():
        if np.issubdtype(dtypes[k], np.floating):
            out[k] = ta.from_numpy((s / len(paths)).astype(dtypes[k]))
        else:
            out[k] = ta.from_numpy(last.get(k, s).astype(dtypes[k]))
    return out


def write_averaged(paths: Sequence[str | os.PathLike[str]], output: str | os.PathLike[str]) -> Path:
    """Average ``paths`` into one translation-ready checkpoint (no optimizer state) at ``output``."""
    newest = load_checkpoint(paths[-1])
    progress = {**newest.progress, "averaged_from": [Path(p).name for p in paths]}
    return save_checkpoint(output, model_state=average_checkpoints(paths), config=newest.config,
                           vocab_bytes=newest.vocab_bytes, progress=progress)


# ---- a run's checkpoints ------------------------------------------------------------------------------


class CheckpointManager:
    """Writes a run's checkpoints: ``ckpt_step<N>`` every time, pruned to the last ``keep_last``."""

    def __init__(self, run_dir: str | os.PathLike[str], keep_last: int = 5):
        if keep_last < 1:
            raise ValueError(f"keep_last must be at least 1, got {keep_last}")
        self.run_dir, self.keep_last = Path(run_dir), keep_last

    def save(self, step: int, **contents: Any) -> Path:
        """Save step ``step`` (``contents`` as for ``save_checkpoint``), then delete the oldest extra ones."""
        path = save_checkpoint(step_path(self.run_dir, step), **contents)
        self.prune()
        return path

    def save_best(self, **contents: Any) -> Path:
        """Overwrite ``best.safetensors`` (atomically)."""
        return save_checkpoint(self.run_dir / BEST_NAME, **contents)

    def prune(self) -> list[Path]:
        """Delete step checkpoints beyond the newest ``keep_last``; returns the deleted paths."""
        old = list_checkpoints(self.run_dir)[: -self.keep_last]
        for p in old:
            p.unlink(missing_ok=True)
        return old

    def latest(self) -> Path | None:
        return latest_checkpoint(self.run_dir)


# ---- a model for translation --------------------------------------------------------------------------


def load_model(path: str | os.PathLike[str], device: ta.Device | str = "cpu",
               vocab_path: str | os.PathLike[str] | None = None) -> tuple[Transformer, Vocab, cfg.Config, Checkpoint]:
    """``(model, vocab, config, checkpoint)`` from a checkpoint file or run directory, model in eval mode.

    The vocabulary is the one stored in the checkpoint, or the SentencePiece model at ``vocab_path``;
    either way its size must be the model's embedding size, else ``CheckpointError``.
    """
    checkpoint = load_checkpoint(path)
    try:
        config = cfg.resolve(cfg.from_dict(checkpoint.config, where=f"{checkpoint.path} (its config)"))
    except cfg.ConfigError as e:
        raise CheckpointError(f"{checkpoint.path} holds a config this version cannot use: {e}") from e
    trained_vocab = Vocab.from_bytes(checkpoint.vocab_bytes)
    vocab = trained_vocab
    if vocab_path is not None:
        try:
            vocab = Vocab.load(vocab_path)
        except (OSError, RuntimeError, ValueError) as e:
            raise CheckpointError(f"cannot load the vocabulary {vocab_path}: {e}") from e
    embedding = checkpoint.model.get("embedding.weight")
    n_rows = int(embedding.shape[0]) if embedding is not None else len(trained_vocab)
    if len(vocab) != n_rows:
        source = vocab_path if vocab_path is not None else f"the vocabulary stored in {checkpoint.path}"
        raise CheckpointError(
            f"vocabulary mismatch: {source} has {len(vocab)} pieces but the model in {checkpoint.path} has "
            f"{n_rows} embedding rows; use the spm.model of the run that trained this checkpoint"
        )
    model = build_model(n_rows, pad_id=PAD_ID, **config.model_hparams())
    try:
        model.load_state_dict(checkpoint.model)
    except RuntimeError as e:
        raise CheckpointError(f"{checkpoint.path} does not fit the model its config describes: {e}") from e
    model.to(device)
    model.eval()
    return model, vocab, config, checkpoint

