"""Answer parsers: turn a model's free-text answer into the number a metric needs.

Parsers return None when no answer can be found, so callers can count invalid samples instead
of silently dropping them.

>>> parse_number("I'd say 4.")
4.0
>>> parse_number("The score is 3.8 out of 5")
3.8
>>> parse_number("no idea") is None
True
>>> parse_rating("Rating: 4 stars", low=1, high=5)
4.0
>>> parse_rating("7", low=1, high=5) is None
True
>>> parse_gsm8k("She pays 3 * 4 = 12 dollars. The answer is 1,234.")
1234.0
>>> parse_gsm8k("Natalia sold 48/2 = <<48/2=24>>24 clips.\\n#### 72")
72.0
"""

from __future__ import annotations

import re

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def _to_float(token: str) -> float | None:
    try:
        return float(token.replace(",", ""))
    except ValueError:
        return None


def parse_number(text: str) -> float | None:
    """The first number in ``text`` (thousands separators allowed), or None."""
    match = _NUMBER.search(text)
    return _to_float(match.group()) if match else None


def parse_rating(text: str, low: float, high: float) -> float | None:
    """The first number in ``text`` if it lies in [low, high], else None."""
    value = parse_number(text)
    return value if value is not None and low <= value <= high else None


def parse_gsm8k(text: str) -> float | None:
    """The final answer of a worked solution.

    Looks, in order, for "#### X" (the data set's own format), "answer is X", then the last number.
    """
    for pattern in (r"####\s*\$?\s*(-?[\d,]*\.?\d+)", r"answer is[:\s]*\$?\s*(-?[\d,]*\.?\d+)"):
        found = re.findall(pattern, text, flags=re.IGNORECASE)
        if found:
            return _to_float(found[-1])
    numbers = _NUMBER.findall(text)
    return _to_float(numbers[-1]) if numbers else None
