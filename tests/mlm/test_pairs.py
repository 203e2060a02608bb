"""models/mlm/pairs.py and baseline.py: the translation-pair task's splits, its negatives, its baseline."""

import numpy as np
import pytest

from models.mlm.baseline import LogisticRegression, featurize, run_baseline
from models.mlm.pairs import SPLITS, Example, load_splits, make_examples, normalised, words
from models.translator.data import load_pairs

PAIRS = [("Ein Hund läuft.", "A dog runs."), ("Eine Katze schläft.", "A cat sleeps."),
         ("Ein roter Hund läuft.", "A red dog runs."), ("Zwei Männer spielen.", "Two men play."),
         ("Ein blauer Hund läuft.", "A blue dog runs."), ("Ein Kind lacht.", "A child laughs.")]


@pytest.fixture(scope="module")
def splits(multi30k_dir):
    return load_splits(str(multi30k_dir), seed=0, hard_fraction=0.5, train_limit=400)


def test_no_sentence_is_shared_between_train_and_the_test_splits(splits, multi30k_dir):
    every_train_pair = load_pairs("de-en", "train", str(multi30k_dir))  # not only the 400 used
    train_de = {normalised(de) for de, _ in every_train_pair}
    train_en = {normalised(en) for _, en in every_train_pair}
    for split in SPLITS[1:]:
        assert splits[split], split
        assert not {normalised(e.de) for e in splits[split]} & train_de
        assert not {normalised(e.en) for e in splits[split]} & train_en
    assert [len(splits[s]) for s in SPLITS][0] == 800


def test_each_split_is_balanced_and_no_negative_is_a_translation(splits):
    for split in SPLITS:
        examples = splits[split]
        labels = np.array([e.label for e in examples])
        assert labels.mean() == 0.5
        positives = {(e.de, normalised(e.en)) for e in examples if e.label == 1}
        assert not any((e.de, normalised(e.en)) in positives for e in examples if e.label == 0)


def test_hard_negatives_share_more_words_than_random_ones(splits):
    def overlap(e: Example, true_en: str) -> float:
        a, b = set(words(e.en)), set(words(true_en))
        return len(a & b) / len(a | b)

    ex = splits["train"]
    truth = {e.de: e.en for e in ex if e.label == 1}
    hard = [overlap(e, truth[e.de]) for e in ex if e.kind == "hard"]
    random = [overlap(e, truth[e.de]) for e in ex if e.kind == "random"]
    assert 0.3 < len(hard) / (len(hard) + len(random)) < 0.7
    assert np.mean(hard) > np.mean(random) + 0.15


def test_a_negative_is_never_the_same_sentence_written_differently():
    pairs = [("Ein Hund läuft.", "A dog runs."), ("Der Hund rennt.", "a dog runs"), ("Eine Katze.", "A cat.")]
    for seed in range(5):
        for e in make_examples(pairs, seed=seed, hard_fraction=1.0, pool=16):
            if e.label == 0:
                assert normalised(e.en) != normalised(dict(pairs)[e.de])


def test_make_examples_needs_two_different_sentences():
    with pytest.raises(ValueError, match="at least 2 pairs"):
        make_examples(PAIRS[:1], seed=0)
    with pytest.raises(ValueError, match="every English sentence is the same"):
        make_examples([("a", "The same."), ("b", "the same")], seed=0)
    assert len(make_examples(PAIRS, seed=0)) == 12


def test_the_baseline_learns_a_dictionary_and_runs_on_the_splits(splits):
    train = make_examples(PAIRS * 5, seed=1, hard_fraction=1.0)
    x, y = featurize(train, bits=16), np.array([e.label for e in train])
    model = LogisticRegression(bits=16).fit(x, y, steps=100)
    assert model.accuracy(x, y) > 0.9
    assert LogisticRegression(bits=16).accuracy(x, y) == 0.5  # an untrained model: every probability is 0.5
    with pytest.raises(ValueError, match="2\\*\\*16 columns for a model of 1048576 weights"):
        LogisticRegression().accuracy(x, y)
    results = run_baseline(splits, l2_grid=(1e-4,), steps=50, bits=16)
    assert set(results) == {"l2", *SPLITS}
    assert results["val"] > 0.6  # better than chance on unseen sentences
