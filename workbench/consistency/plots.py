"""Plots of a SimCT study. Each takes an Axes and returns it, so a notebook calls it once
directly (a headless run renders it) and again from a widget."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from workbench.consistency.study import ChangeResult


def plot_power(ax: Axes, curves: Mapping[str, pd.DataFrame], alpha: float = 0.05, title: str = "") -> Axes:
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


def plot_change_power(ax: Axes, result: ChangeResult, alpha: float = 0.05) -> Axes:
    """Power curves (false alarm rates for a control) of SimCT and the MMD baseline for one change."""
    kind = "false alarm rate" if result.change.control else "power"
    return plot_power(ax, {"SimCT": result.simct_curve, "MMD (Hamming)": result.mmd_curve}, alpha,
                      f"{result.change.description}: {kind}, k={result.mmd.samples_per_query}")


def plot_per_query(ax: Axes, result: ChangeResult) -> Axes:
    """Per-query mean consistency scores: reference vs reference (x) against reference vs change (y).

    Points below the diagonal are queries on which the change answered less like the reference
    than the reference answered like itself.
    """
    scores = result.per_query
    ax.scatter(scores.within, scores.across, s=14)
    low, high = np.nanmin(scores.values), np.nanmax(scores.values)
    ax.plot([low, high], [low, high], color="grey", lw=1)
    ax.set_xlabel("reference vs reference (mean score)")
    ax.set_ylabel("reference vs change (mean score)")
    ax.set_title(f"per query: SimCT p = {result.simct.p_value:.3g}, MMD p = {result.mmd.p_value:.3g}", fontsize=9)
    return ax


def plot_p_values(ax: Axes, decisions: pd.DataFrame, alpha: float = 0.05) -> Axes:
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
