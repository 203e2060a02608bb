"""The classification task: "is this English sentence the translation of this German one?"

Built from Multi30k's aligned pairs, one split from the corpus split of the same name (train, val,
test_2016_flickr), so no sentence pair is shared between them; pairs of val and test whose German or English
sentence (normalised) also occurs in train are dropped, so no sentence is seen in training and tested on.

For every aligned pair (de_i, en_i) of a split, two examples:

- a positive, (de_i, en_i), label 1;
- a negative, label 0, of one of three kinds:
  - *swapped* (for a share ``swap_fraction`` of the pairs whose English has two words of one kind to swap):
    en_i itself with two words of the same kind exchanged, "A man in a red shirt and blue jeans" -> "... blue
    shirt and red jeans", "A dog chases a boy" -> "A boy chases a dog": the same words, another meaning, so
    no bag of words can tell it from the translation (PAWS's word-swap negatives, Zhang et al. 2019);
  - *hard* (a share ``hard_fraction`` of the others): en_j, j != i, the sentence among ``pool`` random
    candidates with the most words in common with en_i (Jaccard overlap of normalised words), e.g. "A man in a
    red shirt is climbing a rock." for "A man in a blue shirt is climbing a rock.";
  - *random*: en_j of a random other pair.

A negative is never a true translation in disguise: it differs from en_i after normalising.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.translator.data import load_pairs

SPLITS = ("train", "val", "test_2016_flickr")
KINDS = ("positive", "swapped", "hard", "random")  # of example; the last three are the negatives
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
    kind: str  # one of KINDS


def _overlap(a: set[str], b: set[str]) -> float:
    return len(a & b) / max(len(a | b), 1)


# Words whose exchange changes who does what, or who wears which colour; no synonyms within a kind.
SWAPPABLE = tuple(frozenset(kind.split()) for kind in (
    "red blue green yellow black white orange pink purple brown gray",
    "man woman boy girl men women boys girls child children dog dogs cat horse baby player players",
    "two three four five six",
    "shirt hat jacket dress pants shorts jeans coat suit helmet cap uniform",
    "street water beach field snow grass park stage sidewalk road building table bench wall tree rock pool sand",
))
# "a man and a woman" -> "a woman and a man" says the same: no swap across these words alone.
_JOINERS = frozenset("and or a an the".split())


def word_swaps(en: str) -> list[tuple[int, int]]:
    r"""The (i, j) positions among the ``\w+`` words of ``en`` whose exchange is a swapped negative: two
    different words of one kind in SWAPPABLE, with more between them than "and a"."""
    low = words(en)
    swaps = []
    for kind in SWAPPABLE:
        found = [i for i, w in enumerate(low) if w in kind]
        swaps += [(i, j) for a, i in enumerate(found) for j in found[a + 1:]
                  if low[i] != low[j] and not all(w in _JOINERS for w in low[i + 1:j])]
    return swaps


def swap_words(en: str, i: int, j: int) -> str:
    """``en`` with its i-th and j-th words exchanged, each taking the capitalisation of the place it goes to."""
    spans = [m.span() for m in _WORD.finditer(en)]
    text = [en[a:b] for a, b in spans]

    def fit(word: str, place: str) -> str:
        return word[0].upper() + word[1:].lower() if place[0].isupper() else word.lower()

    new = {i: fit(text[j], text[i]), j: fit(text[i], text[j])}
    out, last = [], 0
    for k in sorted(new):
        out += [en[last:spans[k][0]], new[k]]
        last = spans[k][1]
    return "".join(out) + en[last:]


def make_examples(pairs: Sequence[tuple[str, str]], seed: int, hard_fraction: float = 0.5,
                  pool: int = 256, swap_fraction: float = 0.0) -> list[Example]:
    """A positive and a negative for each (de, en) pair of one split (see the module docstring)."""
    if len(pairs) < 2:
        raise ValueError(f"make_examples: need at least 2 pairs to draw negatives from, got {len(pairs)}")
    rng = np.random.default_rng(seed)
    en_words = [set(words(en)) for _, en in pairs]
    en_norm = [normalised(en) for _, en in pairs]
    out = []
    for i, (de, en) in enumerate(pairs):
        out.append(Example(de, en, 1, "positive"))
        swaps = word_swaps(en)
        if rng.random() < swap_fraction and swaps:
            out.append(Example(de, swap_words(en, *swaps[rng.integers(len(swaps))]), 0, "swapped"))
            continue
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


def accuracy_by_kind(examples: Sequence[Example], predicted: Sequence[int] | np.ndarray) -> dict[str, float]:
    """The share of each kind of example (positive, swapped, hard, random) that got its label."""
    if len(examples) != len(predicted):
        raise ValueError(f"accuracy_by_kind: {len(predicted)} predictions for {len(examples)} examples")
    right: dict[str, list[bool]] = {}
    for e, p in zip(examples, predicted):
        right.setdefault(e.kind, []).append(int(p) == e.label)
    return {kind: float(np.mean(right[kind])) for kind in KINDS if kind in right}


def describe_kinds(by_kind: dict[str, float]) -> str:
    """``accuracy_by_kind``'s result as one line: "positive 0.9000, swapped 0.2500, ..."."""
    return ", ".join(f"{kind} {accuracy:.4f}" for kind, accuracy in by_kind.items())


def load_splits(data_dir: str | None, seed: int, hard_fraction: float = 0.5,
                train_limit: int | None = None, swap_fraction: float = 0.0) -> dict[str, list[Example]]:
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
        splits[split] = make_examples(pairs, seed=seed + k, hard_fraction=hard_fraction,
                                      swap_fraction=swap_fraction)
    return splits
