"""Plots of the lifecycle (Axes in, Axes out): the fine-tuning loss curve."""

from __future__ import annotations

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
