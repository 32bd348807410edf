"""SimCT's two tests: is a response pair consistent, and do two stages behave the same?

1. **Response-wise test** (:class:`ResponseWiseTest`): a LightGBM classifier on pair features
   (:mod:`workbench.consistency.features`) that outputs the probability that a pair of responses
   to one query is *consistent*. It is trained on labelled pairs from stages known to differ:
   same stage with different seeds -> 1, different stages -> 0. A classifier evaluated on the
   stages it was trained on has seen their idiosyncrasies, so :meth:`ResponseWiseTest.fit`
   records the training stages and every scoring call refuses pairs that involve any of them
   (:class:`StageOverlapError`).
2. **Model-wise test** (:func:`model_wise_test`): for each query, the mean response-wise score
   of the cross-stage pairs ``(A_i, B_j)`` and of the within-stage pairs ``(A_i, A_j)``; then a
   paired Student's t-test over queries, one-sided: H1 says A-vs-B pairs are *less* consistent
   than A-vs-A pairs. Under H0 (B behaves like A) the two means have the same expectation by
   exchangeability of the responses.

The t-test works on any per-pair score (a single feature such as ``cosine`` also works), which
is what the power analysis (:mod:`workbench.consistency.power`) relies on.

>>> within = np.array([0.90, 0.80, 0.85, 0.95, 0.70])
>>> across = within - np.array([0.10, 0.05, 0.12, 0.08, 0.09])
>>> result = paired_consistency_t_test(within, across, alpha=0.05)
>>> result.reject, result.n_queries, round(result.mean_difference, 3)
(True, 5, 0.088)
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterable, Sequence

import lightgbm
import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from workbench.consistency.features import FEATURE_NAMES


class StageOverlapError(ValueError):
    """Pairs to score involve a stage the response-wise classifier was trained on."""


@dataclasses.dataclass
class ResponseWiseConfig:
    """Settings of :class:`ResponseWiseTest`.

    Attributes:
        feature_names: feature columns to use; None uses every column of
            :data:`~workbench.consistency.features.FEATURE_NAMES` present in the training pairs.
        use_query_type: keep the ``query_closed`` feature (False is the ablation).
        n_estimators, learning_rate, num_leaves, min_child_samples: LightGBM settings.
        threshold: probability at or above which a pair is called consistent.
        random_state: LightGBM seed.
    """

    feature_names: tuple[str, ...] | None = None
    use_query_type: bool = True
    n_estimators: int = 200
    learning_rate: float = 0.05
    num_leaves: int = 15
    min_child_samples: int = 20
    threshold: float = 0.5
    random_state: int = 0


@dataclasses.dataclass(frozen=True)
class ResponseWiseMetrics:
    """Classification quality of the response-wise test on labelled pairs.

    Attributes:
        accuracy, f1, auc: against the label ``stage1 == stage2`` (F1 of the consistent class;
            AUC is NaN when only one class is present).
        n_pairs: pairs evaluated.
        n_consistent: pairs labelled consistent (same stage).
    """

    accuracy: float
    f1: float
    auc: float
    n_pairs: int
    n_consistent: int


def _stage_pair_key(stage1: str, stage2: str) -> frozenset:
    return frozenset((stage1, stage2))


def _same_stage(pairs: pd.DataFrame) -> np.ndarray:
    """The training label, derived from the stage names so it cannot disagree with them: (n,) int."""
    return (pairs.stage1 == pairs.stage2).to_numpy().astype(int)


class ResponseWiseTest:
    """LightGBM classifier: the probability that a response pair is consistent.

    Args:
        config: classifier settings.

    Example (features from :class:`~workbench.consistency.features.PairFeaturizer`)::

        pairs = featurizer.transform(labelled_pairs(table, [("T0", "T1"), ("A", "B")]))
        test = ResponseWiseTest().fit(pairs, train_stage_pairs=[("T0", "T1")])
        test.evaluate(pairs[pairs.stage1.isin(["A", "B"])])   # ok
        test.evaluate(pairs)                                   # StageOverlapError
    """

    def __init__(self, config: ResponseWiseConfig | None = None):
        self.config = config or ResponseWiseConfig()
        self.model: lightgbm.LGBMClassifier | None = None
        self.feature_names: tuple[str, ...] = ()
        self.train_stage_pairs: tuple[tuple[str, str], ...] = ()

    @property
    def train_stages(self) -> frozenset[str]:
        """Every stage that contributed training pairs."""
        return frozenset(stage for pair in self.train_stage_pairs for stage in pair)

    def _select_features(self, columns: Iterable[str]) -> tuple[str, ...]:
        names = self.config.feature_names or tuple(name for name in FEATURE_NAMES if name in set(columns))
        if not self.config.use_query_type:
            names = tuple(name for name in names if name != "query_closed")
        missing = set(names) - set(columns)
        if missing or not names:
            raise KeyError(
                f"pairs lack feature column(s) {sorted(missing) or list(FEATURE_NAMES)}; "
                "run PairFeaturizer.transform on them first"
            )
        return names

    def fit(self, pairs: pd.DataFrame, train_stage_pairs: Sequence[tuple[str, str]]) -> ResponseWiseTest:
        """Trains on the pairs that belong to ``train_stage_pairs``; other rows are ignored.

        Args:
            pairs: featurised pairs with ``stage1`` and ``stage2`` columns.
            train_stage_pairs: stage pairs known to differ, e.g. ``[("fp32", "int4")]``. Rows used:
                within-stage pairs of their stages (label 1) and the cross pairs of exactly these
                stage pairs (label 0).

        Returns:
            self, fitted.
        """
        self.train_stage_pairs = tuple((a, b) for a, b in train_stage_pairs)
        if not self.train_stage_pairs or any(a == b for a, b in self.train_stage_pairs):
            raise ValueError(f"train_stage_pairs must be pairs of different stages, got {train_stage_pairs}")
        wanted = {_stage_pair_key(a, b) for a, b in self.train_stage_pairs}
        within = (pairs.stage1 == pairs.stage2) & pairs.stage1.isin(self.train_stages)
        across = pd.Series(
            [_stage_pair_key(a, b) in wanted for a, b in zip(pairs.stage1, pairs.stage2)], index=pairs.index
        )
        train = pairs[within | across]
        labels = _same_stage(train)
        if len(set(labels)) < 2:
            raise ValueError(
                f"training pairs for {self.train_stage_pairs} need both within-stage and "
                f"cross-stage pairs; got {len(train)} pairs with labels {sorted(set(labels))}"
            )
        self.feature_names = self._select_features(train.columns)
        c = self.config
        self.model = lightgbm.LGBMClassifier(
            n_estimators=c.n_estimators,
            learning_rate=c.learning_rate,
            num_leaves=c.num_leaves,
            min_child_samples=c.min_child_samples,
            random_state=c.random_state,
            # Within-stage pairs are n(n-1)/2 per query against n^2 cross pairs: reweight.
            class_weight="balanced",
            n_jobs=1,
            verbose=-1,
        )
        self.model.fit(train[list(self.feature_names)], labels)
        return self

    def check_no_stage_overlap(self, pairs: pd.DataFrame) -> None:
        """Raises :class:`StageOverlapError` when ``pairs`` involve a training stage."""
        if self.model is None:
            raise RuntimeError("ResponseWiseTest is not fitted; call fit first")
        overlap = (set(pairs.stage1) | set(pairs.stage2)) & self.train_stages
        if overlap:
            raise StageOverlapError(
                f"stage(s) {sorted(overlap)} were used to train this response-wise classifier "
                f"(train_stage_pairs={list(self.train_stage_pairs)}); scoring their pairs would be "
                "optimistic. Evaluate on pairs from other stages, or train on other stages."
            )

    def predict_proba(self, pairs: pd.DataFrame) -> np.ndarray:
        """Probability that each pair is consistent, shape (n_pairs,).

        Raises:
            StageOverlapError: if the pairs involve a training stage.
        """
        self.check_no_stage_overlap(pairs)
        return self.model.predict_proba(pairs[list(self.feature_names)])[:, 1]

    def evaluate(self, pairs: pd.DataFrame) -> ResponseWiseMetrics:
        """Accuracy, F1 and AUC against the same-stage label on pairs from non-training stages."""
        probabilities = self.predict_proba(pairs)
        labels = _same_stage(pairs)
        predictions = (probabilities >= self.config.threshold).astype(int)
        auc = roc_auc_score(labels, probabilities) if len(set(labels)) == 2 else float("nan")
        return ResponseWiseMetrics(
            accuracy=float(accuracy_score(labels, predictions)),
            f1=float(f1_score(labels, predictions, zero_division=0.0)),
            auc=float(auc),
            n_pairs=len(labels),
            n_consistent=int(labels.sum()),
        )


def query_type_ablation(
    pairs: pd.DataFrame,
    train_stage_pairs: Sequence[tuple[str, str]],
    eval_pairs: pd.DataFrame,
    config: ResponseWiseConfig | None = None,
) -> pd.DataFrame:
    """Response-wise metrics with and without the ``query_closed`` feature.

    Args:
        pairs: featurised training pairs (see :meth:`ResponseWiseTest.fit`).
        train_stage_pairs: the stage pairs to train on.
        eval_pairs: featurised pairs from other stages.
        config: base settings; ``use_query_type`` is overridden.

    Returns:
        Two rows indexed by ``use_query_type`` (True, False) with the metric columns.
    """
    base = config or ResponseWiseConfig()
    rows = {}
    for use_query_type in (True, False):
        test = ResponseWiseTest(dataclasses.replace(base, use_query_type=use_query_type))
        rows[use_query_type] = dataclasses.asdict(test.fit(pairs, train_stage_pairs).evaluate(eval_pairs))
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("use_query_type")


@dataclasses.dataclass(frozen=True)
class ModelWiseResult:
    """Outcome of the model-wise test.

    Attributes:
        p_value: one-sided paired t-test p-value (H1: A-vs-B less consistent than A-vs-A).
        reject: ``p_value < alpha``: the stages behave differently.
        alpha: the significance level.
        t_statistic: t of the per-query differences (across - within); negative under H1.
        n_queries: queries with both within- and cross-stage pairs.
        mean_within: mean over queries of the A-vs-A score.
        mean_across: mean over queries of the A-vs-B score.
        mean_difference: ``mean_within - mean_across`` (> 0 when B drifts away from A).
        effect_size: Cohen's d_z, ``mean_difference / sd(difference)``; the planner's input.
        stage_a, stage_b: the compared stages (empty when called on arrays).
    """

    p_value: float
    reject: bool
    alpha: float
    t_statistic: float
    n_queries: int
    mean_within: float
    mean_across: float
    mean_difference: float
    effect_size: float
    stage_a: str = ""
    stage_b: str = ""


def one_sided_paired_t(within: np.ndarray, across: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised one-sided paired t-test of ``across < within`` along the last axis.

    Args:
        within: (..., n_queries) per-query mean A-vs-A scores.
        across: (..., n_queries) per-query mean A-vs-B scores.

    Returns:
        (t, p), each of shape ``within.shape[:-1]``. ``scipy.stats.ttest_rel`` is undefined
        when all differences are equal; then p is 0 for a constant negative difference and 1
        otherwise (a constant zero difference is no evidence of a change).
    """
    within, across = np.asarray(within, dtype=float), np.asarray(across, dtype=float)
    if within.shape[-1] < 2:
        raise ValueError(f"the paired t-test needs at least 2 queries, got {within.shape[-1]}")
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        # scipy warns about precision loss exactly in the constant case handled below.
        warnings.simplefilter("ignore", RuntimeWarning)
        t, p = stats.ttest_rel(across, within, axis=-1, alternative="less")
    difference = across - within
    mean = difference.mean(axis=-1)
    constant = np.ptp(difference, axis=-1) <= 1e-12 * (1 + np.abs(difference).max(axis=-1))
    negative, positive = mean < -1e-12, mean > 1e-12
    t = np.where(constant, np.where(negative, -np.inf, np.where(positive, np.inf, 0.0)), t)
    p = np.where(constant, np.where(negative, 0.0, 1.0), p)
    return t, p


def paired_consistency_t_test(
    within: np.ndarray, across: np.ndarray, alpha: float = 0.05, stage_a: str = "", stage_b: str = ""
) -> ModelWiseResult:
    """The model-wise test on per-query mean scores.

    Args:
        within: (n_queries,) mean A-vs-A score per query.
        across: (n_queries,) mean A-vs-B score per query, same query order.
        alpha: significance level.
        stage_a, stage_b: names recorded in the result.
    """
    within, across = np.asarray(within, dtype=float), np.asarray(across, dtype=float)
    if within.shape != across.shape or within.ndim != 1:
        raise ValueError(f"within and across must be 1-D of equal length, got {within.shape}, {across.shape}")
    t, p = one_sided_paired_t(within, across)
    difference = within - across
    sd = difference.std(ddof=1)
    return ModelWiseResult(
        p_value=float(p),
        reject=bool(p < alpha),
        alpha=alpha,
        t_statistic=float(t),
        n_queries=len(within),
        mean_within=float(within.mean()),
        mean_across=float(across.mean()),
        mean_difference=float(difference.mean()),
        effect_size=float(difference.mean() / sd) if sd > 0 else float("nan"),
        stage_a=stage_a,
        stage_b=stage_b,
    )


def per_query_scores(
    scored_pairs: pd.DataFrame, stage_a: str, stage_b: str, score_column: str = "score"
) -> pd.DataFrame:
    """Mean score per query of the A-vs-A pairs and of the A-vs-B pairs.

    Args:
        scored_pairs: pairs with ``query_id``, ``stage1``, ``stage2`` and a score column.
        stage_a: the reference stage (its within-stage pairs are the baseline).
        stage_b: the stage under test.
        score_column: the column holding the pair score (higher = more consistent).

    Returns:
        A DataFrame indexed by ``query_id`` with columns ``within`` and ``across``; queries
        lacking either kind of pair are dropped with a warning.
    """
    if stage_a == stage_b:
        raise ValueError("stage_a and stage_b must differ")
    is_within = (scored_pairs.stage1 == stage_a) & (scored_pairs.stage2 == stage_a)
    is_across = ((scored_pairs.stage1 == stage_a) & (scored_pairs.stage2 == stage_b)) | (
        (scored_pairs.stage1 == stage_b) & (scored_pairs.stage2 == stage_a)
    )
    means = pd.DataFrame(
        {
            "within": scored_pairs[is_within].groupby("query_id")[score_column].mean(),
            "across": scored_pairs[is_across].groupby("query_id")[score_column].mean(),
        }
    )
    complete = means.dropna()
    if len(complete) < len(means):
        warnings.warn(
            f"{len(means) - len(complete)} query(ies) lack {stage_a!r}-vs-{stage_a!r} or "
            f"{stage_a!r}-vs-{stage_b!r} pairs and are left out",
            stacklevel=2,
        )
    return complete


def model_wise_test(
    scored_pairs: pd.DataFrame, stage_a: str, stage_b: str, alpha: float = 0.05, score_column: str = "score"
) -> ModelWiseResult:
    """SimCT's model-wise test: does ``stage_b`` behave differently from ``stage_a``?

    Args:
        scored_pairs: the within-``stage_a`` and the cross pairs, with a score column, e.g.
            ``pairs.assign(score=response_wise_test.predict_proba(pairs))``.
        stage_a: the reference stage.
        stage_b: the stage under test.
        alpha: significance level.
        score_column: the pair score column.

    Returns:
        The :class:`ModelWiseResult`.
    """
    means = per_query_scores(scored_pairs, stage_a, stage_b, score_column)
    return paired_consistency_t_test(
        means.within.to_numpy(), means.across.to_numpy(), alpha, stage_a=stage_a, stage_b=stage_b
    )
