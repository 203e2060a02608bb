"""A joint SentencePiece (BPE) vocabulary shared by the source and target language.

The translator sees text as sequences of integer ids. ``Vocab`` trains a byte-pair-encoding
model with SentencePiece on the training sentences of both languages, so both sides share
one embedding table, and converts between text and ids.

Four ids are fixed, whatever the corpus:

====  ========  ==========================================
id    piece     meaning
====  ========  ==========================================
0     ``<pad>``  padding, ignored by the loss and attention
1     ``<unk>``  a character never seen in training
2     ``<s>``    beginning of sentence (decoder start)
3     ``</s>``   end of sentence
====  ========  ==========================================

Training is deterministic (all sentences are used, in the given order, one thread) and quiet.
Text is normalised with SentencePiece's ``nmt_nfkc`` rule (Unicode NFKC, runs of spaces
collapsed), so ``decode(encode(s)) == s`` holds for normalised sentences whose characters all
occurred in training.

If ``vocab_size`` is more than a tiny corpus can provide, ``Vocab.train`` raises ``ValueError``;
pass ``hard_vocab_limit=False`` to accept a smaller vocabulary instead (then check ``len(vocab)``).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import sentencepiece as spm

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
MODEL_NAME = "spm"  # train() writes <model_dir>/spm.model (and spm.vocab, a readable piece list)


def _sentences(sentences: Iterable[str]) -> Iterable[str]:
    """Feed SentencePiece one non-empty line at a time."""
    for s in sentences:
        s = s.strip()
        if s:
            yield s


def _id_list(ids: Sequence[int] | np.ndarray) -> list[int]:
    """Ids from a list or a 1-d numpy array, as plain Python ints."""
    return [int(i) for i in np.asarray(ids, dtype=np.int64).reshape(-1)]


class Vocab:
    """Text <-> ids with a trained SentencePiece model."""

    def __init__(self, processor: spm.SentencePieceProcessor):
        """Wrap a loaded processor; use ``Vocab.train``, ``Vocab.load`` or ``Vocab.from_bytes``."""
        self.sp = processor
        specials = (processor.pad_id(), processor.unk_id(), processor.bos_id(), processor.eos_id())
        if specials != (PAD_ID, UNK_ID, BOS_ID, EOS_ID):
            raise ValueError(
                f"SentencePiece model has special ids pad/unk/bos/eos = {specials}, "
                f"expected {(PAD_ID, UNK_ID, BOS_ID, EOS_ID)}; train it with Vocab.train"
            )

    @classmethod
    def train(
        cls,
        sentences: Iterable[str],
        model_dir: str | os.PathLike[str],
        vocab_size: int = 8000,
        *,
        model_type: str = "bpe",
        character_coverage: float = 1.0,
        hard_vocab_limit: bool = True,
        name: str = MODEL_NAME,
        extra_specials: Sequence[str] = (),
    ) -> Vocab:
        """Train on ``sentences`` (both languages) and save ``<model_dir>/<name>.model``.

        ``vocab_size`` counts everything, the four special pieces included. ``extra_specials`` are more
        pieces that are never split, with the ids after the four (e.g. ``"<mask>"``, id 4, for BERT).
        Raises ``ValueError`` when the corpus cannot give that many pieces (or too few are asked for to cover its
        characters) unless ``hard_vocab_limit=False``, which lets the vocabulary come out smaller.
        """
        writer = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(_sentences(sentences)),
                model_writer=writer,
                vocab_size=vocab_size,
                model_type=model_type,
                character_coverage=character_coverage,
                hard_vocab_limit=hard_vocab_limit,
                pad_id=PAD_ID,
                unk_id=UNK_ID,
                bos_id=BOS_ID,
                eos_id=EOS_ID,
                pad_piece="<pad>",
                unk_piece="<unk>",
                bos_piece="<s>",
                eos_piece="</s>",
                user_defined_symbols=list(extra_specials),
                normalization_rule_name="nmt_nfkc",
                input_sentence_size=0,  # use every sentence ...
                shuffle_input_sentence=False,  # ... in the given order: deterministic
                num_threads=1,  # recorded in the model file; fixed so the file is byte-identical
                minloglevel=2,  # only errors
            )
        except RuntimeError as e:
            reason = str(e).split("] ")[-1]  # drop SentencePiece's source location
            if "too high" in reason:
                reason += " Or pass hard_vocab_limit=False to accept a smaller vocabulary."
            raise ValueError(f"SentencePiece cannot make a vocabulary of size {vocab_size}: {reason}") from e
        vocab = cls.from_bytes(writer.getvalue())
        vocab.save(Path(model_dir) / f"{name}.model")
        return vocab

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Vocab:
        """Load a ``.model`` file, or ``spm.model`` from a folder (such as a run directory)."""
        path = Path(path)
        if path.is_dir():
            path = path / f"{MODEL_NAME}.model"
        if not path.is_file():
            raise FileNotFoundError(f"no SentencePiece model at {path}")
        return cls.from_bytes(path.read_bytes())

    @classmethod
    def from_bytes(cls, model: bytes) -> Vocab:
        """Load a model from its serialised bytes (as stored by ``to_bytes``, e.g. in a checkpoint)."""
        return cls(spm.SentencePieceProcessor(model_proto=model))

    def to_bytes(self) -> bytes:
        """The serialised model; ``Vocab.from_bytes`` turns it back into a ``Vocab``."""
        return self.sp.serialized_model_proto()

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the model to ``path`` (a ``.model`` file) and a readable ``.vocab`` list beside it.

        The files are written to temporary names first and renamed, so a crash never leaves a
        half-written model.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        listing = "".join(f"{self.sp.id_to_piece(i)}\t{self.sp.get_score(i):g}\n" for i in range(len(self)))
        for target, data in ((path, self.to_bytes()), (path.with_suffix(".vocab"), listing.encode("utf-8"))):
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, target)
        return path

    def __len__(self) -> int:
        """Number of pieces, special ones included: the size of the embedding table."""
        return self.sp.get_piece_size()

    @property
    def pad_id(self) -> int:
        return PAD_ID

    @property
    def unk_id(self) -> int:
        return UNK_ID

    @property
    def bos_id(self) -> int:
        return BOS_ID

    @property
    def eos_id(self) -> int:
        return EOS_ID

    def piece_id(self, piece: str) -> int:
        """The id of ``piece``; ``KeyError`` if the vocabulary has no such piece."""
        i = self.sp.piece_to_id(piece)
        if i == UNK_ID and piece != "<unk>":
            raise KeyError(f"the vocabulary has no piece {piece!r}")
        return int(i)

    def encode(self, text: str) -> list[int]:
        """The ids of one sentence, without ``<s>`` or ``</s>`` (batching adds those)."""
        return self.sp.encode(text, out_type=int)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """``encode`` for many sentences at once."""
        return self.sp.encode(list(texts), out_type=int)

    @staticmethod
    def _clean(ids: Sequence[int] | np.ndarray) -> list[int]:
        """Cut at the first ``</s>`` and drop ``<s>`` and ``<pad>``."""
        out = []
        for i in _id_list(ids):
            if i == EOS_ID:
                break
            if i not in (PAD_ID, BOS_ID):
                out.append(i)
        return out

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """Text of a model output: stops at the first ``</s>``, ignores ``<s>`` and ``<pad>``.

        Accepts a list of ints or a 1-d numpy array. Unknown pieces come out as `` ⁇ ``.
        """
        return self.sp.decode(self._clean(ids))

    def decode_batch(self, rows: Iterable[Sequence[int] | np.ndarray]) -> list[str]:
        """``decode`` for each row (e.g. of a 2-d array of generated ids)."""
        return [self.decode(row) for row in rows]

    def pieces(self, ids: Sequence[int] | np.ndarray) -> list[str]:
        """The piece of every id, specials included (``<s>``, ``</s>``, ``<pad>``).

        Handy as axis labels for attention plots; ``▁`` marks the start of a word.
        """
        return [self.sp.id_to_piece(i) for i in _id_list(ids)]
