"""The controls that re-view results: nothing drawn while the cell runs, a redraw on every change."""

import ipywidgets as widgets

from workbench.widgets import explore


def test_controls_redraw_with_all_their_values_only_when_moved(capsys):
    calls = []
    n, scale = widgets.IntSlider(value=1), widgets.Dropdown(options=["linear", "log"], value="linear")
    box = explore(lambda n, scale: calls.append((n, scale)), n=n, scale=scale)
    assert calls == [] and isinstance(box.children[1], widgets.Output)
    n.value = 3
    scale.value = "log"
    assert calls == [(3, "linear"), (3, "log")]
    capsys.readouterr()  # outside a kernel, the Output area's clearing prints terminal codes
