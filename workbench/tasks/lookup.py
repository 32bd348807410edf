"""Find a task by name or by spec file: the one entry point over the registry and the spec files.

It sits above both :mod:`workbench.tasks.base` (the registry) and :mod:`workbench.tasks.spec` (spec
files, which register the ``table`` factory in that registry), so neither imports the other back.
"""

from __future__ import annotations

import os

from workbench.tasks.base import TASKS, Task
from workbench.tasks.spec import find_spec, load_task_spec, shipped_specs


def get_task(name: str | os.PathLike, /, **options) -> Task:
    """Build a task: a registered name, a shipped spec's name, or the path of a YAML/JSON spec file.

    ``options`` go to the task's factory (for a spec, they replace its fields).

    Raises:
        KeyError: for a name that is neither registered nor a shipped spec (listing both).
        FileNotFoundError: for a spec path (a .yaml/.yml/.json name) that does not exist.
    """
    if isinstance(name, str) and name in TASKS:
        return TASKS[name](**options)
    path = find_spec(name)
    if path is None:
        raise KeyError(
            f"unknown task {name!r}; registered: {sorted(TASKS)}; shipped specs: {shipped_specs()}; "
            "or give a spec file's path"
        )
    return load_task_spec(path, **options).task()
