"""A SimCT study of several lifecycle changes against one reference, ready for a notebook.

Given a response table with a reference stage, a training reference (the same stage as the
reference, other seeds), the changes to test and controls (A/A, served), this module

* trains the response-wise classifier by **cross-fitting** (:class:`CrossFitScorer`): the
  changes are split into folds; fold f's classifier trains on (training reference vs each change
  of fold f) and only ever scores pairs of stages it has not seen, so every change is judged
  by a classifier trained on *other* changes, and the reference it is compared with is not the
  training reference; the classifier learns either the paper's labelling (within pairs of both
  stages are consistent) or, by default, only the reference's within pairs against cross
  pairs (:func:`training_pairs` explains why);
* compares pair scores (classifier labellings, single features) in the model-wise test
  (:func:`compare_scores`);
* runs the model-wise test, SimCT's power curve and the MMD baseline's at the same budget (same
  queries, same samples per query) for each change (:func:`analyse_change`);
* measures A/A false alarm rates of both tests by splitting a pooled A/A stage into random
  halves (:func:`pool_stages`, :func:`mmd_aa_false_alarm_rate`);
* summarises everything in one table (:func:`decision_table`) in which no change is called
  consistent without the power the test had: the minimum detectable effect at this budget and
  the empirical power against a comparable change that *was* detected;
* plots a change's power curves next to the baseline's (:func:`plot_change`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import optimize
from sklearn.metrics import roc_auc_score

from workbench.consistency.calibration import ScoreCube, power_curve, rejection_rate, score_cube, t_test_power
from workbench.consistency.mmd_baseline import (
    MMDConfig,
    MMDResult,
    encode_responses,
    mmd_permutation_test,
    mmd_power_curve,
    token_cube,
)
from workbench.consistency.responses import labelled_pairs
from workbench.consistency.simct import (
    ModelWiseResult,
    ResponseWiseConfig,
    ResponseWiseTest,
    StageOverlapError,
    paired_consistency_t_test,
    query_type_ablation,
)


@dataclasses.dataclass(frozen=True)
class Change:
    """One comparison against the reference.

    Attributes:
        stage: the stage (variant name) under test.
        description: what changed, for tables and plots.
        fold: the cross-fitting fold whose classifier trains on this change; None for controls,
            which no classifier trains on.
        control: no real change (A/A, served vs local): its rejection rate is a false alarm rate.
    """

    stage: str
    description: str
    fold: int | None = None
    control: bool = False


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
    def fit(cls, pairs: pd.DataFrame, train_reference: str, folds: Mapping[int, Sequence[str]],
            config: ResponseWiseConfig | None = None, positives: str = "reference") -> CrossFitScorer:
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
        return cls([ResponseWiseTest(config).fit(train, [(train_reference, stage) for stage in stages])
                    for _, stages in sorted(folds.items())])

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


def featurised_score_fn(featurizer, scorer: CrossFitScorer) -> Callable[[pd.DataFrame], np.ndarray]:
    """pairs -> consistency scores: featurise (cached per text and pair), then score with the cross-fitted classifiers.

    Args:
        featurizer: a :class:`~workbench.consistency.features.PairFeaturizer`.
        scorer: the fitted classifiers.
    """
    return lambda pairs: scorer.predict(featurizer.transform(pairs))


def response_wise_table(pairs: pd.DataFrame, train_reference: str, reference: str,
                        folds: Mapping[int, Sequence[str]], config: ResponseWiseConfig | None = None,
                        positives: Sequence[str] = POSITIVES) -> pd.DataFrame:
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
            evaluation = training_pairs(pairs[_pairs_of(pairs, [(reference, stage) for stage in held_out])],
                                        reference, labelling)
            table = query_type_ablation(train, [(train_reference, stage) for stage in stages], evaluation, config)
            for use_query_type, metrics in table.iterrows():
                rows.append({"positives": labelling, "trained on": ", ".join(stages),
                             "evaluated on": ", ".join(held_out), "use_query_type": use_query_type,
                             **metrics.to_dict()})
    return pd.DataFrame(rows)


def _pairs_of(pairs: pd.DataFrame, stage_pairs: Sequence[tuple[str, str]]) -> pd.Series:
    """Rows that are within-stage pairs of these stages or cross pairs of exactly these stage pairs."""
    stages = {stage for pair in stage_pairs for stage in pair}
    wanted = {frozenset(pair) for pair in stage_pairs}
    within = (pairs.stage1 == pairs.stage2) & pairs.stage1.isin(stages)
    across = pd.Series([frozenset((a, b)) in wanted for a, b in zip(pairs.stage1, pairs.stage2)], index=pairs.index)
    return within | across


def model_wise_from_cube(cube: ScoreCube, alpha: float = 0.05) -> ModelWiseResult:
    """SimCT's model-wise test on all queries and responses of a score cube."""
    within = np.nanmean(cube.within, axis=(1, 2))
    across = cube.across.mean(axis=(1, 2))
    return paired_consistency_t_test(within, across, alpha, cube.stage_a, cube.stage_b)


def pair_auc(cube: ScoreCube) -> float:
    """AUC of the pair scores at telling within-reference pairs (positive) from cross pairs."""
    i, j = np.triu_indices(cube.within.shape[1], k=1)
    within, across = cube.within[:, i, j].ravel(), cube.across.ravel()
    labels = np.r_[np.ones(len(within)), np.zeros(len(across))]
    return float(roc_auc_score(labels, np.r_[within, across]))


@dataclasses.dataclass
class ChangeResult:
    """Everything measured for one change.

    Attributes:
        change: what was tested.
        simct: SimCT's model-wise test on all queries and samples.
        mmd: the MMD baseline's test at the same budget.
        simct_curve, mmd_curve: rejection rates against the number of queries (the
            :class:`~workbench.consistency.calibration.RejectionRate` columns).
        pair_auc: how well single pair scores separate within-reference from cross pairs.
        per_query: per-query mean scores (columns ``within``, ``across``).
    """

    change: Change
    simct: ModelWiseResult
    mmd: MMDResult
    simct_curve: pd.DataFrame
    mmd_curve: pd.DataFrame
    pair_auc: float
    per_query: pd.DataFrame


def analyse_change(table: pd.DataFrame, reference: str, change: Change, score_fn: Callable[[pd.DataFrame], np.ndarray],
                   n_queries_grid: Sequence[int], samples_per_query: int, mmd_config: MMDConfig,
                   simct_runs: int = 500, mmd_runs: int = 50, alpha: float = 0.05, seed: int = 0) -> ChangeResult:
    """Model-wise tests and power curves of SimCT and of the MMD baseline for one change.

    Both tests see the same queries and the same ``samples_per_query`` responses per stage and
    query, and their power curves resample queries the same way (with replacement).

    Args:
        table: the response table.
        reference: the reference stage.
        change: the change under test.
        score_fn: pairs -> consistency scores (e.g. featurise, then :meth:`CrossFitScorer.predict`).
        n_queries_grid: query counts of the power curves.
        samples_per_query: responses per stage and query (k).
        mmd_config: the baseline's settings.
        simct_runs, mmd_runs: simulated runs per grid point.
        alpha: significance level.
        seed: seeds all resampling.
    """
    cube = score_cube(table, reference, change.stage, score_fn, samples_per_query)
    tokens = token_cube(table, reference, change.stage, mmd_config, samples_per_query)
    simct = model_wise_from_cube(cube, alpha)
    mmd = mmd_permutation_test(tokens.tokens_a, tokens.tokens_b, mmd_config, seed)
    simct_curve = power_curve(cube, n_queries_grid, samples_per_query, simct_runs, alpha, seed)
    mmd_curve = mmd_power_curve(tokens, n_queries_grid, samples_per_query, mmd_runs, alpha, mmd_config, seed)
    per_query = pd.DataFrame({"within": np.nanmean(cube.within, axis=(1, 2)), "across": cube.across.mean(axis=(1, 2))},
                             index=pd.Index(cube.query_ids, name="query_id"))
    return ChangeResult(change, simct, mmd, simct_curve, mmd_curve, pair_auc(cube), per_query)


def compare_scores(table: pd.DataFrame, reference: str, changes: Sequence[Change],
                   score_fns: Mapping[str, Callable[[pd.DataFrame], np.ndarray]], samples_per_query: int,
                   n_runs: int = 500, alpha: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """The model-wise test with several pair scores: p-value and power on all queries, per change.

    The t-test accepts any per-pair score, so the same responses can be judged with the trained
    classifier under different labellings or with a single feature such as ``cosine``.

    Returns:
        One row per change; columns ``(score name, "p")`` and ``(score name, "power")``.
    """
    rows = {}
    for change in changes:
        row = {}
        for name, score_fn in score_fns.items():
            cube = score_cube(table, reference, change.stage, score_fn, samples_per_query)
            curve = power_curve(cube, [len(cube.query_ids)], samples_per_query, n_runs, alpha, seed)
            row[(name, "p")] = model_wise_from_cube(cube, alpha).p_value
            row[(name, "power")] = float(curve.rate.iloc[0])
        rows[change.stage] = row
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("change")


def pool_stages(table: pd.DataFrame, stages: Sequence[str], name: str) -> pd.DataFrame:
    """The responses of several stages as one stage ``name`` (seeds become ``"<stage>:<seed>"``).

    Pooling the reference with a rerun under new seeds gives a stage with twice the samples,
    which :func:`~workbench.consistency.calibration.aa_false_alarm_rate` splits at random.
    """
    rows = table[table.stage.isin(stages)]
    pooled = rows.assign(stage=name, seed=rows.stage + ":" + rows.seed.astype(str))
    return pooled.sort_values("query_id", kind="stable").reset_index(drop=True)


def stage_tokens(table: pd.DataFrame, stage: str, config: MMDConfig) -> np.ndarray:
    """(Q, n, L) token ids of one stage's responses (n: the fewest per query), for :func:`mmd_aa_false_alarm_rate`."""
    rows = table[table.stage == stage]
    n = int(rows.groupby("query_id").size().min())
    ordered = pd.concat([group.head(n) for _, group in rows.groupby("query_id", sort=False)])
    return encode_responses(ordered.response.tolist(), config).reshape(-1, n, config.max_length)


def mmd_aa_false_alarm_rate(tokens: np.ndarray, n_queries: int, samples_per_query: int, n_runs: int = 100,
                            alpha: float = 0.05, config: MMDConfig | None = None, seed: int = 0):
    """Rejection rate of the MMD baseline between random halves of one stage's responses.

    The counterpart of :func:`~workbench.consistency.calibration.aa_false_alarm_rate`: each run
    draws ``n_queries`` queries with replacement and splits each one's responses at random into
    two disjoint sets of ``samples_per_query``.

    Args:
        tokens: (Q, n, L) token ids of one (pooled) stage, ``n >= 2 * samples_per_query``.
        n_queries, samples_per_query, n_runs, alpha, config, seed: as for the SimCT version.

    Returns:
        A :class:`~workbench.consistency.calibration.RejectionRate`.
    """
    q_count, n, _ = tokens.shape
    if 2 * samples_per_query > n:
        raise ValueError(f"A/A runs need 2 * samples_per_query <= {n} responses per query")
    rng = np.random.default_rng(seed)
    p_values = np.empty(n_runs)
    for run in range(n_runs):
        queries = rng.choice(q_count, size=n_queries, replace=True)
        order = np.argsort(rng.random((n_queries, n)), axis=1)
        first, second = order[:, :samples_per_query], order[:, samples_per_query:2 * samples_per_query]
        p_values[run] = mmd_permutation_test(tokens[queries[:, None], first], tokens[queries[:, None], second],
                                             config, seed=int(rng.integers(2**32))).p_value
    return rejection_rate(p_values, alpha, n_queries, samples_per_query)


def minimum_detectable_effect(n_queries: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest Cohen's d_z the one-sided paired t-test detects with ``power`` at ``n_queries``.

    >>> round(minimum_detectable_effect(27), 2)
    0.49
    """
    return float(optimize.brentq(lambda d: t_test_power(d, n_queries, alpha) - power, 1e-9, 100.0))


def _rate_at(curve: pd.DataFrame, n: int) -> float:
    return float(curve.set_index("n_queries").rate.get(n, np.nan))


def _queries_for(curve: pd.DataFrame, power: float) -> float:
    reached = curve[curve.rate >= power].n_queries
    return float(reached.min()) if len(reached) else np.nan


def decision_table(results: Sequence[ChangeResult], alpha: float = 0.05, power: float = 0.8,
                   margin: float = 0.1) -> pd.DataFrame:
    """One row per change: decisions, p-values, power, and which test is more powerful.

    Columns:
        ``decision``: ``"different"`` when SimCT rejects at ``alpha``; otherwise
        ``"consistent"`` when the test had at least ``power`` against the comparable change,
        else ``"consistent (underpowered)"``: not rejecting is only evidence of consistency
        when the test could have seen a change.
        ``mde_dz``: the smallest effect size d_z detectable with ``power`` at this number of queries.
        ``comparable``: the detected (rejected) real change with the smallest effect size, and
        ``power_vs_comparable`` SimCT's empirical power against it at this number of queries.
        ``simct_power`` / ``mmd_power``: rejection rates at this number of queries (false
        alarm rates for controls); ``simct_n80`` / ``mmd_n80``: smallest grid size reaching ``power``.
        ``more_powerful``: the test whose power curve is higher on average by more than
        ``margin`` (``"similar"`` otherwise; ``"n/a (control)"`` for controls).
    """
    detected = [r for r in results if r.simct.reject and not r.change.control and np.isfinite(r.simct.effect_size)]
    comparable = min(detected, key=lambda r: r.simct.effect_size) if detected else None
    rows = []
    for r in results:
        n = r.simct.n_queries
        power_vs = _rate_at(comparable.simct_curve, n) if comparable is not None else np.nan
        if r.simct.reject:
            decision = "different"
        else:
            decision = "consistent" if power_vs >= power else "consistent (underpowered)"
        gap = r.simct_curve.rate.mean() - r.mmd_curve.rate.mean()
        winner = "n/a (control)" if r.change.control else (
            "similar" if abs(gap) <= margin else ("SimCT" if gap > 0 else "MMD"))
        rows.append({
            "change": r.change.stage, "description": r.change.description, "control": r.change.control,
            "n_queries": n, "samples_per_query": r.mmd.samples_per_query,
            "simct_p": r.simct.p_value, "mmd_p": r.mmd.p_value, "decision": decision,
            "mmd_decision": "different" if r.mmd.p_value < alpha else "consistent",
            "effect_dz": r.simct.effect_size, "mean_drop": r.simct.mean_difference, "pair_auc": r.pair_auc,
            "mde_dz": minimum_detectable_effect(n, alpha, power),
            "comparable": comparable.change.stage if comparable is not None else "",
            "power_vs_comparable": power_vs,
            "simct_power": _rate_at(r.simct_curve, n), "mmd_power": _rate_at(r.mmd_curve, n),
            "simct_n80": _queries_for(r.simct_curve, power), "mmd_n80": _queries_for(r.mmd_curve, power),
            "more_powerful": winner,
        })
    return pd.DataFrame(rows)


def plot_power(ax: plt.Axes, curves: Mapping[str, pd.DataFrame], alpha: float = 0.05, title: str = "") -> plt.Axes:
    """Rejection rate against the number of queries, one line per test, with Clopper-Pearson bands."""
    for index, (label, curve) in enumerate(curves.items()):
        color = f"C{index}"
        ax.plot(curve.n_queries, curve.rate, "o-", color=color, label=label)
        ax.fill_between(curve.n_queries, curve.ci_low, curve.ci_high, color=color, alpha=0.15)
    ax.axhline(alpha, color="grey", ls="--", lw=1, label=f"alpha = {alpha}")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("queries")
    ax.set_ylabel("rejection rate")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return ax


def plot_change(result: ChangeResult, alpha: float = 0.05) -> plt.Figure:
    """Power curves of SimCT and MMD for one change, and its per-query consistency scores."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    kind = "false alarm rate" if result.change.control else "power"
    plot_power(left, {"SimCT": result.simct_curve, "MMD (Hamming)": result.mmd_curve}, alpha,
               f"{result.change.description}: {kind}, k={result.mmd.samples_per_query}")
    scores = result.per_query
    right.scatter(scores.within, scores.across, s=14)
    low, high = np.nanmin(scores.values), np.nanmax(scores.values)
    right.plot([low, high], [low, high], color="grey", lw=1)
    right.set_xlabel("reference vs reference (mean score)")
    right.set_ylabel("reference vs change (mean score)")
    right.set_title(f"per query: SimCT p = {result.simct.p_value:.3g}, MMD p = {result.mmd.p_value:.3g}", fontsize=9)
    figure.tight_layout()
    return figure


def plot_p_values(ax: plt.Axes, decisions: pd.DataFrame, alpha: float = 0.05) -> plt.Axes:
    """Horizontal bars of SimCT's and MMD's p-values per change (log scale) with alpha marked."""
    y = np.arange(len(decisions))
    ax.barh(y - 0.2, decisions.simct_p.clip(lower=1e-6), height=0.4, label="SimCT")
    ax.barh(y + 0.2, decisions.mmd_p.clip(lower=1e-6), height=0.4, label="MMD")
    ax.axvline(alpha, color="grey", ls="--", lw=1, label=f"alpha = {alpha}")
    ax.set_xscale("log")
    ax.set_yticks(y, decisions.description, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("p-value (small: the change is detected)")
    ax.legend(fontsize=7)
    return ax
