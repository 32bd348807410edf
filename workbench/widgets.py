"""Controls that re-view computed results, safe in headless runs.

``ipywidgets.interact`` draws its first view *inside* an ``Output`` widget while the cell runs.
In a headless run (papermill / nbclient, as in CI) with ipykernel 7 that capture can leave the
client waiting forever for the cell to finish: the kernel is idle, the client never hears so
(seen in notebooks 04 and 06). :func:`explore` draws nothing while the cell runs; the notebook
calls its plotting function once directly (so a headless run renders and checks it), and the
controls redraw into their ``Output`` only when someone moves them.
"""

from __future__ import annotations

from collections.abc import Callable

import ipywidgets as widgets


def explore(show: Callable[..., None], **controls: widgets.ValueWidget) -> widgets.VBox:
    """Controls that call ``show(**their values)`` whenever one of them changes, above the area it draws in.

    Args:
        show: draws one view (a plot, a table) for keyword arguments named like the controls.
        **controls: one value widget per argument of ``show`` (``Dropdown``, ``FloatSlider``...).

    Returns:
        The controls and their output area, to display as a cell's last expression.

    >>> calls = []
    >>> box = explore(
    ...     lambda n, scale: calls.append((n, scale)),
    ...     n=widgets.IntSlider(value=1),
    ...     scale=widgets.FloatSlider(value=0.5),
    ... )
    >>> calls  # nothing is drawn until a control moves
    []
    """
    view = widgets.Output()

    def redraw(_change=None) -> None:
        with view:
            view.clear_output(wait=True)
            show(**{name: control.value for name, control in controls.items()})

    for control in controls.values():
        control.observe(redraw, names="value")
    return widgets.VBox([widgets.HBox(list(controls.values())), view])
