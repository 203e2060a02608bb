"""Decoding: from a source sentence to a translation, one target token at a time.

The decoder predicts a distribution over the next token given the source and the tokens so far. Two
ways to turn that into a sentence:

- **greedy**: take the most probable token at every step;
- **beam search** (§6.1 of the paper: beam 4, length penalty alpha = 0.6): keep the ``beam_size`` best
  partial translations (by summed log-probability) at every step; a hypothesis that emits ``</s>`` is
  finished and scored by its log-probability divided by the GNMT length penalty (Wu et al., 2016)
  ``lp(Y) = ((5 + |Y|) / 6) ** alpha``, |Y| counting the tokens generated, ``</s>`` included (without
  it, short hypotheses win). A sentence is done when ``beam_size`` hypotheses have finished (the top
  ``beam_size`` candidates of a step are all that can finish) or at the length limit, where the live
  hypotheses are finished as they stand; the best finished one is the translation.

Both decode a batch of sentences at once (finished sentences leave the batch in groups, ``COMPACT_AT``) and
stop at ``max_len_a * source length + max_len_b`` tokens (source length counting its ``</s>``; the
defaults give "source length + 50"). With ``use_cache=True`` (the default) every step feeds only the
newest token and the model's ``DecoderCache`` holds the keys and values of earlier positions; with
``use_cache=False`` every step recomputes the decoder over the whole prefix (slower; for tests and
benchmarks). Outputs never include ``<s>`` or ``</s>``. The loops themselves (``greedy_loop``, ``beam_loop``)
need only a ``Decoder``: ``logits()``, ``advance()`` and ``tokens``, so the benchmark's PyTorch twin runs them too.

An empty source (no tokens: an empty line, or one of white space only) translates to an empty output without
decoding: the model was never trained on one, and whatever it made up would translate a sentence that is not there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

import tinygrad_attn as ta
from models.transformer import Transformer
from models.translator.batching import SourceBatch, decode_batches, restore_order
from models.translator.config import Config
from models.translator.parallel import map_in_processes, usable_workers
from models.translator.vocab import Vocab
from tinygrad_attn.backend import backend_of, on_device_of

__all__ = ["Decoder", "greedy_decode", "beam_search", "greedy_loop", "beam_loop", "max_output_lengths",
           "translate", "translate_sentences", "translate_ids", "attention_maps"]


class Logits(Protocol):
    """What a decoder's ``logits()`` returns: a (rows, vocabulary) tensor (ours, or PyTorch's for the twin)."""

    @property
    def shape(self) -> Any: ...

    def argmax(self, dim: int) -> Logits: ...

    def numpy(self) -> np.ndarray: ...


class Decoder(Protocol):
    """The decoder state that ``greedy_loop`` and ``beam_loop`` drive: R rows (hypotheses), each a prefix of
    target ids in ``tokens`` (R, t), ``<s>`` first."""

    @property
    def tokens(self) -> np.ndarray: ...

    def logits(self) -> Logits:
        """(R, V): the next-token logits of every row."""
        ...

    def advance(self, tokens: np.ndarray, rows: np.ndarray | None = None, same_sources: bool = True) -> None:
        """Continue row ``rows[i]`` with ``tokens[i]`` as new row i (``rows=None``: every row, in place);
        ``same_sources``: each new row's source sentence is that of the row it continues."""
        ...


class _Decoder:
    """The decoder state of R rows (hypotheses): next-token log-probabilities, then advance by one token."""

    def __init__(self, model: Transformer, memory: ta.Tensor, src_keep: ta.Tensor, bos_id: int, use_cache: bool,
                 copies: int = 1):
        """``copies`` rows per sentence of ``memory`` (B, S, D): beams, each group of ``copies`` rows together."""
        self.model = model
        self.cache = model.init_cache(memory) if use_cache else None  # encoder keys/values: once per sentence
        if copies > 1:
            rows = np.repeat(np.arange(memory.shape[0]), copies)
            index = ta.tensor(rows, device=memory.device)
            memory, src_keep = memory[index], src_keep[index]
            if self.cache is not None:
                self.cache.reorder(rows)
        self.memory, self.src_keep = memory, src_keep
        self.tokens = np.full((memory.shape[0], 1), bos_id, dtype=np.int64)  # every row's prefix, <s> first
        # With keep_attention, logits() also keeps its step's attention weights in ``attention``:
        # {"self": per layer (R, H, 1, t), "cross": per layer (R, H, 1, S)} (needs the cache).
        self.keep_attention = False
        self.attention: dict[str, list[ta.Tensor]] | None = None

    def logits(self) -> ta.Tensor:
        """(R, V): the next-token logits of every row (for the argmax of greedy decoding, which they give as
        well as the log-probabilities do: log_softmax only shifts each row)."""
        if self.cache is not None and self.keep_attention:
            h, self.attention = self.model.decode_hidden(self.tokens[:, -1:], self.memory, self.src_keep, self.cache,
                                                         return_attention=True)
        elif self.cache is not None:
            h = self.model.decode_hidden(self.tokens[:, -1:], self.memory, self.src_keep, self.cache)
        else:
            h = self.model.decode_hidden(self.tokens, self.memory, self.src_keep)[:, -1:]
        return self.model.project(h)[:, 0]  # the vocabulary projection only where it is needed: the last position

    def advance(self, tokens: np.ndarray, rows: np.ndarray | None = None, same_sources: bool = True) -> None:
        """Continue row ``rows[i]`` with ``tokens[i]`` as new row i (``rows=None``: every row, in place).
        ``same_sources``: row i had the same source sentence before (beams reshuffled within a sentence),
        so the encoder side stays as it is."""
        if rows is None:
            self.tokens = np.concatenate([self.tokens, tokens[:, None]], axis=1)
            return
        self.tokens = np.concatenate([self.tokens[rows], tokens[:, None]], axis=1)
        if not same_sources:
            index = ta.tensor(rows, device=self.memory.device)
            self.memory, self.src_keep = self.memory[index], self.src_keep[index]
        if self.cache is not None:
            self.cache.reorder(rows, cross=not same_sources)


# Finished sentences leave the batch once this fraction of it has finished: dropping rows copies the
# cache, so it pays only when enough rows go at once (until then the finished rows are computed and ignored).
COMPACT_AT = 0.25


def _source(model: Transformer, src: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    src = np.asarray(src.numpy() if isinstance(src, ta.Tensor) else src)
    if src.ndim != 2 or src.dtype.kind not in "iu":
        raise ValueError(f"decoding: src must be integer ids of shape (batch, time), got {src.dtype} {src.shape}")
    return src.astype(np.int64, copy=False), (src != model.pad_id).sum(axis=1)


def max_output_lengths(src_len: np.ndarray, max_len_a: float, max_len_b: int) -> np.ndarray:
    """The longest output of each sentence: ``max_len_a * source length + max_len_b`` tokens, at least 1."""
    return np.maximum(1, np.floor(max_len_a * src_len + max_len_b)).astype(np.int64)


class _EvalMode:
    """``with _EvalMode(model):`` eval mode and no graph, restoring the training flag afterwards."""

    def __init__(self, model: Transformer):
        self.model, self.no_grad = model, ta.no_grad()

    def __enter__(self) -> None:
        self.was_training = self.model.training
        self.model.eval()
        self.no_grad.__enter__()

    def __exit__(self, *exc: object) -> None:
        self.no_grad.__exit__(*exc)
        self.model.train(self.was_training)


def greedy_decode(model: Transformer, src: np.ndarray, bos_id: int, eos_id: int, max_len_a: float = 1.0,
                  max_len_b: int = 50, use_cache: bool = True,
                  observe: Callable[[Any], Decoder] | None = None) -> list[list[int]]:
    """Greedy decoding of a batch: ``src`` (B, S) int ids (padded with the model's pad id, each row ending
    in ``</s>``) -> B lists of output ids (without ``<s>``/``</s>``). ``observe(decoder)``, if given, returns
    the decoder the loop drives (a wrapper that watches each step; the decoder keeps each step's attention
    weights in ``decoder.attention``)."""
    src, src_len = _source(model, src)
    if src.shape[0] == 0:
        return []
    with _EvalMode(model):
        memory, src_keep, *encoder_attention = model.encode(src, return_attention=observe is not None)
        decoder = _observed(_Decoder(model, memory, src_keep, bos_id, use_cache), observe, encoder_attention)
        return greedy_loop(decoder, max_output_lengths(src_len, max_len_a, max_len_b), eos_id)


def _observed(decoder: Any, observe: Callable[[Any], Decoder] | None, encoder_attention: list) -> Decoder:
    """``decoder``, or what ``observe`` wraps it in: then the decoder keeps each step's attention weights
    (``decoder.attention``) and ``decoder.encoder_attention`` holds the encoder's, per layer (B, H, S, S)."""
    if observe is None:
        return decoder
    decoder.keep_attention = True
    decoder.encoder_attention = encoder_attention[0]
    return observe(decoder)


def greedy_loop(decoder: Decoder, max_len: np.ndarray, eos_id: int) -> list[list[int]]:
    """The greedy loop on a decoder of B rows (the benchmark's PyTorch twin runs it too); ``max_len`` (B,)."""
    B = len(max_len)
    outputs: list[list[int]] = [[] for _ in range(B)]
    alive = np.arange(B)  # the sentence of each row
    running = np.ones(B, dtype=bool)  # rows still decoding (finished rows stay until the batch is compacted)
    for step in range(int(max_len.max())):
        token = decoder.logits().argmax(dim=-1).numpy()
        for row in np.flatnonzero(running & (token != eos_id)):
            outputs[alive[row]].append(int(token[row]))
        running &= (token != eos_id) & (step + 1 < max_len[alive])
        if not running.any():
            break
        if running.mean() <= 1 - COMPACT_AT:
            rows = np.flatnonzero(running)
            decoder.advance(token[rows], rows, same_sources=False)
            alive, running = alive[rows], running[rows]
        else:
            decoder.advance(token)
    return outputs


def length_penalty(length: int, alpha: float) -> float:
    """GNMT's lp(Y) = ((5 + |Y|) / 6) ** alpha: divide a log-probability by it to compare lengths fairly."""
    return ((5.0 + length) / 6.0) ** alpha


def beam_search(model: Transformer, src: np.ndarray, bos_id: int, eos_id: int, beam_size: int = 4,
                alpha: float = 0.6, max_len_a: float = 1.0, max_len_b: int = 50,
                use_cache: bool = True, observe: Callable[[Any], Decoder] | None = None) -> list[list[int]]:
    """Beam search over a batch: ``src`` (B, S) -> B lists of output ids (the best finished hypothesis of
    each sentence, without ``<s>``/``</s>``). ``beam_size=1`` gives exactly the greedy output. ``observe``:
    as in ``greedy_decode``."""
    if beam_size < 1:
        raise ValueError(f"beam_search: beam_size must be at least 1, got {beam_size}")
    src, src_len = _source(model, src)
    if src.shape[0] == 0:
        return []
    with _EvalMode(model):
        memory, src_keep, *encoder_attention = model.encode(src, return_attention=observe is not None)
        decoder = _observed(_Decoder(model, memory, src_keep, bos_id, use_cache, copies=beam_size), observe,
                            encoder_attention)
        return beam_loop(decoder, max_output_lengths(src_len, max_len_a, max_len_b), eos_id, beam_size, alpha)


def beam_loop(decoder: Decoder, max_len: np.ndarray, eos_id: int, k: int, alpha: float) -> list[list[int]]:
    """The beam search loop on a decoder of B * k rows, each sentence's k beams together (the benchmark's
    PyTorch twin runs it too); ``max_len`` (B,)."""
    B = len(max_len)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]  # (score, tokens) per sentence
    alive = np.arange(B)  # the sentence of each group of k rows
    running = np.ones(B, dtype=bool)  # sentences still searching (done ones stay until compaction)
    n_finished = np.zeros(B, dtype=np.int64)  # finished hypotheses of each sentence
    # Summed log-probabilities of the live beams. At the start all k beams are the same "<s>": let only
    # the first one expand, or the beam would fill with k copies of one hypothesis.
    score = np.full((B, k), -np.inf)
    score[:, 0] = 0.0
    for step in range(int(max_len.max())):
        length = step + 1  # tokens generated once this step's token is added
        n = len(alive)
        logits = decoder.logits()  # (n * k, V)
        V = logits.shape[1]
        # The 2k best continuations of each sentence (at most k of them end in </s>, one per beam) are
        # among the 2k best tokens of each of its beams: select those first, then add the beams'
        # scores (in float64, so that sums of float32 log-probabilities neither round nor tie).
        tokens, token_logp = _candidates(logits, 2 * k)  # (n * k, 2k) each, on the host
        total = score.reshape(-1, 1) + token_logp.astype(np.float64)
        flat = ((np.arange(n * k) % k)[:, None] * V + tokens).reshape(n, -1)  # beam * V + token
        total = total.reshape(n, -1)
        pick = np.lexsort((flat, -total), axis=1)[:, : 2 * k]  # best first; ties: lower beam, then token
        best, candidates = np.take_along_axis(flat, pick, axis=1), np.take_along_axis(total, pick, axis=1)
        row = np.arange(n)[:, None] * k + best // V  # (n, 2k): the beam (row) each candidate extends
        token = best % V
        ends = token == eos_id
        # A candidate ending in </s> among the top k finishes its hypothesis (one ranked lower is beaten
        # by k live beams). This Python loop runs about k times per sentence in all, not every step.
        finishing = ends & running[:, None] & (np.arange(2 * k) < k) & (candidates > -np.inf)
        for i, j in zip(*np.nonzero(finishing)):
            hypothesis = _hyp(decoder, row[i, j])
            finished[alive[i]].append((candidates[i, j] / length_penalty(length, alpha), hypothesis))
        n_finished += finishing.sum(axis=1)
        # The k best candidates that do not end are the next beams (2k hold at least k of them).
        kept = np.argsort(ends, axis=1, kind="stable")[:, :k]
        next_rows, next_tokens, next_score = (np.take_along_axis(a, kept, axis=1) for a in (row, token, candidates))
        for i in np.flatnonzero(running & (n_finished < k) & (length >= max_len[alive])):
            # Out of room: the live beams end here as they are.
            finished[alive[i]].extend((s / length_penalty(length, alpha), _hyp(decoder, r) + [int(t)])
                                      for r, t, s in zip(next_rows[i], next_tokens[i], next_score[i])
                                      if s > -np.inf)
            n_finished[i] = k
        running &= n_finished < k
        next_tokens[~running], next_score[~running] = eos_id, -np.inf  # done: idle on </s> until compaction
        next_rows, next_tokens, next_score = next_rows.reshape(-1), next_tokens.reshape(-1), next_score.reshape(-1)
        if not running.any():
            break
        if running.mean() <= 1 - COMPACT_AT:
            keep = np.flatnonzero(running)
            rows = (keep[:, None] * k + np.arange(k)).reshape(-1)
            decoder.advance(next_tokens[rows], next_rows[rows], same_sources=False)
            alive, running, score = alive[keep], running[keep], next_score[rows].reshape(len(keep), k)
            n_finished = n_finished[keep]
        else:
            decoder.advance(next_tokens, next_rows, same_sources=True)
            score = next_score.reshape(n, k)
    return [max(hyps, key=lambda h: h[0])[1] if hyps else [] for hyps in finished]


def _candidates(logits: Logits, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The n most probable tokens of each row of ``logits`` (R, V) and their log-probabilities, best first,
    as host arrays (int64 and float32 values, the latter widened to float64 on a GPU).

    On a GPU they are found there and only they come to the host: 2n numbers per row, in one copy, not the
    R x V logits. On the CPU (and for the benchmark's PyTorch twin, whose logits come as a NumPy array) the
    same functions run on the host."""
    if isinstance(logits, ta.Tensor) and logits.device.type != "cpu":
        scores = logits.data
        with on_device_of(scores):
            xp = logits.xp
            tokens, logp = _top_log_probs(xp, scores, n)
            both = xp.concatenate([tokens.astype(xp.float64), logp.astype(xp.float64)], axis=1)
        host = backend_of(both).to_numpy(both)  # the one read of the step
        return host[:, : tokens.shape[1]].astype(np.int64), host[:, tokens.shape[1]:]
    return _top_log_probs(np, logits.numpy(), n)


def _top_log_probs(xp: Any, logits: Any, n: int) -> tuple[Any, Any]:
    """The n most probable tokens of each row of ``logits`` (R, V) and their log-probabilities, best first,
    computed with the array module ``xp`` on the logits' device.

    log p = logit - logsumexp(row) shifts a whole row by one number, so the ranking is read off the logits
    and only the n picked entries are normalised (a full log_softmax would write all R x V of them).
    Overwrites the picked entries of ``logits``."""
    peak = logits.max(axis=1, keepdims=True)
    exp = xp.subtract(logits, peak)
    xp.exp(exp, out=exp)
    log_normaliser = peak + xp.log(exp.sum(axis=1, keepdims=True))  # logsumexp, stable: the max is factored out
    del exp
    tokens, values = _top(xp, logits, n)
    return tokens, values - log_normaliser


def _top(xp: Any, scores: Any, n: int) -> tuple[Any, Any]:
    """The n largest entries of each row, best first, as (column indices, values); among equal scores the
    lower index comes first (as with ``argmax``), so that beam size 1 picks what greedy picks. Overwrites
    the entries it picks in ``scores``.

    For small n, n rounds of ``argmax`` (one vectorised pass each) beat ``argpartition`` (introselect, whose
    pass costs many times more per element); on a GPU, always the rounds of ``argmax``."""
    n = min(n, scores.shape[1])
    if n > 16 and xp is np:
        part = np.argpartition(-scores, n - 1, axis=1)[:, :n]
        values = np.take_along_axis(scores, part, axis=1)
        order = np.lexsort((part, -values), axis=1)
        return np.take_along_axis(part, order, axis=1), np.take_along_axis(values, order, axis=1)
    rows = xp.arange(scores.shape[0])
    best = xp.empty((scores.shape[0], n), dtype=xp.int64)
    values = xp.empty((scores.shape[0], n), dtype=scores.dtype)
    for i in range(n):
        best[:, i] = scores.argmax(axis=1)
        values[:, i] = scores[rows, best[:, i]]
        scores[rows, best[:, i]] = -xp.inf
    return best, values


def _hyp(decoder: Decoder, row: int) -> list[int]:
    return [int(t) for t in decoder.tokens[row, 1:]]


def translate_ids(model: Transformer, sources: Sequence[Sequence[int]], bos_id: int, eos_id: int,
                  beam_size: int = 1, batch_size: int = 128, alpha: float = 0.6, max_len_a: float = 1.0,
                  max_len_b: int = 50, use_cache: bool = True, workers: int = 1) -> list[list[int]]:
    """Translate tokenized sources (without ``</s>``): sorted by length, batched, decoded, order restored; an
    empty source gives an empty output.

    ``workers`` > 1 (on the CPU): the batches are decoded by that many processes side by side, one BLAS
    thread each (``parallel.map_in_processes``), at most one per core; the outputs are the same."""
    real = [i for i, source in enumerate(sources) if len(source)]
    batches, order = decode_batches([sources[i] for i in real], batch_size, pad_id=model.pad_id, eos_id=eos_id)

    def decode(batch: SourceBatch) -> list[list[int]]:
        if beam_size == 1:
            return greedy_decode(model, batch.src, bos_id, eos_id, max_len_a, max_len_b, use_cache)
        return beam_search(model, batch.src, bos_id, eos_id, beam_size, alpha, max_len_a, max_len_b, use_cache)

    if workers > 1 and len(batches) > 1 and model.device.type == "cpu":
        decoded = map_in_processes(decode, batches, usable_workers(workers, "decode.workers"))
    else:
        decoded = [decode(batch) for batch in batches]
    outputs: list[list[int]] = [[] for _ in sources]
    for i, out in zip(real, restore_order([out for batch in decoded for out in batch], order)):
        outputs[i] = out
    return outputs


def translate_sentences(model: Transformer, vocab: Vocab, sentences: Sequence[str], beam_size: int = 1,
                        batch_size: int = 128, alpha: float = 0.6, max_len_a: float = 1.0, max_len_b: int = 50,
                        use_cache: bool = True, workers: int = 1) -> list[str]:
    """Translate sentences of text with ``vocab``: greedy for ``beam_size=1``, else beam search (``workers``:
    processes decoding side by side, as in ``translate_ids``). Empty sentences give empty translations."""
    if len(vocab) != model.vocab_size:
        raise ValueError(f"translate: the vocabulary has {len(vocab)} pieces but the model was built for "
                         f"{model.vocab_size}: use the spm.model saved with this model's run")
    ids = translate_ids(model, vocab.encode_batch(list(sentences)), vocab.bos_id, vocab.eos_id, beam_size,
                        batch_size, alpha, max_len_a, max_len_b, use_cache, workers)
    return vocab.decode_batch(ids)


def translate(model: Transformer, vocab: Vocab, sentences: Sequence[str], config: Config,
              beam_size: int = 1) -> list[str]:
    """``translate_sentences`` with the config's decode settings (greedy when ``beam_size == 1``)."""
    d = config.decode
    return translate_sentences(model, vocab, sentences, beam_size=beam_size, batch_size=d.batch_size,
                               alpha=d.alpha, max_len_a=d.max_len_a, max_len_b=d.max_len_b, workers=d.workers)


def attention_maps(model: Transformer, vocab: Vocab, sentence: str, beam_size: int = 1, alpha: float = 0.6,
                   translation: Sequence[int] | None = None) -> dict[str, Any]:
    """Translate one sentence and return what its attention heads looked at, for plotting.

    Returns a dict with ``source_tokens`` (S pieces, ``</s>`` last), ``target_tokens`` (T pieces: the
    output, ``</s>`` last: row t is the step that produced token t), ``translation`` (text) and weights as
    float32 arrays: ``encoder`` (L_enc, H, S, S) self-attention (row: a source token, columns: what it
    attends to), ``cross`` (L_dec, H, T, S) decoder-to-source attention, ``decoder`` (L_dec, H, T, T)
    decoder self-attention. Pass ``translation`` (ids) to inspect a given output instead of decoding.
    """
    src_ids = list(vocab.encode(sentence)) + [vocab.eos_id]
    src = np.asarray([src_ids], dtype=np.int64)
    if translation is None:
        translation = (greedy_decode(model, src, vocab.bos_id, vocab.eos_id) if beam_size == 1 else
                       beam_search(model, src, vocab.bos_id, vocab.eos_id, beam_size, alpha))[0]
    out = list(translation)
    with _EvalMode(model):
        memory, src_keep, enc = model.encode(src, return_attention=True)
        _, dec = model.decode_hidden(np.asarray([[vocab.bos_id] + out]), memory, src_keep, return_attention=True)
    stack = lambda ws: np.stack([w.numpy()[0] for w in ws]) if ws else np.zeros((0,), np.float32)  # noqa: E731
    return {
        "source_tokens": vocab.pieces(src_ids),
        "target_tokens": vocab.pieces(out + [vocab.eos_id]),
        "translation": vocab.decode(out),
        "encoder": stack(enc),
        "cross": stack(dec["cross"]),
        "decoder": stack(dec["self"]),
    }
