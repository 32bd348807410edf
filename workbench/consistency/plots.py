"""Plots of a SimCT study. Each takes an Axes and returns it, so a notebook calls it once
directly (a headless run renders it) and again from a widget."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.axes import Axes


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


def plot_budget(ax: Axes, curves: pd.DataFrame, n_queries: int, power: float = 0.8, alpha: float = 0.05) -> Axes:
    """The planner's simulated power curves, one per target change, with the target power and the budget chosen.

    Args:
        curves: :attr:`~workbench.consistency.budget.BudgetPlan.curves`
            (columns target, n_queries, rate, ci_low, ci_high).
        n_queries: the budget chosen.
    """
    plot_power(
        ax,
        {target: part for target, part in curves.groupby("target", sort=False)},
        alpha,
        f"planner (pilot, simulated): budget {n_queries} queries",
    )
    ax.axhline(power, color="black", ls=":", lw=1)
    ax.axvline(n_queries, color="black", lw=1)
    return ax


def plot_pair_set_auc(ax: Axes, aucs: pd.DataFrame, title: str = "") -> Axes:
    """AUC with its interval per group (rows) and score (bars): same-stage vs cross-stage pairs."""
    groups = list(dict.fromkeys(aucs.group))
    scores = list(dict.fromkeys(aucs.score))
    width = 0.8 / len(scores)
    y = np.arange(len(groups))
    for index, score in enumerate(scores):
        part = aucs[aucs.score == score].set_index("group").loc[groups]
        errors = np.vstack([part.auc - part.auc_low, part.auc_high - part.auc]).clip(min=0)
        ax.barh(
            y + (index - (len(scores) - 1) / 2) * width,
            part.auc - 0.5,
            width,
            left=0.5,
            xerr=errors,
            capsize=2,
            label=score,
        )
    ax.axvline(0.5, color="grey", lw=1)
    ax.set_yticks(y, groups, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("AUC (0.5: chance), 95% query-bootstrap interval")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return ax


def plot_method_power(
    ax: Axes, grid: pd.DataFrame, samples_per_query: int, kind: str = "power", alpha: float = 0.05, title: str = ""
) -> Axes:
    """One comparison's rejection rate against queries, one line per method, at one samples-per-query.

    Args:
        grid: rows of the study's grid for one change (``method``, ``kind``, ``samples_per_query``, the rate columns).
        samples_per_query: which k to show.
        kind: ``"power"`` or ``"false alarm"``.
    """
    rows = grid[(grid.kind == kind) & (grid.samples_per_query == samples_per_query)]
    return plot_power(ax, {m: c.sort_values("n_queries") for m, c in rows.groupby("method", sort=False)}, alpha, title)


def plot_samples_grid(ax: Axes, grid: pd.DataFrame, kind: str = "power", alpha: float = 0.05, title: str = "") -> Axes:
    """One comparison and method: the rejection rate against queries, one line per samples per query."""
    rows = grid[grid.kind == kind]
    curves = {f"k = {k}": c.sort_values("n_queries") for k, c in rows.groupby("samples_per_query")}
    return plot_power(ax, curves, alpha, title)


def plot_decisions(ax: Axes, details: pd.DataFrame, title: str = "") -> Axes:
    """Changes (rows) x methods (columns): the power at the budget as colour, the decision's initial as text
    (d: different, e: equivalent, ?: inconclusive; blank: the method does not apply)."""
    power = details.pivot_table(index="change", columns="method", values="power", sort=False)
    decision = details.pivot_table(index="change", columns="method", values="decision", aggfunc="first", sort=False)
    image = ax.imshow(power.to_numpy(dtype=float), vmin=0, vmax=1, cmap="viridis", aspect="auto")
    mark = {"different": "d", "equivalent": "e", "inconclusive": "?"}
    for (i, j), value in np.ndenumerate(decision.reindex_like(power).to_numpy()):
        if isinstance(value, str):
            ax.text(j, i, mark[value], ha="center", va="center", color="white" if power.iat[i, j] < 0.6 else "black")
    ax.set_xticks(range(power.shape[1]), power.columns, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(power.shape[0]), power.index, fontsize=8)
    ax.figure.colorbar(image, ax=ax, label="power at the budget (A/A rows: false-alarm rate)")
    ax.set_title(title, fontsize=9)
    return ax
