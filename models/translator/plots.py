"""Pictures of a run: training curves, and attention maps of one translated sentence.

Figures are drawn with matplotlib's object API (``matplotlib.figure.Figure`` rendered by the Agg
canvas), never ``pyplot``: no window, no global state, works on a headless server.

* ``plot_curves``: from ``metrics.jsonl``, the training and validation loss, the validation BLEU
  against steps and against minutes of training, and the learning rate.
* ``plot_attention_grid``: one heatmap per (layer, head) of an attention tensor
  ``(layers, heads, queries, keys)``, axes labelled with SentencePiece pieces (``▁`` starts a word).
  Rows of a decoder cross-attention map are target pieces, columns source pieces: row ``t`` shows
  where the decoder looked in the source while producing target piece ``t``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file (one JSON object per line; blank lines ignored)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _series(records: Iterable[dict[str, Any]], kind: str, key: str, x: str = "step") -> tuple[list, list]:
    pts = [(r[x], r[key]) for r in records if r.get("kind") == kind and r.get(key) is not None and x in r]
    return [p[0] for p in pts], [p[1] for p in pts]


def plot_curves(records: Sequence[dict[str, Any]], path: str | os.PathLike[str], title: str = "",
                score_key: str = "bleu", score_label: str = "sacreBLEU",
                loss_label: str = "label-smoothed") -> Path:
    """Save a 2x2 figure of loss, the validation score (by step and by training minutes) and learning rate.

    ``records`` are metrics as written by training: ``kind == "train"`` rows carry ``loss`` and ``lr``,
    ``kind == "eval"`` rows ``val_loss`` and the score ``score_key`` (the translator's ``bleu``, a language
    model's ``val_bpc``); all carry ``step`` and ``train_seconds``.
    """
    fig = Figure(figsize=(11, 7.5))
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.07, top=0.92, wspace=0.22, hspace=0.35)
    (ax_loss, ax_score), (ax_time, ax_lr) = fig.subplots(2, 2)

    note = f" ({loss_label})" if loss_label else ""
    ax_loss.plot(*_series(records, "train", "loss"), label=f"train{note}", lw=1)
    ax_loss.plot(*_series(records, "eval", "val_loss"), "o-", label=f"validation{note}", ms=3)
    ax_loss.set(xlabel="step", ylabel="loss per target token", title="Loss")
    ax_loss.legend()

    ax_score.plot(*_series(records, "eval", score_key), "o-", color="C2", ms=3)
    ax_score.set(xlabel="step", ylabel=score_label, title=f"Validation {score_label}")

    minutes, score = _series(records, "eval", score_key, x="train_seconds")
    ax_time.plot([s / 60 for s in minutes], score, "o-", color="C2", ms=3)
    ax_time.set(xlabel="training minutes", ylabel=score_label, title=f"Validation {score_label} vs time")

    ax_lr.plot(*_series(records, "train", "lr"), color="C3", lw=1)
    ax_lr.set(xlabel="step", ylabel="learning rate", title="Learning rate")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))

    for ax in (ax_loss, ax_score, ax_time, ax_lr):
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_attention_grid(
    weights: np.ndarray,
    query_labels: Sequence[str],
    key_labels: Sequence[str],
    path: str | os.PathLike[str],
    title: str = "",
    query_name: str = "query",
    key_name: str = "key",
) -> Path:
    """Save one heatmap per layer (rows) and head (columns) of ``weights`` ``(layers, heads, Q, K)``.

    ``query_labels`` (length Q) label the rows of each map, ``key_labels`` (length K) its columns.
    A 2-d ``(Q, K)`` or 3-d ``(heads, Q, K)`` array is accepted too.
    """
    w = np.asarray(weights, dtype=np.float32)
    if w.ndim == 2:
        w = w[None, None]
    elif w.ndim == 3:
        w = w[None]
    if w.ndim != 4:
        raise ValueError(f"plot_attention_grid: weights must be (layers, heads, Q, K), got shape {w.shape}")
    n_layers, n_heads, n_q, n_k = w.shape
    if (len(query_labels), len(key_labels)) != (n_q, n_k):
        raise ValueError(
            f"plot_attention_grid: {len(query_labels)} query labels and {len(key_labels)} key labels "
            f"for attention maps of shape {n_q}x{n_k}"
        )
    cell = 0.22  # inches per token
    width = max(2.5, 0.9 + cell * n_k) * n_heads
    height = max(2.3, 0.9 + cell * n_q) * n_layers
    fig = Figure(figsize=(min(width, 60), min(height, 60)), layout="constrained")
    axes = np.asarray(fig.subplots(n_layers, n_heads, squeeze=False))
    font = 7 if max(n_q, n_k) < 30 else 5
    for layer in range(n_layers):
        for head in range(n_heads):
            ax = axes[layer, head]
            ax.imshow(w[layer, head], cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
            ax.set_xticks(range(n_k), labels=list(key_labels), rotation=90, fontsize=font)
            ax.set_yticks(range(n_q), labels=list(query_labels), fontsize=font)
            ax.set_title(f"layer {layer + 1}, head {head + 1}", fontsize=8)
            if layer == n_layers - 1:
                ax.set_xlabel(key_name, fontsize=8)
            if head == 0:
                ax.set_ylabel(query_name, fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_attention(
    path: str | os.PathLike[str],
    src_pieces: Sequence[str],
    tgt_pieces: Sequence[str],
    cross_attention: np.ndarray,
    encoder_attention: np.ndarray | None = None,
    title: str = "",
) -> list[Path]:
    """Draw a sentence's decoder cross-attention to ``path`` and encoder self-attention beside it.

    ``cross_attention`` is ``(layers, heads, target length, source length)``, ``encoder_attention``
    ``(layers, heads, source length, source length)``. The encoder map goes to ``<stem>-encoder<suffix>``
    next to ``path``. Returns the files written.
    """
    path = Path(path)
    written = [
        plot_attention_grid(cross_attention, tgt_pieces, src_pieces, path,
                            title=f"Decoder cross-attention{': ' + title if title else ''}",
                            query_name="target", key_name="source")
    ]
    if encoder_attention is not None:
        enc_path = path.with_name(f"{path.stem}-encoder{path.suffix or '.png'}")
        written.append(
            plot_attention_grid(encoder_attention, src_pieces, src_pieces, enc_path,
                                title=f"Encoder self-attention{': ' + title if title else ''}",
                                query_name="source (query)", key_name="source (key)")
        )
    return written


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Render to a temporary file and rename it into place, so a half-written image never appears."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix or ".png"
    tmp = path.with_name(f".{path.stem}.tmp{suffix}")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)
    return path
