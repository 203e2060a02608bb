"""Corpus BLEU and chrF through sacreBLEU."""

import pytest

from models.translator.data import read_lines
from models.translator.evaluate import corpus_scores, format_scores


@pytest.fixture(scope="module")
def refs(multi30k_dir):
    return read_lines(multi30k_dir / "val.en.gz")


def test_references_against_themselves_score_100(refs):
    scores = corpus_scores(refs, refs)
    assert scores["bleu"] == pytest.approx(100.0)
    assert scores["chrf"] == pytest.approx(100.0)
    assert scores["n_sentences"] == len(refs)


def test_signatures_are_reported(refs):
    scores = corpus_scores(refs[:10], refs[:10])
    assert "nrefs:1" in scores["bleu_signature"] and "tok:13a" in scores["bleu_signature"]
    assert "version:" in scores["bleu_signature"] and "version:" in scores["chrf_signature"]
    assert scores["bleu_details"].startswith("BLEU = ")
    text = format_scores(scores)
    assert scores["bleu_signature"] in text and scores["chrf_signature"] in text
    assert text.splitlines()[0].startswith("BLEU = 100.00")


def test_scores_drop_with_worse_hypotheses(refs):
    good = corpus_scores(refs, refs)
    shuffled = refs[1:] + refs[:1]  # every hypothesis describes another picture
    damaged = [" ".join(r.split()[: len(r.split()) // 2]) for r in refs]  # second half missing
    bad, half = corpus_scores(shuffled, refs), corpus_scores(damaged, refs)
    assert bad["bleu"] < half["bleu"] < good["bleu"]
    assert bad["chrf"] < half["chrf"] < good["chrf"]
    assert 0.0 <= bad["bleu"] < 15.0


def test_detokenized_punctuation_is_tokenized_by_sacrebleu():
    # "dog ." and "dog." tokenize the same way under 13a, so the score is unaffected.
    refs = ["A black dog runs across the green grass."]
    assert corpus_scores(["A black dog runs across the green grass ."], refs)["bleu"] == pytest.approx(100.0)


def test_bad_inputs():
    with pytest.raises(ValueError):
        corpus_scores(["a"], ["a", "b"])
    with pytest.raises(ValueError):
        corpus_scores([], [])
    with pytest.raises(TypeError):
        corpus_scores("a dog", "a dog")
    with pytest.raises(TypeError):
        corpus_scores([[5, 6, 7]], ["a dog"])
