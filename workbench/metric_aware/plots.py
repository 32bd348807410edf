"""Plots that several notebooks share. Each takes an Axes and returns it, so it can be called once
directly (a headless run checks it) and again from a widget callback."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np


def rating_distribution(
    ax: plt.Axes,
    candidates: list[str],
    probs: np.ndarray,
    gold: float | None = None,
    sampled: np.ndarray | None = None,
    title: str = "",
) -> plt.Axes:
    """Bar chart of a distribution over answer candidates.

    Args:
        ax: where to draw.
        candidates: K answer strings.
        probs: (K,) exact probabilities (renormalised over the grid).
        gold: the gold answer, marked with a dashed line.
        sampled: optional (K,) sample frequencies, drawn as points over the bars.
        title: axes title.
    """
    x = np.arange(len(candidates))
    ax.bar(x, probs, color="#4c72b0", label="exact (score)")
    if gold is not None:  # gold may fall between grid points (STS-B 3.75): place it proportionally
        ax.axvline(np.interp(float(gold), [float(c) for c in candidates], x), color="#dd8452", ls="--", label="gold")
    if sampled is not None:
        ax.plot(x, sampled, "ko", label="sampled")
    ax.set_xticks(x, candidates, rotation=90 if len(candidates) > 10 else 0)
    ax.set_ylim(0, 1)
    ax.set_ylabel("probability")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return ax


def strategy_bars(ax: plt.Axes, table, metric: str, highlight: str | None = None, title: str = "") -> plt.Axes:
    """Horizontal bars of one metric per inference strategy, with bootstrap intervals.

    Args:
        ax: where to draw.
        table: a :func:`workbench.metric_aware.experiments.comparison_table` (rows strategies; columns
            ``metric`` and ``f"{metric} CI"`` as "[low, high]").
        metric: column to show.
        highlight: a strategy to colour differently (e.g. the Bayes-optimal one).
        title: axes title.
    """
    values = table[metric].to_numpy(dtype=float)
    bounds = np.array([[float(x) for x in ci.strip("[]").split(",")] for ci in table[f"{metric} CI"]])
    errors = np.abs(bounds.T - values)
    colors = ["#dd8452" if name == highlight else "#4c72b0" for name in table.index]
    y = np.arange(len(table))
    ax.barh(y, values, xerr=errors, color=colors, capsize=3)
    ax.set_yticks(y, table.index, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(metric)
    ax.set_title(title, fontsize=9)
    return ax


def metric_vs_samples(
    ax: plt.Axes,
    curves: dict[str, tuple[list[int], list[float]]],
    exact: dict[str, float] | None = None,
    metric: str = "",
    title: str = "",
) -> plt.Axes:
    """A metric against the number of samples K, one line per rule, exact values as dashed lines."""
    for index, (name, (ks, values)) in enumerate(curves.items()):
        (line,) = ax.plot(ks, values, "o-", label=name, color=f"C{index}")
        if exact and name in exact:
            ax.axhline(exact[name], color=line.get_color(), ls="--", lw=1)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("samples K")
    ax.set_ylabel(metric)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return ax


# Notebook 03's sweeps: sampled rule -> the same rule on the exact distribution.
SWEEP_RULES = {"mean": "exact mean", "median": "exact median", "mode (self-consistency)": "exact mode"}


def k_sweep_panel(
    ax: plt.Axes, sweeps, stage: str, task: str, metric: str, rules: dict[str, str] = SWEEP_RULES
) -> plt.Axes:
    """One stage and task of a K sweep (:func:`workbench.metric_aware.experiments.k_sweep` rows with ``model`` and
    ``task`` columns): each sampled rule against K, its exact counterpart dashed."""
    frame = sweeps[(sweeps.model == stage) & (sweeps.task == task) & (sweeps.metric == metric)]
    curves = {rule: (list(g.k), list(g.value)) for rule, g in frame[frame.strategy.isin(rules)].groupby("strategy")}
    exact = {rule: frame[frame.strategy == name].value.iloc[-1] for rule, name in rules.items()}
    return metric_vs_samples(
        ax, curves, exact, metric=metric, title=f"{stage} · {task}: {metric} vs K (measured; dashed: exact)"
    )


def temperature_panel(
    ax: plt.Axes, temperatures, stage: str, task: str, metric: str, k: int, rules: dict[str, str] = SWEEP_RULES
) -> plt.Axes:
    """One stage and task of a temperature sweep: each rule on the exact distribution (dashed) and on ``k`` samples."""
    frame = temperatures[(temperatures.model == stage) & (temperatures.task == task) & (temperatures.metric == metric)]
    for index, (rule, exact_name) in enumerate(rules.items()):
        exact, sampled = frame[frame.strategy == exact_name], frame[frame.strategy == rule]
        ax.plot(exact.temperature, exact.value, "o--", color=f"C{index}", label=exact_name)
        ax.plot(sampled.temperature, sampled.value, "o-", color=f"C{index}", alpha=0.6, label=f"{rule} (K={k})")
    ax.set(xlabel="temperature", ylabel=metric, title=f"{stage} · {task}: {metric} vs temperature (measured)")
    ax.legend(fontsize=6)
    return ax


def sampled_vs_exact(ax_scatter: plt.Axes, ax_tv: plt.Axes, run, total_variation: dict[int, float], title: str) -> None:
    """Per item, the mean of the run's samples against its exact mean (left), and the mean total variation
    between the first-K sample frequencies and the exact distribution, ``{K: value}`` (right; see
    :func:`workbench.metric_aware.inference_study.total_variation_by_k`)."""
    from workbench.metric_aware.decision import from_grid, from_samples, mean

    ax_scatter.scatter(mean(from_grid(run.grid, run.exact_probs)), mean(from_samples(run.samples)), s=8, alpha=0.6)
    ax_scatter.plot(run.grid[[0, -1]], run.grid[[0, -1]], "k--", lw=1)
    ax_scatter.set(xlabel="exact mean", ylabel=f"mean of {run.config.k} samples", title=title)
    for k, tv in total_variation.items():
        ax_tv.plot(k, tv, "ko")
    ax_tv.set(
        xscale="log",
        xlabel="K",
        ylabel="mean total variation",
        title=f"{title}: sampled vs exact (outside mass {run.outside_mass.mean():.2f})",
    )


def reliability_diagram(ax: plt.Axes, curves: dict, title: str = "") -> plt.Axes:
    """Accuracy of the most probable grid answer against its confidence, one line per curve.

    Args:
        ax: where to draw.
        curves: ``{label: frame}``, each a :func:`workbench.metric_aware.calibration.reliability` table
            (``confidence``, ``accuracy``, ``n``); marker areas follow ``n``.
        title: axes title.
    """
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
    for index, (label, frame) in enumerate(curves.items()):
        ax.plot(frame.confidence, frame.accuracy, "-", color=f"C{index}", label=label)
        ax.scatter(frame.confidence, frame.accuracy, s=8 + 60 * frame.n / frame.n.max(), color=f"C{index}")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence of the mode", ylabel="accuracy", title=title)
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7)
    return ax


def ladder_panel(ax: plt.Axes, table, task: str, metric: str, arms: list[str], seed: int = 0) -> plt.Axes:
    """One task and metric of the ladder (``results/ladder.csv`` rows): a bar per arm in ``arms`` order with its
    95% interval; published anchors hatched (no interval)."""
    rows = table[(table.task == task) & (table.metric == metric) & (table.seed.isna() | (table.seed == seed))]
    rows = rows.set_index("arm").reindex([a for a in arms if a in set(rows.arm)])
    y = np.arange(len(rows))
    errors = np.abs(rows[["ci_low", "ci_high"]].to_numpy(float).T - rows.value.to_numpy(float))
    published = rows.seed.isna().to_numpy()
    ax.barh(y, rows.value, xerr=np.nan_to_num(errors), capsize=3, color=np.where(published, "#bbbbbb", "#4c72b0"))
    for i in np.flatnonzero(published):
        ax.barh(y[i], rows.value.iloc[i], color="none", hatch="//", edgecolor="k")
    ax.set_yticks(y, rows.index, fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel=metric, title=f"{task}: {metric} (measured, seed {seed}; hatched: published)")
    ax.title.set_fontsize(9)
    return ax
