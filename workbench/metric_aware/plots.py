"""Plots that several notebooks share. Each takes an Axes and returns it, so it can be called once
directly (a headless run checks it) and again from a widget callback."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np


def rating_distribution(ax: plt.Axes, candidates: list[str], probs: np.ndarray, gold: float | None = None, sampled: np.ndarray | None = None, title: str = "") -> plt.Axes:
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


def metric_vs_samples(ax: plt.Axes, curves: dict[str, tuple[list[int], list[float]]], exact: dict[str, float] | None = None, metric: str = "", title: str = "") -> plt.Axes:
    """A metric against the number of samples K, one line per rule, exact values as dashed lines."""
    for index, (name, (ks, values)) in enumerate(curves.items()):
        line, = ax.plot(ks, values, "o-", label=name, color=f"C{index}")
        if exact and name in exact:
            ax.axhline(exact[name], color=line.get_color(), ls="--", lw=1)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("samples K")
    ax.set_ylabel(metric)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return ax
