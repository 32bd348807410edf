"""Response-wise classifiers trained by **cross-fitting**, so that no change is judged by a
classifier that saw it.

The changes of a study are split into folds; fold f's classifier trains on (training reference
vs each change of fold f) and only ever scores pairs of stages it has not seen, so every change is
judged by a classifier trained on *other* changes, and the reference it is compared with is not
the training reference. The classifier learns either the paper's labelling (within pairs of both
stages are consistent) or only the reference's within pairs against cross pairs
(:func:`training_pairs` explains the difference).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from workbench.consistency.features import PAPER_FEATURES
from workbench.consistency.responses import labelled_pairs
from workbench.consistency.simct import ResponseWiseConfig, ResponseWiseTest, StageOverlapError, query_type_ablation
from workbench.consistency.study import Change


def study_pairs(table: pd.DataFrame, reference: str, train_reference: str, changes: Sequence[Change]) -> pd.DataFrame:
    """The labelled pairs (not featurised) a study needs.

    Training pairs: the training reference against every real change; evaluation pairs: the
    reference against every change and control.
    """
    stage_pairs = [(train_reference, c.stage) for c in changes if c.fold is not None]
    stage_pairs += [(reference, c.stage) for c in changes]
    return labelled_pairs(table, stage_pairs)


def folds_of(changes: Sequence[Change]) -> dict[int, list[str]]:
    """Fold -> the stages of the real changes in it."""
    folds: dict[int, list[str]] = {}
    for change in changes:
        if change.fold is not None:
            folds.setdefault(change.fold, []).append(change.stage)
    return folds


POSITIVES = ("reference", "both")


def training_pairs(pairs: pd.DataFrame, reference: str, positives: str = "reference") -> pd.DataFrame:
    """The labelled pairs a classifier learns from (or is evaluated on) under a labelling.

    Args:
        pairs: labelled pairs (within-stage and cross-stage).
        reference: the stage every change is compared with (for training: the training reference).
        positives: ``"both"``: within-stage pairs of the reference *and* of the changed stage are
            consistent (label 1), as in the paper's labelled pairs; ``"reference"``: only the
            reference's within pairs are. The model-wise test compares reference-vs-reference with
            reference-vs-change pairs and never scores a change against itself, so "reference"
            trains the classifier on exactly that contrast. Under "both", a change that makes
            responses more alike (lower entropy, shorter) has very similar within pairs labelled
            consistent and less similar cross pairs labelled inconsistent, which teaches the
            classifier that similar pairs come from the *same changed* stage, not that
            dissimilar pairs cross stages.

    Returns:
        The rows of ``pairs`` kept under that labelling.
    """
    if positives not in POSITIVES:
        raise ValueError(f"positives must be one of {POSITIVES}, got {positives!r}")
    if positives == "both":
        return pairs
    return pairs[(pairs.stage1 != pairs.stage2) | (pairs.stage1 == reference)]


class CrossFitScorer:
    """Response-wise classifiers, one per fold of changes, each scoring only unseen stages.

    Args:
        tests: fitted :class:`~workbench.consistency.simct.ResponseWiseTest` objects.
    """

    def __init__(self, tests: Sequence[ResponseWiseTest]):
        self.tests = list(tests)

    @classmethod
    def fit(
        cls,
        pairs: pd.DataFrame,
        train_reference: str,
        folds: Mapping[int, Sequence[str]],
        config: ResponseWiseConfig | None = None,
        positives: str = "reference",
    ) -> CrossFitScorer:
        """Fits fold f's classifier on (``train_reference``, change) for the changes of fold f.

        Args:
            pairs: featurised pairs holding at least those stage pairs (see
                :func:`~workbench.consistency.responses.labelled_pairs`).
            train_reference: a stage with the reference's settings and other seeds.
            folds: fold -> its changes' stage names.
            config: classifier settings.
            positives: which within-stage pairs are labelled consistent (see :func:`training_pairs`).
        """
        train = training_pairs(pairs, train_reference, positives)
        return cls(
            [
                ResponseWiseTest(config).fit(train, [(train_reference, stage) for stage in stages])
                for _, stages in sorted(folds.items())
            ]
        )

    def usable(self, stages: set[str]) -> list[ResponseWiseTest]:
        """The classifiers that saw none of ``stages`` in training."""
        return [test for test in self.tests if not test.train_stages & stages]

    def predict(self, pairs: pd.DataFrame) -> np.ndarray:
        """Mean consistency probability, shape (n_pairs,), over the classifiers that saw none of the pairs' stages.

        Raises:
            StageOverlapError: every classifier was trained on one of the pairs' stages.
        """
        stages = set(pairs.stage1) | set(pairs.stage2)
        tests = self.usable(stages)
        if not tests:
            raise StageOverlapError(f"every fold's classifier was trained on one of {sorted(stages)}")
        return np.mean([test.predict_proba(pairs) for test in tests], axis=0)


def feature_ablations(base: ResponseWiseConfig | None = None) -> dict[str, ResponseWiseConfig]:
    """The classifier settings of the feature ablation: all features, without the query type, and
    the paper's feature set alone (no length features)."""
    base = base or ResponseWiseConfig()
    return {
        "all features": base,
        "without query type": dataclasses.replace(base, use_query_type=False),
        "paper's features (no lengths)": dataclasses.replace(base, feature_names=PAPER_FEATURES),
    }


def featurised_score_fn(featurizer, scorer: CrossFitScorer) -> Callable[[pd.DataFrame], np.ndarray]:
    """pairs -> consistency scores: featurise (cached per text and pair), then score with the cross-fitted classifiers.

    Args:
        featurizer: a :class:`~workbench.consistency.features.PairFeaturizer`.
        scorer: the fitted classifiers.
    """
    return lambda pairs: scorer.predict(featurizer.transform(pairs))


def response_wise_table(
    pairs: pd.DataFrame,
    train_reference: str,
    reference: str,
    folds: Mapping[int, Sequence[str]],
    config: ResponseWiseConfig | None = None,
    positives: Sequence[str] = POSITIVES,
) -> pd.DataFrame:
    """Accuracy, F1 and AUC of the response-wise test on held-out changes, with and without the query type.

    For every fold f, the classifier trains on (``train_reference``, change) for the changes
    of f and is evaluated on the labelled pairs of (``reference``, change) for the changes of
    the other folds: no stage is shared between training and evaluation. Training and
    evaluation pairs follow the same labelling (:func:`training_pairs`).

    Returns:
        One row per (labelling, trained on, use_query_type) with the metrics and the held-out changes.
    """
    rows = []
    for labelling in positives:
        train = training_pairs(pairs, train_reference, labelling)
        for fold, stages in sorted(folds.items()):
            held_out = [stage for other, others in folds.items() if other != fold for stage in others]
            evaluation = training_pairs(
                pairs[_pairs_of(pairs, [(reference, stage) for stage in held_out])], reference, labelling
            )
            table = query_type_ablation(train, [(train_reference, stage) for stage in stages], evaluation, config)
            for use_query_type, metrics in table.iterrows():
                rows.append(
                    {
                        "positives": labelling,
                        "trained on": ", ".join(stages),
                        "evaluated on": ", ".join(held_out),
                        "use_query_type": use_query_type,
                        **metrics.to_dict(),
                    }
                )
    return pd.DataFrame(rows)


def _pairs_of(pairs: pd.DataFrame, stage_pairs: Sequence[tuple[str, str]]) -> pd.Series:
    """Rows that are within-stage pairs of these stages or cross pairs of exactly these stage pairs."""
    stages = {stage for pair in stage_pairs for stage in pair}
    wanted = {frozenset(pair) for pair in stage_pairs}
    within = (pairs.stage1 == pairs.stage2) & pairs.stage1.isin(stages)
    across = pd.Series([frozenset((a, b)) in wanted for a, b in zip(pairs.stage1, pairs.stage2)], index=pairs.index)
    return within | across
