"""Corpus BLEU and chrF of translations, computed with sacreBLEU.

Scores are only comparable with published numbers when computed the standard way: on
*detokenized* model output (plain text, as ``Vocab.decode`` returns it) against the *raw*
reference sentences, with sacreBLEU's own tokenization. sacreBLEU describes exactly how a score
was computed in a "signature" such as ``nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.4.0``;
report it next to the score.

``score`` translates sentence pairs with a model and scores the translations against their references.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sacrebleu.metrics import BLEU, CHRF

from models.transformer import Transformer
from models.translator.config import Config
from models.translator.ranks import SINGLE_PROCESS, Ranks
from models.translator.search import translate
from models.translator.vocab import Vocab


def _check(name: str, texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError(f"{name} must be a list of sentences, not one string")
    texts = list(texts)
    for t in texts:
        if not isinstance(t, str):
            raise TypeError(f"{name} must hold detokenized strings, found {type(t).__name__}: {t!r}")
    return texts


def corpus_scores(hyps: Sequence[str], refs: Sequence[str], tokenize: str | None = None) -> dict[str, object]:
    """BLEU and chrF of hypotheses ``hyps`` against one reference per sentence, ``refs``.

    ``tokenize`` is sacreBLEU's BLEU tokenizer (default ``13a``, the standard for European
    languages). Returns a dict with

    * ``bleu``, ``chrf``: the scores, floats from 0 to 100;
    * ``bleu_signature``, ``chrf_signature``: sacreBLEU's signature strings;
    * ``bleu_details``: the full BLEU line (n-gram precisions, brevity penalty, lengths);
    * ``n_sentences``.
    """
    hyps, refs = _check("hyps", hyps), _check("refs", refs)
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    if not hyps:
        raise ValueError("cannot score an empty corpus")
    bleu = BLEU() if tokenize is None else BLEU(tokenize=tokenize)
    chrf = CHRF()
    bleu_score = bleu.corpus_score(hyps, [refs])
    chrf_score = chrf.corpus_score(hyps, [refs])
    return {
        "bleu": float(bleu_score.score),
        "chrf": float(chrf_score.score),
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
        "bleu_details": str(bleu_score),
        "n_sentences": len(hyps),
    }


def format_scores(scores: dict[str, object]) -> str:
    """Two print-ready lines, e.g. ``BLEU = 35.21  (nrefs:1|case:mixed|...)`` and the same for chrF."""
    return (
        f"BLEU = {scores['bleu']:.2f}  ({scores['bleu_signature']})\n"
        f"chrF = {scores['chrf']:.2f}  ({scores['chrf_signature']})"
    )


def score(model: Transformer, vocab: Vocab, pairs: Sequence[tuple[str, str]], config: Config,
          beam_size: int = 1, ranks: Ranks = SINGLE_PROCESS) -> dict[str, Any]:
    """sacreBLEU and chrF of the model's translations of ``pairs`` against their raw references; several
    ``ranks`` (an MPI job) each translate every ``ranks.size``-th sentence and all get every score.

    Adds ``beam_size``, ``seconds`` and ``sentences_per_s`` (decoding speed) and the first few ``examples``.
    """
    start = time.perf_counter()
    hyps = ranks.map(lambda sources: translate(model, vocab, sources, config, beam_size=beam_size),
                     [s for s, _ in pairs])
    seconds = time.perf_counter() - start
    scores: dict[str, Any] = corpus_scores(hyps, [t for _, t in pairs])
    scores.update(beam_size=beam_size, seconds=round(seconds, 3), sentences_per_s=round(len(pairs) / seconds, 2),
                  examples=[{"source": s, "reference": t, "hypothesis": h} for (s, t), h in zip(pairs[:5], hyps)])
    return scores
