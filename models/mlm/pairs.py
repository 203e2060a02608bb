"""The classification task: "is this English sentence the translation of this German one?"

Built from Multi30k's aligned pairs, one split from the corpus split of the same name (train, val,
test_2016_flickr), so no sentence pair is shared between them; pairs of val and test whose German or English
sentence (normalised) also occurs in train are dropped, so no sentence is seen in training and tested on.

For every aligned pair (de_i, en_i) of a split, two examples:

- a positive, (de_i, en_i), label 1;
- a negative, (de_i, en_j) with j != i from the same split, label 0. A share ``hard_fraction`` of the
  negatives are *hard*: en_j is the sentence among ``pool`` random candidates with the most words in common
  with en_i (Jaccard overlap of normalised words), e.g. "A man in a red shirt is climbing a rock." for "A man
  in a blue shirt is climbing a rock.", so counting shared words cannot tell them apart; the rest are random.

A negative is never a true translation in disguise: en_j (normalised) differs from en_i.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.translator.data import load_pairs

SPLITS = ("train", "val", "test_2016_flickr")
_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """The normaliser: lower-case runs of letters and digits ("A man's T-shirt." -> a, man, s, t, shirt)."""
    return _WORD.findall(text.lower())


def normalised(text: str) -> str:
    return " ".join(words(text))


@dataclass(frozen=True)
class Example:
    de: str
    en: str
    label: int  # 1: en is de's translation, 0: it is not
    kind: str  # "positive", "hard" or "random"


def _overlap(a: set[str], b: set[str]) -> float:
    return len(a & b) / max(len(a | b), 1)


def make_examples(pairs: Sequence[tuple[str, str]], seed: int, hard_fraction: float = 0.5,
                  pool: int = 256) -> list[Example]:
    """A positive and a negative for each (de, en) pair of one split (see the module docstring)."""
    if len(pairs) < 2:
        raise ValueError(f"make_examples: need at least 2 pairs to draw negatives from, got {len(pairs)}")
    rng = np.random.default_rng(seed)
    en_words = [set(words(en)) for _, en in pairs]
    en_norm = [normalised(en) for _, en in pairs]
    out = []
    for i, (de, en) in enumerate(pairs):
        out.append(Example(de, en, 1, "positive"))
        hard = rng.random() < hard_fraction
        candidates = [int(j) for j in rng.integers(0, len(pairs), size=pool if hard else 8)]
        candidates = [j for j in candidates if en_norm[j] != en_norm[i]]
        if not candidates:  # every draw was the same sentence: take any other
            candidates = [j for j in range(len(pairs)) if en_norm[j] != en_norm[i]][:1]
            if not candidates:
                raise ValueError("make_examples: every English sentence is the same; no negative exists")
        j = max(candidates, key=lambda c: _overlap(en_words[i], en_words[c])) if hard else candidates[0]
        out.append(Example(de, pairs[j][1], 0, "hard" if hard else "random"))
    return out


def load_splits(data_dir: str | None, seed: int, hard_fraction: float = 0.5,
                train_limit: int | None = None) -> dict[str, list[Example]]:
    """The examples of each split, built from Multi30k de-en; ``train_limit`` keeps the first N train pairs
    (the overlap filter always uses all of train)."""
    train_pairs = load_pairs("de-en", "train", data_dir)
    seen_de = {normalised(de) for de, _ in train_pairs}
    seen_en = {normalised(en) for _, en in train_pairs}
    splits = {}
    for k, split in enumerate(SPLITS):
        if split == "train":
            pairs = train_pairs[:train_limit] if train_limit is not None else train_pairs
        else:
            pairs = [(de, en) for de, en in load_pairs("de-en", split, data_dir)
                     if normalised(de) not in seen_de and normalised(en) not in seen_en]
        splits[split] = make_examples(pairs, seed=seed + k, hard_fraction=hard_fraction)
    return splits
