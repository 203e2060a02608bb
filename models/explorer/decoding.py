"""Translate one sentence while watching the decoder: attention maps and the beam tree of that very pass.

``greedy_decode`` / ``beam_search`` (``models/translator/search.py``) drive a decoder one step at a time.
Given ``observe``, they let a ``StepRecorder`` stand between the loop and the decoder: at every step it
sees each row's prefix, the step's per-head attention weights (the decoder keeps them) and the logits, and
at every ``advance`` which rows continued with which token. From that one pass come

- the cross-attention (target row t: where the decoder looked while producing token t) and the decoder's
  masked self-attention (row t sees positions 0 .. t: the causal triangle), read back for the output's
  prefixes; the encoder's self-attention comes from the same ``encode`` call;
- the beam tree: every hypothesis the beam kept, with its summed log-probability, and every one that
  finished with ``</s>``, scored as beam search scores it: log p / lp(|Y|), lp(|Y|) = ((5 + |Y|) / 6) ** alpha.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.explorer.sessions import TranslatorSession
from models.translator.search import Decoder, beam_search, greedy_decode, length_penalty

__all__ = ["StepRecorder", "translate_watched"]

Prefix = tuple[int, ...]


class StepRecorder:
    """A ``Decoder`` that passes every call on to ``decoder`` and writes down what each step saw."""

    def __init__(self, decoder: Any, eos_id: int, beam_size: int, alpha: float) -> None:
        self.decoder, self.eos_id, self.beam_size, self.alpha = decoder, eos_id, beam_size, alpha
        self.encoder_attention = decoder.encoder_attention  # per layer (1, H, S, S), from the same encode
        self.attention: dict[Prefix, tuple[np.ndarray, np.ndarray]] = {}  # prefix -> (self (L,H,t), cross (L,H,S))
        self.score: dict[Prefix, float] = {(): 0.0}  # summed log-probability of each hypothesis (no <s>)
        self.logp: dict[Prefix, float] = {(): 0.0}  # log-probability of its last token
        self.step_of: dict[Prefix, int] = {(): 0}
        self.finished: dict[Prefix, float] = {}  # hypotheses ended by </s> -> score / lp(|Y|)
        self._last: tuple[list[Prefix], np.ndarray] = ([], np.zeros((0, 0)))

    @property
    def tokens(self) -> np.ndarray:
        return self.decoder.tokens

    def logits(self) -> Any:
        logits = self.decoder.logits()
        values = logits.numpy().astype(np.float64)  # before the loop reads (and overwrites) its own copy
        logp = values - _logsumexp(values)
        prefixes = [tuple(int(t) for t in row[1:]) for row in self.decoder.tokens]
        att = self.decoder.attention
        self_att = np.stack([w.numpy()[:, :, 0] for w in att["self"]], axis=1)  # (R, L, H, t)
        cross_att = np.stack([w.numpy()[:, :, 0] for w in att["cross"]], axis=1)  # (R, L, H, S)
        for r, prefix in enumerate(prefixes):
            self.attention.setdefault(prefix, (self_att[r], cross_att[r]))
        self._record_finishing(prefixes, logp)
        self._last = (prefixes, logp)
        return logits

    def advance(self, tokens: np.ndarray, rows: np.ndarray | None = None, same_sources: bool = True) -> None:
        prefixes, logp = self._last
        parents = range(len(tokens)) if rows is None else rows
        for parent, token in zip(parents, tokens):
            child = prefixes[parent] + (int(token),)
            if int(token) != self.eos_id and child not in self.score:
                self.score[child] = self.score[prefixes[parent]] + float(logp[parent, token])
                self.logp[child] = float(logp[parent, token])
                self.step_of[child] = len(child)
        self.decoder.advance(tokens, rows, same_sources)

    def _record_finishing(self, prefixes: list[Prefix], logp: np.ndarray) -> None:
        """Beam search's rule: a candidate ending in </s> among the step's beam_size best finishes."""
        unique = {p: r for r, p in enumerate(prefixes) if p in self.score}
        if not unique:
            return
        totals = [(self.score[p] + logp[r, tok], p, int(tok)) for p, r in unique.items()
                  for tok in np.argsort(-logp[r])[: self.beam_size]]
        totals.sort(key=lambda c: -c[0])
        for total, prefix, token in totals[: self.beam_size]:
            if token == self.eos_id:
                self.finished[prefix] = total / length_penalty(len(prefix) + 1, self.alpha)
                self.logp[prefix + (token,)] = float(logp[unique[prefix], token])

    # ---- what the page gets ----------------------------------------------------------------------------
    def maps(self, output: list[int]) -> dict[str, np.ndarray]:
        """Attention of the output's decoding steps: ``cross`` (L, H, T, S) and ``decoder`` (L, H, T, T),
        row t for the step that produced target token t (T = len(output) + 1 with ``</s>``, when that step ran)."""
        rows = [tuple(output[:t]) for t in range(len(output) + 1) if tuple(output[:t]) in self.attention]
        self_rows = [self.attention[p][0] for p in rows]
        cross = np.stack([self.attention[p][1] for p in rows], axis=2)  # (L, H, T, S)
        T = len(rows)
        L, H = cross.shape[:2]
        decoder = np.zeros((L, H, T, T), dtype=np.float32)
        for t, w in enumerate(self_rows):
            decoder[:, :, t, : t + 1] = w  # row t attended to positions 0 .. t; above the diagonal stays 0
        encoder = np.stack([w.numpy()[0] for w in self.encoder_attention]) if self.encoder_attention else \
            np.zeros((0, H, 0, 0), np.float32)
        return {"cross": cross, "decoder": decoder, "encoder": encoder}

    def tree(self, session: TranslatorSession, output: list[int]) -> list[dict[str, Any]]:
        """The beam as a list of nodes (each with its parent's id): kept hypotheses and finished ones."""
        best = {tuple(output[:t]) for t in range(len(output) + 1)}
        nodes: list[dict[str, Any]] = []
        for prefix in sorted(self.score, key=lambda p: (len(p), -self.score[p])):
            nodes.append(self._node(session, prefix, self.score[prefix], None, prefix in best))
        for prefix, normalised in sorted(self.finished.items(), key=lambda item: -item[1]):
            ended = prefix + (self.eos_id,)
            total = normalised * length_penalty(len(ended), self.alpha)
            nodes.append(self._node(session, ended, total, normalised, prefix == tuple(output)))
        return nodes

    def _node(self, session: TranslatorSession, prefix: Prefix, score: float, normalised: float | None,
              best: bool) -> dict[str, Any]:
        return {"id": " ".join(map(str, prefix)), "parent": " ".join(map(str, prefix[:-1])) if prefix else None,
                "piece": session.piece(prefix[-1]) if prefix else "<s>", "step": len(prefix),
                "logp": round(self.logp.get(prefix, 0.0), 4), "score": round(score, 4),
                "finished": normalised is not None,
                "normalised": None if normalised is None else round(normalised, 4), "best": best}


def _logsumexp(x: np.ndarray) -> np.ndarray:
    peak = x.max(axis=1, keepdims=True)
    return peak + np.log(np.exp(x - peak).sum(axis=1, keepdims=True))


def translate_watched(session: TranslatorSession, sentence: str, beam_size: int = 1) -> dict[str, Any]:
    """Translate ``sentence`` (greedy for ``beam_size == 1``, else beam search) and return the pieces, the
    translation, every attention map of that pass as float32 arrays (``encoder`` (L, H, S, S), ``cross``
    (L, H, T, S), ``decoder`` (L, H, T, T)) and the beam tree (``beam``: the nodes of ``StepRecorder.tree``)."""
    model, vocab = session.model, session.vocab
    src_ids = session.source_ids(sentence)
    src = np.asarray([src_ids], dtype=np.int64)
    recorders: list[StepRecorder] = []

    def observe(decoder: Any) -> Decoder:
        recorders.append(StepRecorder(decoder, vocab.eos_id, beam_size, session.alpha))
        return recorders[-1]

    a, b = session.max_len_a, session.max_len_b
    if beam_size == 1:
        output = greedy_decode(model, src, vocab.bos_id, vocab.eos_id, a, b, observe=observe)[0]
    else:
        output = beam_search(model, src, vocab.bos_id, vocab.eos_id, beam_size, session.alpha, a, b,
                             observe=observe)[0]
    (recorder,) = recorders
    maps = recorder.maps(output)
    T = maps["cross"].shape[2]
    return {"source_tokens": vocab.pieces(src_ids), "target_ids": output,
            "target_tokens": vocab.pieces((output + [vocab.eos_id])[:T]), "translation": vocab.decode(output),
            **maps, "beam": recorder.tree(session, output)}
