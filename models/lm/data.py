"""Tiny Shakespeare: find, download, verify and split the text; sample training blocks as nanoGPT does.

The corpus is one 1,115,394-character file of Shakespeare's plays (``input.txt`` of karpathy/char-rnn). Where it
comes from, first match wins: ``data_dir`` (the CLI's ``data.data_dir``); the cache folder
``~/.cache/tinygrad_attn/tinyshakespeare`` if it holds the file; the read-only copy beside the repository
(``../shared/data/tinyshakespeare``); otherwise it is downloaded into the cache folder from ``UPSTREAM_URL``.
The file is always checked against ``SHA256`` (the download with the translator's ``download_file``).

The split is nanoGPT's ``shakespeare_char``: the first 90% of the characters train, the last 10% validate
(1,003,854 / 111,540). A training batch is ``batch_size`` windows of ``block_size + 1`` tokens starting at
uniformly random offsets: inputs are the first ``block_size``, targets the same shifted by one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from models.translator.data import DataError, download_file, verify_file

FILE_NAME = "input.txt"
UPSTREAM_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
SHARED_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "tinyshakespeare"
TRAIN_FRACTION = 0.9

__all__ = ["find_text", "load_text", "split_text", "get_batch", "FILE_NAME", "SHA256", "UPSTREAM_URL"]


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/tinygrad_attn/tinyshakespeare``, or ``~/.cache/tinygrad_attn/tinyshakespeare``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tinygrad_attn" / "tinyshakespeare"


def find_text(data_dir: str | os.PathLike[str] | None = None, download: bool = True) -> Path:
    """The path of a verified ``input.txt``: in ``data_dir``, the cache, the shared copy, or downloaded."""
    if data_dir is not None:
        path = Path(data_dir).expanduser() / FILE_NAME
        if not path.is_file():
            raise DataError(f"{path.parent} (data.data_dir) has no {FILE_NAME}; expected Tiny Shakespeare from "
                            f"{UPSTREAM_URL}")
    else:
        cached, shared = default_cache_dir() / FILE_NAME, SHARED_DIR / FILE_NAME
        path = cached if cached.is_file() else shared
        if not path.is_file():
            if not download:
                raise DataError(f"Tiny Shakespeare not found in {cached.parent} or {shared.parent}, and downloading "
                                "is switched off; set data.data_dir to a folder holding input.txt")
            path = download_file(FILE_NAME, cached.parent, url=UPSTREAM_URL, sha256=SHA256)
    verify_file(path, sha256=SHA256)
    return path


def load_text(data_dir: str | os.PathLike[str] | None = None) -> str:
    """The whole corpus as one string."""
    return find_text(data_dir).read_text(encoding="utf-8")


def split_text(text: str, train_fraction: float = TRAIN_FRACTION) -> tuple[str, str]:
    """(train, val): the first ``train_fraction`` of the characters and the rest, as nanoGPT splits them."""
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    n = int(len(text) * train_fraction)
    return text[:n], text[n:]


def get_batch(data: np.ndarray, block_size: int, batch_size: int, rng: np.random.Generator) -> tuple[Any, Any]:
    """``batch_size`` random windows of ``data`` (1-D token ids): inputs x (B, block_size) and targets y = x
    shifted by one position (the token after each input position)."""
    if len(data) <= block_size:
        raise ValueError(f"get_batch: {len(data)} tokens cannot hold a block of {block_size} + 1")
    starts = rng.integers(0, len(data) - block_size, size=batch_size)
    window = starts[:, None] + np.arange(block_size + 1)
    tokens = data[window]
    return tokens[:, :-1], tokens[:, 1:]
