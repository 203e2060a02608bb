"""The baseline for the translation-pair task: bag-of-words logistic regression, in NumPy.

Features of a (German, English) pair, all binary or small counts, hashed into ``2**bits`` weights:

- every (German word, English word) pair, so the model can learn a bilingual dictionary from the positives
  ("hund" with "dog") and the negatives;
- the words the two sentences share (names, numbers, "t", "shirt"), and how many there are;
- the difference in length (in words), binned.

p(translation) = sigmoid(w . x + b), fitted by full-batch Adam on the mean log-loss plus L2 ``l2 * |w|^2``;
the L2 strength is chosen on the validation split. The features are sparse (a few hundred per pair), so
w . x is a gather and a ``bincount``, and so is the gradient.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.mlm.pairs import Example, accuracy_by_kind, words

BITS = 20


def _hash(feature: str, bits: int) -> int:
    return zlib.crc32(feature.encode("utf-8")) & ((1 << bits) - 1)


def features(de: str, en: str, bits: int = BITS) -> list[int]:
    """The hashed feature indices of one pair (see the module docstring)."""
    de_words, en_words = set(words(de)), set(words(en))
    names = [f"p:{d}|{e}" for d in de_words for e in en_words]
    shared = de_words & en_words
    names += [f"s:{w}" for w in shared] + [f"n_shared:{min(len(shared), 5)}"]
    names.append(f"len_diff:{max(-4, min(4, (len(words(en)) - len(words(de))) // 2))}")
    return sorted({_hash(n, bits) for n in names})


@dataclass
class SparseRows:
    """Rows of binary features: ``row`` and ``col`` of each non-zero."""

    row: np.ndarray
    col: np.ndarray
    n_rows: int
    bits: int  # the columns are hashes in [0, 2**bits)


def featurize(examples: Sequence[Example], bits: int = BITS) -> SparseRows:
    cols = [features(e.de, e.en, bits) for e in examples]
    row = np.repeat(np.arange(len(cols)), [len(c) for c in cols])
    return SparseRows(row, np.concatenate([np.asarray(c, dtype=np.int64) for c in cols]), len(cols), bits)


def _scores(x: SparseRows, w: np.ndarray, b: float) -> np.ndarray:
    if w.size != 1 << x.bits:
        raise ValueError(f"features hashed into 2**{x.bits} columns for a model of {w.size} weights")
    return np.bincount(x.row, weights=w[x.col], minlength=x.n_rows) + b


class LogisticRegression:
    """Binary logistic regression on hashed sparse features."""

    def __init__(self, bits: int = BITS, l2: float = 1e-5) -> None:
        self.bits, self.l2 = bits, l2
        self.w = np.zeros(1 << bits)
        self.b = 0.0

    def fit(self, x: SparseRows, y: np.ndarray, steps: int = 300, lr: float = 0.05) -> LogisticRegression:
        """Full-batch Adam on mean log-loss + l2 |w|^2. dL/ds = sigmoid(s) - y per row, summed into the weights
        of that row's features."""
        y = np.asarray(y, dtype=np.float64)
        m, v = np.zeros_like(self.w), np.zeros_like(self.w)
        mb = vb = 0.0
        for t in range(1, steps + 1):
            g_rows = (_sigmoid(_scores(x, self.w, self.b)) - y) / x.n_rows
            g = np.bincount(x.col, weights=g_rows[x.row], minlength=self.w.size) + 2 * self.l2 * self.w
            gb = float(g_rows.sum())
            m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
            mb, vb = 0.9 * mb + 0.1 * gb, 0.999 * vb + 0.001 * gb * gb
            step = lr * np.sqrt(1 - 0.999**t) / (1 - 0.9**t)
            self.w -= step * m / (np.sqrt(v) + 1e-8)
            self.b -= step * mb / (np.sqrt(vb) + 1e-8)
        return self

    def predict_proba(self, x: SparseRows) -> np.ndarray:
        return _sigmoid(_scores(x, self.w, self.b))

    def accuracy(self, x: SparseRows, y: np.ndarray) -> float:
        return float(np.mean((self.predict_proba(x) > 0.5) == (np.asarray(y) == 1)))


def _sigmoid(s: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * s))


def run_baseline(splits: dict[str, list[Example]], l2_grid: Sequence[float] = (1e-4, 1e-5, 1e-6),
                 steps: int = 300, bits: int = BITS) -> dict[str, Any]:
    """Fit on train for each L2 strength, keep the best on val; its accuracy on each split, and on each kind of
    example of each split (``by_kind``)."""
    x = {name: featurize(examples, bits) for name, examples in splits.items()}
    y = {name: np.array([e.label for e in examples]) for name, examples in splits.items()}
    fitted = [LogisticRegression(bits, l2).fit(x["train"], y["train"], steps=steps) for l2 in l2_grid]
    best = max(fitted, key=lambda model: model.accuracy(x["val"], y["val"]))
    predicted = {name: (best.predict_proba(x[name]) > 0.5).astype(int) for name in splits}
    return {"l2": best.l2, **{name: float(np.mean(predicted[name] == y[name])) for name in splits},
            "by_kind": {name: accuracy_by_kind(splits[name], predicted[name]) for name in splits}}
