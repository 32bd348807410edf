"""Tasks: data loaders, prompt templates, answer parsers, grids and metrics, by name or by spec file."""

from workbench.tasks import builtin, spec  # noqa: F401  (register the built-in tasks and "table")
from workbench.tasks.base import TASKS, Task, register_task
from workbench.tasks.loaders import DataFormatError, Example, read_gsm8k, read_sst5, read_stsb
from workbench.tasks.lookup import get_task
from workbench.tasks.parsers import parse_gsm8k, parse_number, parse_rating
from workbench.tasks.spec import SpecError, TaskSpec, load_task_spec
from workbench.tasks.table import read_table, split_rows

__all__ = [
    "TASKS",
    "DataFormatError",
    "Example",
    "SpecError",
    "Task",
    "TaskSpec",
    "get_task",
    "load_task_spec",
    "parse_gsm8k",
    "parse_number",
    "parse_rating",
    "read_gsm8k",
    "read_sst5",
    "read_stsb",
    "read_table",
    "register_task",
    "split_rows",
]
