"""Filling in the blanks: BERT's masked-LM head read as "which token goes here?".

``fill(model, vocab, "A man in an orange <mask> is looking at something.")`` encodes the text around each
``<mask>`` with the SentencePiece vocabulary, puts [MASK] (one piece) in each gap, runs the encoder once and
returns, for every mask, the most probable pieces with their probabilities (softmax over the vocabulary).
Each mask is predicted on its own, given the unmasked text (BERT's independence assumption).
"""

from __future__ import annotations

import numpy as np

import tinygrad_attn as ta
import tinygrad_attn.functional as F
from models.bert import BERT
from models.mlm.examples import MASK_ID, MASK_PIECE, N_SPECIAL, sequence
from models.translator.vocab import Vocab


class FillError(ValueError):
    """Text that cannot be filled in: no ``<mask>``, or too long for the model."""


def encode_masked(vocab: Vocab, text: str) -> list[int]:
    """The ids of ``text`` with [MASK] for each ``<mask>`` (the pieces around it encoded as they are)."""
    parts = text.split(MASK_PIECE)
    ids: list[int] = []
    for i, part in enumerate(parts):
        if i:
            ids.append(MASK_ID)
        if part.strip():
            ids += vocab.encode(part.strip())
    return ids


def inputs(vocab: Vocab, text: str, second: str | None, max_len: int,
           require_mask: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """ids and segments (1, S) of ``[CLS] text [SEP] (second [SEP])``, masks in either; FillError if too long
    or (with ``require_mask``) if there is no mask."""
    if require_mask and MASK_PIECE not in text and (second is None or MASK_PIECE not in second):
        shown = repr(text) if second is None else f"{text!r} / {second!r}"
        raise FillError(f"no {MASK_PIECE} in {shown}: mark each word to guess with {MASK_PIECE}, e.g. "
                        f"\"A man in an orange {MASK_PIECE} is looking at something.\"")
    first_ids = encode_masked(vocab, text) if MASK_PIECE in text else vocab.encode(text)
    second_ids = None
    if second is not None:
        second_ids = encode_masked(vocab, second) if MASK_PIECE in second else vocab.encode(second)
    n = len(first_ids) + (len(second_ids) + 1 if second_ids is not None else 0) + 2
    if n > max_len:
        raise FillError(f"the text is {n} tokens long with [CLS] and [SEP]; this model takes at most {max_len}")
    ids, segments = sequence(first_ids, second_ids, max_len)
    return np.array([ids]), np.array([segments])


def fill(model: BERT, vocab: Vocab, text: str, second: str | None = None,
         top_k: int = 5) -> list[list[tuple[str, float]]]:
    """For each [MASK] in reading order, the ``top_k`` most probable pieces (as text) and their probabilities."""
    ids, segments = inputs(vocab, text, second, model.max_positions)
    positions = np.flatnonzero(ids.reshape(-1) == MASK_ID)
    with ta.no_grad():
        model.eval()
        logits = model.mlm_logits(model.encode(ids, segments), positions)
        probs = F.softmax(logits, dim=-1).numpy()
    probs[:, :N_SPECIAL] = 0.0  # a special piece is never a word
    out = []
    for row in probs:
        best = np.argsort(-row)[:top_k]
        out.append([(vocab.sp.id_to_piece(int(i)).replace("▁", " ").strip() or "▁", float(row[i])) for i in best])
    return out


def filled(text: str, choices: list[str]) -> str:
    """``text`` with its ``<mask>``s replaced, in order, by ``choices``."""
    parts = text.split(MASK_PIECE)
    return parts[0] + "".join(c + p for c, p in zip(choices, parts[1:]))
