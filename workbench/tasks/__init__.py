"""Tasks: data loaders, prompt templates, answer parsers, grids and metrics, by name."""

from workbench.tasks import builtin  # noqa: F401  (registers the built-in tasks)
from workbench.tasks.base import TASKS, Task, get_task, register_task
from workbench.tasks.loaders import DataFormatError, Example, read_gsm8k, read_sst5, read_stsb, read_table
from workbench.tasks.parsers import parse_gsm8k, parse_number, parse_rating

__all__ = [
    "TASKS",
    "DataFormatError",
    "Example",
    "Task",
    "get_task",
    "parse_gsm8k",
    "parse_number",
    "parse_rating",
    "read_gsm8k",
    "read_sst5",
    "read_stsb",
    "read_table",
    "register_task",
]
