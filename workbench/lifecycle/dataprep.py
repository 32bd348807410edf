"""Data preparation: de-duplication, seeded splits, length and label EDA, augmentation.

The functions work on plain lists. Items may be strings, dicts or objects (such as
:class:`workbench.tasks.loaders.Example`); where a function needs an item's text or label, it takes
``text=`` / ``label=``: a dict key or attribute name, or a function of the item.

A typical pipeline::

    texts = [clean_text(t) for t in raw]          # workbench.text
    report = deduplicate(examples, text="text")
    splits = split_dataset(report.kept, seed=0, label="target")
    plot_token_lengths(plt.gca(), {name: token_lengths([e.text for e in part], lm.tokenizer)
                                   for name, part in splits.items()})

Plots take a matplotlib ``Axes`` and return it, as every plot of the workbench does.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure  # noqa: F401  (doctests)

from workbench.text import normalized_key

# ---------------------------------------------------------------------------------------- item access

Getter = str | Callable[[Any], Any] | None


def _getter(field: Getter) -> Callable[[Any], Any]:
    """A function reading ``field`` from an item: the item itself, a dict key or an attribute."""
    if field is None:
        return lambda item: item
    if callable(field):
        return field
    return lambda item: item[field] if isinstance(item, Mapping) else getattr(item, field)


# ---------------------------------------------------------------------------------------- de-duplication


@dataclass
class DedupReport:
    """What :func:`deduplicate` kept and removed.

    Attributes:
        kept: the first occurrence of every distinct item, in the original order.
        kept_indices: their positions in the input (to select matching labels or ids).
        exact_duplicates: items whose text equals an earlier item's text exactly.
        normalized_duplicates: further items equal to an earlier one once case, punctuation and
            spacing are ignored (see :func:`normalized_key`).
    """

    kept: list
    kept_indices: list[int]
    exact_duplicates: int
    normalized_duplicates: int

    @property
    def removed(self) -> int:
        """All removed items."""
        return self.exact_duplicates + self.normalized_duplicates


def deduplicate(items: Sequence, text: Getter = None, normalized: bool = True) -> DedupReport:
    """Remove exact and (optionally) normalised duplicates, keeping first occurrences.

    Args:
        items: strings, dicts or objects.
        text: how to read an item's text: None for string items, a key/attribute name, or a function.
        normalized: also remove items that match an earlier one under :func:`normalized_key`.

    Returns:
        A :class:`DedupReport` with the kept items and the number of each kind of duplicate.

    >>> report = deduplicate(["A film.", "A film.", "a film", "Another one"])
    >>> report.kept, report.exact_duplicates, report.normalized_duplicates
    (['A film.', 'Another one'], 1, 1)
    >>> deduplicate([{"text": "x", "label": 1}, {"text": "x", "label": 2}], text="text").kept_indices
    [0]
    """
    read = _getter(text)
    seen_exact: set[str] = set()
    seen_normalized: set[str] = set()
    kept_indices: list[int] = []
    exact = near = 0
    for index, item in enumerate(items):
        value = read(item)
        key = normalized_key(value) if normalized else value
        if value in seen_exact:
            exact += 1
        elif key in seen_normalized:
            near += 1
        else:
            kept_indices.append(index)
        seen_exact.add(value)
        seen_normalized.add(key)
    return DedupReport([items[i] for i in kept_indices], kept_indices, exact, near)


# ---------------------------------------------------------------------------------------- splits


@dataclass
class Splits:
    """Train, dev and test parts of a data set (each a list of the input items)."""

    train: list
    dev: list
    test: list

    def items(self) -> list[tuple[str, list]]:
        """``[("train", ...), ("dev", ...), ("test", ...)]``, handy for loops and plots."""
        return [("train", self.train), ("dev", self.dev), ("test", self.test)]

    def sizes(self) -> dict[str, int]:
        """Number of items in each part."""
        return {name: len(part) for name, part in self.items()}


def split_dataset(
    items: Sequence,
    dev_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    label: Getter = None,
) -> Splits:
    """Seeded train/dev/test split, optionally stratified by label.

    The dev and test sizes are ``round(fraction * len(items))`` exactly. With ``label``, every
    label's share in each part is within one item of its share overall: each label's items are
    shuffled and spread evenly over [0, 1), and the parts take consecutive ranges of that scale.

    Args:
        items: the data set.
        dev_fraction: share of items for dev.
        test_fraction: share of items for test.
        seed: the same seed and items give the same split.
        label: None for a plain random split; else how to read an item's label (key, attribute
            or function) to stratify by it.

    Returns:
        :class:`Splits`, each part in a seeded random order.

    >>> splits = split_dataset(list(range(10)), dev_fraction=0.2, test_fraction=0.2, seed=1)
    >>> splits.sizes()
    {'train': 6, 'dev': 2, 'test': 2}
    >>> sorted(splits.train + splits.dev + splits.test) == list(range(10))
    True
    >>> labels = ["pos"] * 8 + ["neg"] * 2
    >>> stratified = split_dataset(labels, dev_fraction=0.0, test_fraction=0.5, label=lambda x: x)
    >>> sorted(stratified.test)
    ['neg', 'pos', 'pos', 'pos', 'pos']
    """
    if dev_fraction < 0 or test_fraction < 0 or dev_fraction + test_fraction > 1:
        raise ValueError(
            f"need 0 <= dev_fraction, test_fraction and their sum <= 1, got {dev_fraction}, {test_fraction}"
        )
    count = len(items)
    rng = np.random.default_rng(seed)
    read_label = _getter(label) if label is not None else (lambda item: None)
    groups: dict[Any, list[int]] = {}
    for index, item in enumerate(items):
        groups.setdefault(read_label(item), []).append(index)
    position = np.empty(count)
    for indices in groups.values():
        shuffled = rng.permutation(indices)
        # Evenly spaced slots with one random offset per label: any range of the [0, 1) scale
        # then holds that label's items in proportion, within one item.
        position[shuffled] = (np.arange(len(shuffled)) + rng.random()) / len(shuffled)
    order = np.lexsort((rng.random(count), position))  # random tie-break between labels
    n_test = int(round(test_fraction * count))
    n_dev = int(round(dev_fraction * count))
    parts = [order[:n_test], order[n_test : n_test + n_dev], order[n_test + n_dev :]]
    test, dev, train = ([items[i] for i in rng.permutation(part)] for part in parts)
    return Splits(train=train, dev=dev, test=test)


# ---------------------------------------------------------------------------------------- statistics


def token_lengths(texts: Sequence[str], tokenizer=None) -> np.ndarray:
    """Length of each text in tokens.

    Args:
        texts: the texts.
        tokenizer: None for whitespace words; a Hugging Face tokenizer (special tokens not
            counted); or any function ``text -> sequence of tokens`` (e.g. ``tiktoken``'s
            ``encoding.encode``).

    >>> token_lengths(["a good film", "bad"]).tolist()
    [3, 1]
    >>> token_lengths(["abc", "de"], tokenizer=list).tolist()
    [3, 2]
    """
    if tokenizer is None:
        lengths = [len(text.split()) for text in texts]
    elif hasattr(tokenizer, "convert_tokens_to_ids"):  # a transformers tokenizer: encode in one batch
        lengths = [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]] if texts else []
    else:
        lengths = [len(tokenizer(text)) for text in texts]
    return np.asarray(lengths, dtype=np.int64)


def length_summary(lengths: Sequence[int]) -> dict[str, float]:
    """Count, mean, spread and tail percentiles of lengths (e.g. from :func:`token_lengths`).

    >>> summary = length_summary([1, 2, 3, 4, 100])
    >>> summary["count"], summary["p50"], summary["max"]
    (5, 3.0, 100)
    """
    values = np.asarray(lengths)
    if values.size == 0:
        raise ValueError("length_summary needs at least one length")
    p50, p90, p95, p99 = np.percentile(values, [50, 90, 95, 99])
    return {
        "count": int(values.size),
        "mean": float(values.mean()),
        "std": float(values.std()),
        "min": int(values.min()),
        "p50": float(p50),
        "p90": float(p90),
        "p95": float(p95),
        "p99": float(p99),
        "max": int(values.max()),
    }


def label_distribution(labels: Sequence) -> pd.DataFrame:
    """Count and share of each label, sorted by label.

    >>> label_distribution([2, 1, 2, 2])  # doctest: +NORMALIZE_WHITESPACE
           count  share
    label
    1          1   0.25
    2          3   0.75
    """
    counts = pd.Series(list(labels), name="count").value_counts().sort_index()
    counts.index.name = "label"
    return pd.DataFrame({"count": counts, "share": counts / counts.sum()})


# ---------------------------------------------------------------------------------------- plots


def _named(values: Mapping[str, Sequence] | Sequence, default_name: str) -> dict[str, Sequence]:
    """One unnamed series becomes ``{default_name: series}`` so plots can compare several."""
    return dict(values) if isinstance(values, Mapping) else {default_name: values}


def plot_token_lengths(
    axes: Axes,
    lengths: Mapping[str, Sequence[int]] | Sequence[int],
    bins: int = 30,
    title: str = "Token lengths",
) -> Axes:
    """Histogram of lengths, one overlaid density per named series (e.g. per split).

    Args:
        axes: where to draw.
        lengths: one sequence of lengths, or ``{name: lengths}`` to compare parts.
        bins: number of histogram bins, shared by all series.
        title: plot title.

    >>> plot_token_lengths(Figure().add_subplot(), {"train": [3, 5, 8], "test": [4, 4]}).get_title()
    'Token lengths'
    """
    series = _named(lengths, "all")
    everything = np.concatenate([np.asarray(v, dtype=float) for v in series.values()])
    edges = np.histogram_bin_edges(everything, bins=bins)
    for name, values in series.items():
        p95 = np.percentile(values, 95)
        axes.hist(
            values,
            bins=edges,
            density=True,
            histtype="step",
            linewidth=1.5,
            label=f"{name} (n={len(values)}, p95={p95:.0f})",
        )
    axes.set(title=title, xlabel="tokens", ylabel="density")
    axes.legend()
    return axes


def plot_label_distribution(
    axes: Axes,
    labels: Mapping[str, Sequence] | Sequence,
    title: str = "Label distribution",
) -> Axes:
    """Bar chart of label shares, grouped bars per named series (e.g. to check a stratified split).

    Args:
        axes: where to draw.
        labels: one sequence of labels, or ``{name: labels}``.
        title: plot title.

    >>> axes = plot_label_distribution(Figure().add_subplot(), {"train": [1, 2, 2], "test": [1, 2]})
    >>> [tick.get_text() for tick in axes.get_xticklabels()]
    ['1', '2']
    """
    series = _named(labels, "all")
    shares = pd.DataFrame({name: label_distribution(values)["share"] for name, values in series.items()}).fillna(0.0)
    width = 0.8 / len(series)
    x = np.arange(len(shares))
    for offset, name in enumerate(shares.columns):
        axes.bar(
            x + (offset - (len(series) - 1) / 2) * width,
            shares[name],
            width=width,
            label=f"{name} (n={len(series[name])})",
        )
    axes.set_xticks(x, [str(label) for label in shares.index])
    axes.set(title=title, xlabel="label", ylabel="share")
    axes.legend()
    return axes


# ---------------------------------------------------------------------------------------- augmentation


def _rng(seed: int | random.Random) -> random.Random:
    return seed if isinstance(seed, random.Random) else random.Random(seed)


def word_dropout(text: str, p: float = 0.1, seed: int | random.Random = 0) -> str:
    """Drop each whitespace word with probability ``p``; at least one word always remains.

    Args:
        text: the text.
        p: drop probability per word.
        seed: an int, or a shared :class:`random.Random` to draw a stream of variants.

    >>> word_dropout("the film is a quiet triumph", p=0.3, seed=3)
    'film is a quiet'
    >>> word_dropout("solo", p=1.0)
    'solo'
    """
    rng = _rng(seed)
    words = text.split()
    kept = [word for word in words if rng.random() >= p]
    if not kept and words:
        kept = [rng.choice(words)]
    return " ".join(kept)


def random_swap(text: str, n_swaps: int = 1, seed: int | random.Random = 0) -> str:
    """Swap two randomly chosen words, ``n_swaps`` times.

    >>> random_swap("the film is a quiet triumph", n_swaps=1, seed=0)
    'the film is triumph quiet a'
    """
    rng = _rng(seed)
    words = text.split()
    if len(words) < 2:
        return " ".join(words)
    for _ in range(n_swaps):
        i, j = rng.sample(range(len(words)), 2)
        words[i], words[j] = words[j], words[i]
    return " ".join(words)


def augment(
    texts: Sequence[str],
    copies: int = 1,
    dropout: float = 0.1,
    swaps: int = 1,
    seed: int = 0,
) -> list[list[str]]:
    """``copies`` noisy variants of each text: word dropout, then random swaps.

    One random stream serves the whole call, so the result depends only on the texts and seed.

    Returns:
        For each text, the list of its variants (zip it with the labels to label them).

    >>> augment(["a b c d", "e f"], copies=2, seed=0)
    [['a d c b', 'a c b d'], ['f e', 'f e']]
    """
    rng = random.Random(seed)
    return [[random_swap(word_dropout(text, dropout, rng), swaps, rng) for _ in range(copies)] for text in texts]
