"""Plots of the fine-tuning lifecycle. Each takes an Axes and returns it."""

from __future__ import annotations

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure  # noqa: F401  (doctests)


def plot_losses(axes: Axes, losses: list[float], window: int = 5, title: str = "Training loss") -> Axes:
    """Per-step training loss with its running mean over ``window`` steps.

    >>> plot_losses(Figure().add_subplot(), [3.0, 2.0, 1.5, 1.0], window=2).get_lines()[1].get_ydata().tolist()
    [3.0, 2.5, 1.75, 1.25]
    """
    steps = list(range(1, len(losses) + 1))
    running = []
    for i in range(len(losses)):
        recent = losses[max(0, i + 1 - window) : i + 1]
        running.append(sum(recent) / len(recent))
    axes.plot(steps, losses, ".", alpha=0.5, label="step")
    axes.plot(steps, running, "-", label=f"running mean ({window})")
    axes.set(title=title, xlabel="step", ylabel="answer NLL / token")
    axes.legend()
    return axes


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
