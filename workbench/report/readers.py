"""Readers that turn a results file into the frame a table shows (a ``Table``'s ``read`` and ``rows``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from workbench.report.numbers import interval


def where(**equal) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """Rows whose columns take the given values (a list: any of them, in that order).

    >>> where(task=["stsb", "sst5"])(pd.DataFrame({"task": ["sst5", "gsm8k", "stsb"]})).task.tolist()
    ['stsb', 'sst5']
    """

    def select(table: pd.DataFrame) -> pd.DataFrame:
        for name, wanted in equal.items():
            table = table[table[name].isin(wanted) if isinstance(wanted, list) else table[name] == wanted]
        order = [name for name, wanted in equal.items() if isinstance(wanted, list)]  # the first list orders first
        return (
            table.sort_values(order, key=lambda values: values.map(equal[values.name].index), kind="stable")
            if order
            else table
        )

    return select


def dev_history(path: Path) -> pd.DataFrame:
    """A fine-tuning record's dev evaluations (``04_finetune.json``), one row per step, ``task:metric`` columns."""
    record = json.loads(path.read_text())
    return pd.DataFrame(
        [
            {
                "step": entry["step"],
                **{
                    f"{task}:{name}": value
                    for task, scores in entry["scores"].items()
                    for name, value in scores.items()
                },
            }
            for entry in record["dev_history"]
        ]
    )


def wide(
    index: list[str], column: str = "metric", select: Callable[[pd.DataFrame], pd.DataFrame] = lambda table: table
) -> Callable[[Path], pd.DataFrame]:
    """A reader of a long results file (``value, ci_low, ci_high`` per row) into one row per ``index``, with a
    ``<name>`` and ``<name> CI`` column for each value of ``column``, rows in file order (after ``select``).

    >>> long = pd.DataFrame({"arm": ["a", "a"], "metric": ["rmse", "mae"], "value": [1.0, 0.5],
    ...                      "ci_low": [0.9, 0.4], "ci_high": [1.1, 0.6]})
    >>> long.to_csv("/tmp/_wide.csv", index=False)
    >>> wide(["arm"])(Path("/tmp/_wide.csv")).to_dict("records")
    [{'arm': 'a', 'rmse': 1.0, 'rmse CI': '[0.900, 1.100]', 'mae': 0.5, 'mae CI': '[0.400, 0.600]'}]
    """

    def read(path: Path) -> pd.DataFrame:
        table = select(pd.read_csv(path))
        rows = {}
        for _, row in table.iterrows():
            key = tuple(row[i] for i in index)
            entry = rows.setdefault(key, dict(zip(index, key)))
            entry[row[column]] = row["value"]
            entry[f"{row[column]} CI"] = interval(row["ci_low"], row["ci_high"])
        return pd.DataFrame(list(rows.values()))

    return read


def with_intervals(*pairs: tuple[str, str, str]) -> Callable[[Path], pd.DataFrame]:
    """A reader that adds an interval column ``name`` from each ``(name, low, high)`` column pair."""

    def read(path: Path) -> pd.DataFrame:
        table = pd.read_csv(path)
        for name, low, high in pairs:
            if {low, high} <= set(table.columns):  # else the table is stale (render_table says so)
                table[name] = [interval(a, b) for a, b in zip(table[low], table[high])]
        return table

    return read


def roofline_errors(path: Path) -> pd.DataFrame:
    """The roofline's relative error on its held-out passes, per source (the notebook's side-by-side timings at
    each thread count, or an older benchmark record: never pooled, they were timed at other times and loads):
    passes, mean and max |error|."""
    table = pd.read_csv(path)
    held_out = table[table.role == "held out"].assign(error=lambda t: t.rel_error.abs())
    return held_out.groupby(["source", "threads"], sort=False).error.agg(["count", "mean", "max"]).reset_index()
