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
