"""Is the response-wise classifier better than a threshold on one similarity? A labelled pair set.

The pair set holds, for each change, the reference's within-stage pairs (label 1: same stage)
and the reference-vs-change pairs (label 0: across stages), all on the study's queries. Every
score is computed per change (:func:`score_pair_set`), so a cross-fitted classifier scores a
change's positives and negatives with the same classifiers (those that never saw the change).

:func:`pair_set_auc` gives each score's AUC with a 95% interval from a bootstrap over *queries*
(the pairs of one query share responses, so they are not independent), and each score's AUC
difference to a reference score on the same resamples, a paired comparison.
:func:`fit_threshold` and :func:`threshold_table` turn a single similarity into a classifier
("consistent if cosine >= t"), with t fitted on training pairs, the simple baselines of the
comparison.

>>> labels = np.array([1, 1, 1, 0, 0, 0])
>>> fit_threshold(np.array([0.9, 0.8, 0.7, 0.6, 0.75, 0.1]), labels)
0.7
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from workbench.consistency.responses import labelled_pairs

ScoreFunction = Callable[[pd.DataFrame], np.ndarray]


def pair_set(table: pd.DataFrame, reference: str, stages: Sequence[str]) -> pd.DataFrame:
    """The labelled pairs of ``reference`` against each stage, one block per stage.

    Returns:
        Pairs (columns of :data:`~workbench.consistency.responses.PAIR_COLUMNS`) plus ``change``:
        the stage whose block a row belongs to. Each block has all of the reference's within
        pairs (``same_stage`` 1) and all reference-vs-stage pairs (``same_stage`` 0).
    """
    blocks = []
    for stage in stages:
        pairs = labelled_pairs(table, [(reference, stage)])
        keep = (pairs.stage1 != pairs.stage2) | (pairs.stage1 == reference)
        blocks.append(pairs[keep].assign(change=stage))
    return pd.concat(blocks, ignore_index=True)


def score_pair_set(pairs: pd.DataFrame, score_fns: Mapping[str, ScoreFunction]) -> pd.DataFrame:
    """``pairs`` with one column per score, each computed block by block (per ``change``)."""
    out = pairs.copy()
    for name, score_fn in score_fns.items():
        out[name] = np.nan
        for _, block in pairs.groupby("change", sort=False):
            out.loc[block.index, name] = np.asarray(score_fn(block), dtype=float)
    return out


def _query_bootstrap(query_ids: np.ndarray, n_resamples: int, seed: int) -> list[np.ndarray]:
    """Row indices of ``n_resamples`` resamples of whole queries (with replacement)."""
    codes, unique = pd.factorize(query_ids)
    rows_of = [np.flatnonzero(codes == q) for q in range(len(unique))]
    rng = np.random.default_rng(seed)
    return [np.concatenate([rows_of[q] for q in rng.integers(0, len(unique), len(unique))]) for _ in range(n_resamples)]


def pair_set_auc(
    scored: pd.DataFrame,
    scores: Sequence[str],
    reference_score: str | None = None,
    by: str | None = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """AUC of each score at telling same-stage pairs from cross-stage pairs, with query-bootstrap intervals.

    Args:
        scored: pairs with ``same_stage``, ``query_id`` and the score columns (higher = more alike).
        scores: score columns to evaluate.
        reference_score: a score to compare every other with (AUC difference on the same resamples).
        by: a column to evaluate within (e.g. ``"change"``) in addition to all rows pooled.
        n_resamples: bootstrap resamples of queries.
        confidence: interval coverage.
        seed: bootstrap seed.

    Returns:
        One row per (group, score): ``auc``, ``auc_low``, ``auc_high``, and when
        ``reference_score`` is given ``diff`` (AUC minus the reference's), ``diff_low``,
        ``diff_high``; ``n_pairs``, ``n_queries``. The pooled rows have group ``"all"``.
    """
    groups = [("all", scored)] + (list(scored.groupby(by, sort=False)) if by else [])
    tail = (1 - confidence) / 2
    rows = []
    for group, part in groups:
        labels = part.same_stage.to_numpy()
        if len(set(labels)) < 2:
            raise ValueError(f"group {group!r} needs both same-stage and cross-stage pairs")
        resamples = _query_bootstrap(part.query_id.to_numpy(), n_resamples, seed)
        values = {name: part[name].to_numpy(dtype=float) for name in scores}
        aucs = {}
        for name, x in values.items():
            boot = np.array([roc_auc_score(labels[r], x[r]) if len(set(labels[r])) == 2 else np.nan for r in resamples])
            aucs[name] = (roc_auc_score(labels, x), boot)
        for name in scores:
            estimate, boot = aucs[name]
            row = {
                "group": group,
                "score": name,
                "auc": estimate,
                "auc_low": np.nanquantile(boot, tail),
                "auc_high": np.nanquantile(boot, 1 - tail),
                "n_pairs": len(part),
                "n_queries": part.query_id.nunique(),
            }
            if reference_score is not None:
                diff = boot - aucs[reference_score][1]
                row.update(
                    {
                        "diff": estimate - aucs[reference_score][0],
                        "diff_low": np.nanquantile(diff, tail),
                        "diff_high": np.nanquantile(diff, 1 - tail),
                    }
                )
            rows.append(row)
    return pd.DataFrame(rows)


def fit_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The threshold t maximising balanced accuracy of "same stage if score >= t" (ties: the lowest t)."""
    scores, labels = np.asarray(scores, dtype=float), np.asarray(labels, dtype=int)
    order = np.argsort(-scores, kind="stable")
    ranked, hits = scores[order], labels[order]
    true_pos, false_pos = np.cumsum(hits), np.cumsum(1 - hits)
    last = np.r_[ranked[1:] != ranked[:-1], True]  # the last row of each run of equal scores
    positives, negatives = max(hits.sum(), 1), max((1 - hits).sum(), 1)
    balanced = 0.5 * (true_pos / positives + (negatives - false_pos) / negatives)
    balanced = np.where(last, balanced, -np.inf)
    best = np.flatnonzero(balanced >= balanced.max() - 1e-12)[-1]  # the lowest of the tied thresholds
    return float(ranked[best])


def balanced_accuracy(called: np.ndarray, labels: np.ndarray) -> float:
    """Mean of the recall of same-stage pairs and the recall of cross-stage pairs."""
    called, labels = np.asarray(called, dtype=bool), np.asarray(labels, dtype=int)
    return float(0.5 * (called[labels == 1].mean() + (~called[labels == 0]).mean()))


def threshold_table(
    scored: pd.DataFrame,
    thresholds: Mapping[str, float],
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Balanced accuracy of "same stage if score >= threshold" for each score, with query-bootstrap intervals.

    Args:
        scored: pairs with ``same_stage``, ``query_id`` and the score columns.
        thresholds: score column -> threshold (fitted on *training* pairs with :func:`fit_threshold`,
            or a fixed one such as 0.5 for a classifier's probability).
    """
    labels = scored.same_stage.to_numpy()
    resamples = _query_bootstrap(scored.query_id.to_numpy(), n_resamples, seed)
    tail = (1 - confidence) / 2
    rows = []
    for name, threshold in thresholds.items():
        called = scored[name].to_numpy(dtype=float) >= threshold
        boot = np.array([balanced_accuracy(called[r], labels[r]) for r in resamples])
        rows.append(
            {
                "score": name,
                "threshold": threshold,
                "balanced_accuracy": balanced_accuracy(called, labels),
                "low": np.quantile(boot, tail),
                "high": np.quantile(boot, 1 - tail),
            }
        )
    return pd.DataFrame(rows)
