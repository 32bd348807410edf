"""The documents' one rounding rule and the cells built from it.

Every number of ``docs/results.md`` and the README passes through :func:`format_number`, so a test can
check each against the results files (``tests/test_report.py``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def format_number(value, decimals: int = 3) -> str:
    """A result value as the documents show it: integers whole, other numbers to ``decimals`` places.

    >>> format_number(2210), format_number(0.82753), format_number(1.5e-18), format_number(0.0043, 4)
    ('2210', '0.828', '0.000', '0.0043')
    >>> format_number(float("nan")), format_number(True), format_number("[0.803, 0.855]"), format_number("[nan, nan]")
    ('', 'yes', '[0.803, 0.855]', '')
    """
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, str):
        return "" if value == "[nan, nan]" else value  # the interval of an undefined statistic
    if value is None or pd.isna(value):
        return ""
    if isinstance(value, int | np.integer) or (float(value).is_integer() and abs(value) >= 1):
        return str(int(value))
    return f"{value:.{decimals}f}"


def interval(low, high) -> str:
    """An interval cell as the results files write them: ``[low, high]`` to three places (empty when undefined).

    >>> interval(0.80312, 0.8551), interval(float("nan"), 1.0)
    ('[0.803, 0.855]', '[nan, nan]')
    """
    if pd.isna(low) or pd.isna(high):
        return "[nan, nan]"
    return f"[{format_number(low)}, {format_number(high)}]"


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])
