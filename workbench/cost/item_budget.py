"""Evaluation cost measured on its own: how many evaluated items an answer needs, found by subsampling them.

Two questions, each answered by drawing subsets of ``n`` items (with replacement, from the items every
stage answered) for a ladder of ``n`` and looking at what the subsets give, not at a variance formula:

* :func:`items_for_half_width`: the smallest ``n`` at which the 95% spread of a stage's RMSE over the
  subsets is within +- ``half_width``;
* :func:`items_to_tell_apart`: the smallest ``n`` at which a paired t-test on the per-item squared
  errors of two stages rejects equality at ``alpha`` in at least ``power`` of the subsets.

Sizes beyond the evaluated items are subsets drawn with replacement from them (the items stand in
for the population), so a count above the items evaluated is an extrapolation and is marked so.
:func:`budget_table` prices the items in tokens, machine seconds (measured per request) and US$.

>>> rng = np.random.default_rng(0)
>>> gold = rng.normal(size=400)
>>> good, bad = gold + rng.normal(0, 0.5, 400), gold + rng.normal(0, 1.0, 400)
>>> items = items_for_half_width(np.vstack([good, bad]), gold, half_width=0.1, seed=0)
>>> bool(items[0] < items[1])   # the noisier stage needs more items for the same interval
True
>>> 5 <= items_to_tell_apart((good - gold) ** 2, (bad - gold) ** 2, seed=0) <= 120
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats


def size_ladder(items: int, smallest: int = 8, extrapolate: float = 8.0, steps: int = 28) -> np.ndarray:
    """Subset sizes from ``smallest`` to ``extrapolate`` x ``items``, evenly spaced in log.

    >>> size_ladder(100)[[0, -1]].tolist()
    [8, 800]
    """
    return np.unique(np.round(np.geomspace(smallest, max(smallest, extrapolate * items), steps)).astype(int))


def _draws(items: int, size: int, repeats: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, items, size=(repeats, size))


def rmse_half_widths(
    predictions: np.ndarray, gold: np.ndarray, sizes: Sequence[int], repeats: int = 200, seed: int = 0
) -> np.ndarray:
    """Half the central 95% range of each stage's RMSE over ``repeats`` subsets of each size.

    Args:
        predictions: (stages, n) answers; every stage gets the same subsets (paired).
        gold: (n,) gold values.
        sizes: subset sizes.

    Returns:
        (stages, len(sizes)) half-widths.
    """
    errors = (np.atleast_2d(np.asarray(predictions, float)) - np.asarray(gold, float)) ** 2
    rng = np.random.default_rng(seed)
    widths = np.empty((len(errors), len(sizes)))
    for column, size in enumerate(sizes):
        rmse = np.sqrt(errors[:, _draws(errors.shape[1], int(size), repeats, rng)].mean(axis=2))  # (stages, repeats)
        low, high = np.quantile(rmse, [0.025, 0.975], axis=1)
        widths[:, column] = (high - low) / 2
    return widths


def items_for_half_width(
    predictions, gold, half_width: float, repeats: int = 200, seed: int = 0, sizes: Sequence[int] | None = None
) -> np.ndarray:
    """(stages,) the smallest subset size whose RMSE half-width is at most ``half_width``.

    A stage that does not get there on the ladder is carried past its end by the 1/sqrt(n) law from the
    half-width at the largest size (rounded up): beyond the items evaluated every count is an extrapolation.

    >>> gold = np.tile([0.0, 1.0], 20)
    >>> items_for_half_width(np.vstack([gold + 0.5, gold + np.tile([0.0, 2.0], 20)]), gold, 0.05, seed=0).tolist()
    [8.0, 599.0]
    """
    gold = np.asarray(gold, float)
    sizes = size_ladder(len(gold)) if sizes is None else np.asarray(sizes)
    widths = rmse_half_widths(predictions, gold, sizes, repeats, seed)
    reached = widths <= half_width
    beyond = np.ceil(np.round(sizes[-1] * (widths[:, -1] / half_width) ** 2, 9))
    return np.where(reached.any(axis=1), sizes[reached.argmax(axis=1)], beyond).astype(float)


def items_to_tell_apart(
    loss_a,
    loss_b,
    power: float = 0.8,
    alpha: float = 0.05,
    repeats: int = 200,
    seed: int = 0,
    sizes: Sequence[int] | None = None,
) -> float:
    """The smallest subset size at which a paired t-test on per-item losses rejects at ``alpha`` in ``power`` of
    the subsets (inf: not on the ladder, e.g. two stages that answer alike)."""
    diff = np.asarray(loss_a, float) - np.asarray(loss_b, float)
    sizes = size_ladder(len(diff)) if sizes is None else np.asarray(sizes)
    rng = np.random.default_rng(seed)
    for size in sizes:
        sample = diff[_draws(len(diff), int(size), repeats, rng)]
        mean, sd = sample.mean(axis=1), sample.std(axis=1, ddof=1)
        # No spread: a non-zero difference is told apart by any item, a zero one by none.
        t = np.divide(mean * np.sqrt(size), sd, out=np.where(mean != 0, np.inf, 0.0), where=sd > 0)
        if np.mean(np.abs(t) > stats.t.ppf(1 - alpha / 2, size - 1)) >= power:
            return float(size)
    return float("inf")


def budget_table(
    scores: Sequence,
    own: Sequence[str],
    half_width: float,
    label_usd_per_item: float,
    usd_per_hour: float,
    repeats: int = 200,
    seed: int = 0,
    rows: Mapping[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Per stage and own set: items for +- ``half_width`` on the RMSE (subsampled) and what they cost here.

    Args:
        scores: :class:`workbench.cost.scorecard.StageScores` (with ``request_seconds`` and ``tokens_per_item``).
        own: the sets to price (the stages' own tasks).
        half_width: wanted 95% half-width of the RMSE.
        label_usd_per_item: human labels of one item.
        usd_per_hour: price of this machine (the measured seconds are priced at it).
        repeats: subsets per size.
        rows: set name -> item indices (a bootstrap resample of the items; default all).

    Returns:
        One row per (stage, set): items, extrapolated (more items than were evaluated), tokens, seconds
        (median measured request x items), label, compute and total US$.
    """
    table = []
    for name in own:
        take = rows[name] if rows is not None else slice(None)
        gold = np.asarray(scores[0].gold[name], float)[take]
        answers = np.vstack([np.asarray(s.predictions[name], float)[take] for s in scores])
        items = items_for_half_width(answers, gold, half_width, repeats, seed)
        for stage, n in zip(scores, items, strict=True):
            # A stage timed on one request format only is priced at it.
            seconds = float(np.median(stage.request_seconds.get(name, stage.seconds_per_request))) * n
            table.append(
                {
                    "stage": stage.stage,
                    "set": name,
                    "items": n,
                    "extrapolated": bool(n > len(gold)),
                    "tokens": stage.tokens_per_item.get(name, np.nan) * n,
                    "seconds (measured per request)": seconds,
                    "label_usd": label_usd_per_item * n,
                    "compute_usd": seconds * usd_per_hour / 3600,
                }
            )
    table = pd.DataFrame(table)
    return table.assign(usd=table.label_usd + table.compute_usd)


def separation_table(
    scores: Sequence, order: Sequence[str], own: Sequence[str], repeats: int = 200, seed: int = 0
) -> pd.DataFrame:
    """Items to tell each stage from the next in ``order`` (e.g. sorted by quality), per own set, by subsampling.

    Returns:
        One row per (pair, set): the pair, the observed RMSE of each, and the items (inf: not on the ladder).
    """
    by_name = {s.stage: s for s in scores}
    rows = []
    for first, second in zip(order, order[1:]):
        a, b = by_name[first], by_name[second]
        for name in own:
            gold = np.asarray(a.gold[name], float)
            loss_a = (np.asarray(a.predictions[name], float) - gold) ** 2
            loss_b = (np.asarray(b.predictions[name], float) - gold) ** 2
            rows.append(
                {
                    "stage_a": first,
                    "stage_b": second,
                    "set": name,
                    "rmse_a": float(np.sqrt(loss_a.mean())),
                    "rmse_b": float(np.sqrt(loss_b.mean())),
                    "items_to_tell_apart": items_to_tell_apart(loss_a, loss_b, repeats=repeats, seed=seed),
                    "items evaluated": len(gold),
                }
            )
    return pd.DataFrame(rows)
