"""A loaded model and what the explorer's views need of it.

A ``Session`` holds one model loaded from a checkpoint for the life of the server. The views ask it for
next-token logits (any model that predicts tokens can answer that: the translator's decoder, or the
decoder-only GPT of ``models/gpt.py``, a ``LanguageModelSession``); the translator's views (translate,
inside one head, beam search) need a ``TranslatorSession``. Another kind of model plugs in by subclassing
``Session`` (``next_token_logits`` and ``piece``) and adding its loader to ``LOADERS``.

Requests run on a pool of threads, but ``tinygrad_attn``'s grad mode (``no_grad``) is one process-wide
switch: every use of a model (and of autograd, in the autograd view) happens under ``COMPUTE_LOCK``, one
request at a time. NumPy releases the GIL inside its kernels, so the server still reads and writes other
requests meanwhile.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import tinygrad_attn as ta
from models.gpt import GPT
from models.lm.__main__ import InputError, encode_prompt
from models.lm.__main__ import load_model as load_language_model
from models.transformer import Transformer
from models.translator import checkpoints as ckpt
from models.translator.config import DecodeConfig
from models.translator.vocab import Vocab

__all__ = ["COMPUTE_LOCK", "Session", "TranslatorSession", "LanguageModelSession", "SessionError", "load_session",
           "LOADERS"]

# One request computes at a time: grad mode is process-global state in tinygrad_attn.autograd.
COMPUTE_LOCK = threading.Lock()


class SessionError(RuntimeError):
    """A checkpoint the explorer cannot serve (the message says why)."""


class Session(ABC):
    """One model, loaded once. ``name`` is how the page refers to it (the checkpoint's run or file name)."""

    kind = "model"

    def __init__(self, name: str, path: Path) -> None:
        self.name, self.path = name, path

    def info(self) -> dict[str, Any]:
        """What the page shows about the model and needs to know for its controls."""
        return {"name": self.name, "kind": self.kind}

    @abstractmethod
    def next_token_logits(self, prefix: str, source: str | None = None) -> tuple[list[str], np.ndarray]:
        """The pieces the model sees as context, and its next-token logits (V,) float32 after them."""

    @abstractmethod
    def piece(self, token_id: int) -> str:
        """The text of one token (a SentencePiece piece: ``▁`` starts a word)."""


class TranslatorSession(Session):
    """The encoder-decoder translator of ``models/translator`` with its SentencePiece vocabulary."""

    kind = "translator"

    def __init__(self, name: str, path: Path, model: Transformer, vocab: Vocab, decode: DecodeConfig) -> None:
        super().__init__(name, path)
        self.model, self.vocab = model, vocab
        # The run's decode settings: GNMT length penalty alpha, at most max_len_a * S + max_len_b tokens out
        self.alpha, self.max_len_a, self.max_len_b = decode.alpha, decode.max_len_a, decode.max_len_b

    def info(self) -> dict[str, Any]:
        m = self.model
        return {**super().info(), "d_model": m.d_model, "n_heads": m.n_heads, "d_k": m.d_model // m.n_heads,
                "encoder_layers": m.n_encoder_layers, "decoder_layers": m.n_decoder_layers,
                "vocab_size": m.vocab_size, "norm_first": m.norm_first, "alpha": self.alpha}

    def source_ids(self, sentence: str) -> list[int]:
        """The ids the encoder reads: the sentence's pieces, then ``</s>``."""
        return self.vocab.encode(sentence) + [self.vocab.eos_id]

    def encode(self, sentence: str) -> tuple[ta.Tensor, ta.Tensor]:
        """(memory (1, S, D), src_keep (1, S)) of one sentence (call under ``ta.no_grad()``)."""
        return self.model.encode(np.asarray([self.source_ids(sentence)], dtype=np.int64))

    def next_token_logits(self, prefix: str, source: str | None = None) -> tuple[list[str], np.ndarray]:
        """The decoder's logits for the token after ``<s>`` + the pieces of ``prefix``, given ``source``."""
        prefix_ids = [self.vocab.bos_id] + self.vocab.encode(prefix)
        with ta.no_grad():
            memory, src_keep = self.encode(source or "")
            logits = self.model.decode(np.asarray([prefix_ids], dtype=np.int64), memory, src_keep)
        return self.vocab.pieces(prefix_ids), logits.numpy()[0, -1]

    def piece(self, token_id: int) -> str:
        return self.vocab.pieces([token_id])[0]

    def pieces(self, ids: Sequence[int]) -> list[str]:
        return self.vocab.pieces(list(ids))


class LanguageModelSession(Session):
    """A decoder-only language model (``models.gpt.GPT``) with its vocabulary (characters or BPE pieces)."""

    kind = "lm"

    def __init__(self, name: str, path: Path, model: GPT, vocab: Any) -> None:
        super().__init__(name, path)
        self.model, self.vocab = model, vocab

    def info(self) -> dict[str, Any]:
        c = self.model.config
        return {**super().info(), "d_model": c.n_embd, "n_heads": c.n_head, "layers": c.n_layer,
                "block_size": c.block_size, "vocab_size": c.vocab_size}

    def next_token_logits(self, prefix: str, source: str | None = None) -> tuple[list[str], np.ndarray]:
        """The logits after the prompt ``prefix`` (its last ``block_size`` tokens: the model's context)."""
        try:
            ids = list(encode_prompt(self.vocab, prefix))[-self.model.config.block_size:]
        except InputError as e:
            raise ValueError(str(e)) from None
        with ta.no_grad():
            logits = self.model(ta.tensor(np.asarray([ids], dtype=np.int64)))
        return self.vocab.pieces(ids), logits.numpy()[0, -1]

    def piece(self, token_id: int) -> str:
        return str(self.vocab.pieces([token_id])[0])


def _load_translator(path: Path, name: str) -> Session:
    try:
        model, vocab, config, _ = ckpt.load_model(path)
    except (ckpt.CheckpointError, OSError, ValueError) as e:
        raise SessionError(f"cannot load {path}: {e}") from e
    return TranslatorSession(name, path, model, vocab, config.decode)


def _load_language_model(path: Path, name: str) -> Session:
    try:
        model, vocab, _ = load_language_model(str(path), ta.device("cpu"))
    except (ckpt.CheckpointError, OSError, ValueError) as e:
        raise SessionError(f"cannot load {path}: {e}") from e
    return LanguageModelSession(name, path, model, vocab)


# The loaders tried for a checkpoint, in order (each refuses a checkpoint of another kind).
LOADERS: list[Callable[[Path, str], Session]] = [_load_translator, _load_language_model]


def load_session(path: str | Path, taken: Sequence[str] = ()) -> Session:
    """Load the model at ``path`` (a run directory or a checkpoint file) under a name not in ``taken``."""
    path = Path(path)
    if not path.exists():
        raise SessionError(f"checkpoint not found: {path}")
    base = path.name if path.is_dir() else path.parent.name or path.stem
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    errors = []
    for loader in LOADERS:
        try:
            return loader(path, name)
        except SessionError as e:
            errors.append(str(e))
    raise SessionError("; ".join(errors))
