"""Read the small CSV tables of the cost package (API prices, hardware), with errors that name the
file and the line. (A task's data files are read by :func:`workbench.tasks.read_table`.)

The tables are plain CSV with one header line. Lines that start with ``#`` are comments (used for
the "re-check these numbers" warnings at the top of each file) and blank lines are skipped. A
field may be left empty where the column is optional; it is then read as ``None``.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

_DATE = re.compile(r"^\d{4}-\d{2}(-\d{2})?$")


class CostTableError(ValueError):
    """A malformed row in a price or hardware table; the message names the file and the line."""


def packaged(name: str) -> Path:
    """Path of a table shipped in ``workbench/data``."""
    return Path(str(files("workbench").joinpath("data", name)))


def number(text: str) -> float:
    """A non-negative finite number."""
    value = float(text)
    if not 0 <= value < float("inf"):
        raise ValueError("must be a finite number >= 0")
    return value


def month_or_day(text: str) -> str:
    """An ISO date, ``YYYY-MM-DD``, or a month, ``YYYY-MM``, when the day is not known."""
    if not _DATE.match(text):
        raise ValueError("must be a date written YYYY-MM-DD or YYYY-MM")
    return text


def read_cost_table(
    path: str | Path,
    required: dict[str, Callable[[str], Any]],
    optional: dict[str, Callable[[str], Any]] | None = None,
    check: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Rows of a CSV table, each field converted by its column's function.

    Args:
        path: the CSV file.
        required: column -> converter for columns that must be present and non-empty.
        optional: column -> converter for columns that may be missing or empty (read as None).
        check: called on each converted row; a ValueError it raises names the row's line.

    Returns:
        One dict per data row, holding the known columns (extra columns are ignored).

    Raises:
        CostTableError: naming the file and line of a missing column, a row with the wrong
            number of fields, an empty required field, a value its converter refuses or a row
            that ``check`` refuses.
    """
    optional = optional or {}
    path = Path(path)
    header: list[str] | None = None
    rows = []
    for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = [field.strip() for field in next(csv.reader([line]))]
        where = f"{path}, line {line_number}"
        if header is None:
            header = fields
            missing = [name for name in required if name not in header]
            if missing:
                raise CostTableError(f"{where}: header lacks the column(s) {missing}; it has {header}")
            continue
        if len(fields) != len(header):
            raise CostTableError(f"{where}: {len(fields)} fields where the header has {len(header)}: {line!r}")
        record = dict(zip(header, fields))
        row = {}
        for name, convert in {**required, **optional}.items():
            text = record.get(name, "")
            if not text:
                if name in required:
                    raise CostTableError(f"{where}: column {name!r} is empty")
                row[name] = None
                continue
            try:
                row[name] = convert(text)
            except ValueError as error:
                raise CostTableError(f"{where}: column {name!r} = {text!r}: {error}") from None
        if check is not None:
            try:
                check(row)
            except ValueError as error:
                raise CostTableError(f"{where}: {error}") from None
        rows.append(row)
    if header is None:
        raise CostTableError(f"{path}: no header line")
    return rows
