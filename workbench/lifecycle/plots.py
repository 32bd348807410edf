"""Plots of the fine-tuning lifecycle. Each takes an Axes and returns it."""

from __future__ import annotations

import pandas as pd
from matplotlib.axes import Axes


def dev_history_table(dev_history: list[dict]) -> pd.DataFrame:
    """A run's dev evaluations (:attr:`FinetuneResult.dev_history`) as one row per step and task.

    >>> dev_history_table([{"step": 2, "objective": 0.9, "scores": {"sst5": {"accuracy": 0.4}}}])
       step  task  accuracy
    0     2  sst5       0.4
    """
    return pd.DataFrame(
        [
            {"step": record["step"], "task": task, **scores}
            for record in dev_history
            for task, scores in record["scores"].items()
        ]
    )


def plot_dev_history(ax: Axes, history: pd.DataFrame, kept_step: int | None = None) -> Axes:
    """Dev accuracy (solid) and Spearman (dashed) per task against the step; ``kept_step`` marked (the weights kept).

    Args:
        ax: where to draw.
        history: :func:`dev_history_table` rows (columns ``step``, ``task``, ``accuracy``, ``spearman``).
        kept_step: the step whose weights model selection kept.
    """
    for task, part in history.groupby("task"):
        ax.plot(part.step, part.accuracy, "o-", label=f"{task} accuracy")
        ax.plot(part.step, part.spearman, "s--", label=f"{task} Spearman")
    if kept_step is not None:
        ax.axvline(kept_step, color="grey", ls=":", label="kept")
    ax.set(xlabel="step", title="dev metrics (measured)")
    ax.legend(fontsize=7)
    return ax
