"""models/mlm/pairs.py and baseline.py: the translation-pair task's splits, its negatives, its baseline."""

import numpy as np
import pytest

from models.mlm.baseline import LogisticRegression, features, featurize, run_baseline
from models.mlm.pairs import (
    SPLITS,
    Example,
    accuracy_by_kind,
    load_splits,
    make_examples,
    normalised,
    swap_words,
    word_swaps,
    words,
)
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
    assert set(results) == {"l2", "by_kind", *SPLITS}
    assert set(results["by_kind"]["val"]) == {"positive", "hard", "random"}
    assert results["val"] > 0.6  # better than chance on unseen sentences


@pytest.mark.parametrize(("en", "swapped"), [
    ("A man in a red shirt and blue jeans.", {"A man in a blue shirt and red jeans.",
                                              "A man in a red jeans and blue shirt."}),
    ("Two dogs chase a boy.", {"Two boy chase a dogs."}),
    ("Red shirt on a blue bench.", {"Blue shirt on a red bench."}),
    ("A man and a woman walk.", set()),  # "a woman and a man" says the same
    ("A black and white dog.", set()),
    ("A dog chases a dog.", set()),  # the same word twice: nothing changes
])
def test_swapped_negatives_exchange_two_words_of_one_kind(en, swapped):
    assert {swap_words(en, i, j) for i, j in word_swaps(en)} == swapped
    for s in swapped:
        assert sorted(words(s)) == sorted(words(en)) and normalised(s) != normalised(en)


def test_swapped_negatives_fool_a_bag_of_words_but_not_the_splits_rules(splits, multi30k_dir):
    pairs = load_pairs("de-en", "train", str(multi30k_dir), 400)
    examples = make_examples(pairs, seed=0, swap_fraction=1.0)
    truth = {e.de: e.en for e in examples if e.label == 1}
    swapped = [e for e in examples if e.kind == "swapped"]
    assert len(swapped) == sum(bool(word_swaps(en)) for _, en in pairs) > 40  # every pair that has a swap
    for e in swapped:  # the same features as the translation: only word order tells them apart
        assert e.label == 0 and features(e.de, e.en) == features(e.de, truth[e.de])
    assert not any(e.kind == "swapped" for e in splits["train"])  # swap_fraction defaults to 0
    with_half = make_examples(pairs, seed=0, swap_fraction=0.5)
    assert 0.3 * len(swapped) < sum(e.kind == "swapped" for e in with_half) < 0.7 * len(swapped)


def test_accuracy_by_kind():
    examples = [Example("d", "e", 1, "positive"), Example("d", "f", 0, "hard"), Example("d", "g", 0, "swapped"),
                Example("d", "h", 0, "swapped")]
    assert accuracy_by_kind(examples, [1, 1, 0, 1]) == {"hard": 0.0, "positive": 1.0, "swapped": 0.5}
    with pytest.raises(ValueError, match="3 predictions for 4 examples"):
        accuracy_by_kind(examples, [1, 1, 0])
