"""Progress bars that also finish in saved notebooks.

``tqdm.auto`` draws a widget in Jupyter. A headless run (papermill) saves the widget's first
state only, so a saved notebook shows every bar frozen at 0%. The notebook runner sets
``WORKBENCH_PROGRESS=text``; then bars are plain text on stderr, which the saved notebook keeps
in its final state. Everything in the workbench imports its bar from here.
"""

from __future__ import annotations

import os

if os.environ.get("WORKBENCH_PROGRESS") == "text":
    from tqdm.std import tqdm
else:
    from tqdm.auto import tqdm

__all__ = ["tqdm"]
