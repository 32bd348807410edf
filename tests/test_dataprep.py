"""Tests of workbench.lifecycle.dataprep: cleaning, de-duplication, splits, statistics, plots, augmentation."""

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pytest
from matplotlib.figure import Figure

import workbench.text as text_cleaning
from workbench.lifecycle import dataprep


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("it 's a film , really .", "it's a film, really."),
        ("i do n't know ; you ca n't tell !", "i don't know; you can't tell!"),
        ("-LRB- a -RRB- -LSB- b -RSB- -LCB- c -RCB-", "(a) [b] {c}"),
        ("-lrb- lower-cased escapes -rrb-", "(lower-cased escapes)"),
        ("he said `` wow '' and left", 'he said "wow" and left'),
        ("we 're sure they 've seen it , he 'll say , i 'm told", "we're sure they've seen it, he'll say, i'm told"),
        ("the actors ' work", "the actors' work"),
        ("100 % of $ 20 ?", "100% of $20?"),
        ("well ... maybe", "well... maybe"),
        ("  spaced\u00a0\tout \n text  ", "spaced out text"),
    ],
)
def test_clean_text_undoes_ptb_tokenisation(raw, clean):
    assert text_cleaning.clean_text(raw) == clean


def test_clean_text_without_ptb_only_normalises():
    assert text_cleaning.clean_text("keep  it 's ,", ptb=False) == "keep it 's ,"


def test_clean_text_composes_unicode():
    decomposed = "cafe\u0301"
    assert text_cleaning.clean_text(decomposed) == "caf\u00e9"


def test_deduplicate_counts_exact_and_normalised_duplicates():
    texts = ["Good film.", "Bad film.", "Good film.", "good   film", "GOOD FILM!", "Bad film."]
    report = dataprep.deduplicate(texts)
    assert report.kept == ["Good film.", "Bad film."]
    assert report.kept_indices == [0, 1]
    assert (report.exact_duplicates, report.normalized_duplicates, report.removed) == (2, 2, 4)


def test_deduplicate_exact_only_keeps_near_duplicates():
    report = dataprep.deduplicate(["a b", "A b", "a b"], normalized=False)
    assert report.kept == ["a b", "A b"]
    assert (report.exact_duplicates, report.normalized_duplicates) == (1, 0)


@dataclass
class _Item:
    text: str
    label: int


def test_deduplicate_reads_attributes_keys_and_functions():
    objects = [_Item("x", 1), _Item("x", 2), _Item("y", 1)]
    assert dataprep.deduplicate(objects, text="text").kept_indices == [0, 2]
    dicts = [{"t": "x"}, {"t": "X"}]
    assert dataprep.deduplicate(dicts, text="t").kept == [{"t": "x"}]
    assert dataprep.deduplicate(dicts, text=lambda d: d["t"], normalized=False).removed == 0


def test_split_is_seeded_disjoint_and_complete():
    items = list(range(101))
    first = dataprep.split_dataset(items, dev_fraction=0.1, test_fraction=0.2, seed=7)
    again = dataprep.split_dataset(items, dev_fraction=0.1, test_fraction=0.2, seed=7)
    other = dataprep.split_dataset(items, dev_fraction=0.1, test_fraction=0.2, seed=8)
    assert first == again
    assert first.test != other.test
    assert first.sizes() == {"train": 71, "dev": 10, "test": 20}
    assert sorted(first.train + first.dev + first.test) == items


def test_stratified_split_keeps_label_shares():
    items = [_Item(f"t{i}", label) for i, label in enumerate([0] * 60 + [1] * 30 + [2] * 10)]
    splits = dataprep.split_dataset(items, dev_fraction=0.2, test_fraction=0.2, seed=3, label="label")
    assert splits.sizes() == {"train": 60, "dev": 20, "test": 20}
    for part, expected in [(splits.dev, {0: 12, 1: 6, 2: 2}), (splits.test, {0: 12, 1: 6, 2: 2})]:
        counts = Counter(item.label for item in part)
        assert all(abs(counts[label] - n) <= 1 for label, n in expected.items()), counts


def test_split_parts_are_shuffled_not_label_sorted():
    items = [0] * 50 + [1] * 50
    train = dataprep.split_dataset(items, seed=0, label=lambda x: x).train
    assert train != sorted(train)


def test_split_rejects_bad_fractions():
    with pytest.raises(ValueError, match="dev_fraction"):
        dataprep.split_dataset([1, 2, 3], dev_fraction=0.6, test_fraction=0.6)


def test_token_lengths_with_whitespace_function_and_hf_style_tokenizer():
    texts = ["one two three", "four"]
    assert dataprep.token_lengths(texts).tolist() == [3, 1]
    assert dataprep.token_lengths(texts, tokenizer=lambda t: t.replace(" ", "")).tolist() == [11, 4]

    class FakeHFTokenizer:
        """Mimics a transformers tokenizer: batch call returning input_ids."""

        def convert_tokens_to_ids(self, tokens):  # marks the object as a transformers tokenizer
            raise NotImplementedError

        def __call__(self, batch, add_special_tokens=True):
            assert add_special_tokens is False
            return {"input_ids": [list(text) for text in batch]}

    assert dataprep.token_lengths(["ab", "cde"], tokenizer=FakeHFTokenizer()).tolist() == [2, 3]


def test_length_summary_percentiles():
    summary = dataprep.length_summary(np.arange(1, 101))
    assert summary["count"] == 100 and summary["min"] == 1 and summary["max"] == 100
    assert summary["p50"] == pytest.approx(50.5)
    assert summary["p99"] == pytest.approx(99.01)
    with pytest.raises(ValueError):
        dataprep.length_summary([])


def test_label_distribution_counts_and_shares():
    table = dataprep.label_distribution(["b", "a", "b", "b"])
    assert table.index.tolist() == ["a", "b"]
    assert table["count"].tolist() == [1, 3]
    assert table["share"].sum() == pytest.approx(1.0)


def test_plots_draw_one_series_per_part_on_the_given_axes():
    axes = Figure().add_subplot()
    lengths = dataprep.plot_token_lengths(axes, {"train": [1, 2, 3, 9], "dev": [2, 2]}, bins=5)
    assert lengths is axes
    assert [t.get_text().split(" ")[0] for t in lengths.get_legend().get_texts()] == ["train", "dev"]
    single = dataprep.plot_label_distribution(Figure().add_subplot(), [1, 1, 2])
    assert len(single.patches) == 2  # one bar per label
    grouped = dataprep.plot_label_distribution(Figure().add_subplot(), {"train": [1, 2], "test": [2, 3]})
    assert len(grouped.patches) == 6  # three labels, two parts (missing labels as 0)


def test_word_dropout_is_seeded_and_never_empties():
    text = "one two three four five six seven eight"
    assert dataprep.word_dropout(text, p=0.5, seed=1) == dataprep.word_dropout(text, p=0.5, seed=1)
    assert dataprep.word_dropout(text, p=0.0) == text
    for seed in range(20):
        kept = dataprep.word_dropout(text, p=0.9, seed=seed).split()
        assert 1 <= len(kept) and all(word in text.split() for word in kept)
    assert dataprep.word_dropout("", p=0.5) == ""


def test_random_swap_permutes_words():
    text = "one two three four five"
    swapped = dataprep.random_swap(text, n_swaps=2, seed=4)
    assert sorted(swapped.split()) == sorted(text.split())
    assert swapped == dataprep.random_swap(text, n_swaps=2, seed=4)
    assert dataprep.random_swap("alone", n_swaps=3) == "alone"


def test_augment_shape_and_determinism():
    texts = ["a b c d e", "f g h"]
    variants = dataprep.augment(texts, copies=3, dropout=0.2, swaps=1, seed=5)
    assert [len(v) for v in variants] == [3, 3]
    assert variants == dataprep.augment(texts, copies=3, dropout=0.2, swaps=1, seed=5)
    assert variants != dataprep.augment(texts, copies=3, dropout=0.2, swaps=1, seed=6)
    for text, text_variants in zip(texts, variants, strict=True):
        assert all(set(v.split()) <= set(text.split()) for v in text_variants)
