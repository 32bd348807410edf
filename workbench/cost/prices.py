"""What a hosted API charges per request, from a dated price table.

The packaged table ``workbench/data/api_prices.csv`` is a snapshot: every row carries the date its
price was published and the page it came from, and must be re-checked before use. Pass your own
CSV (same columns) wherever a ``path`` is accepted.

>>> price = ApiPrice("Acme", "acme-small", 0.15, 0.60, "2025-01-01", "https://acme.test/pricing")
>>> round(price.cost(input_tokens=1000, output_tokens=200), 6)   # 1000 * 0.15e-6 + 200 * 0.60e-6
0.00027
>>> round(price.cost_per_1000(1000, 200), 4)
0.27
>>> api_price("gpt-4o-mini").provider   # from the packaged table
'OpenAI'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workbench.cost._table import month_or_day, number, packaged, read_cost_table

PRICES_FILE = "api_prices.csv"


@dataclass(frozen=True)
class ApiPrice:
    """One model's list price.

    Attributes:
        provider: e.g. "OpenAI".
        model: the provider's model name, e.g. "gpt-4o-mini".
        input_usd_per_1m: US$ per 1 million prompt tokens.
        output_usd_per_1m: US$ per 1 million generated tokens.
        price_date: when this price was published, "YYYY-MM-DD" or "YYYY-MM".
        source_url: the price page.
        note: caveats (snapshot, context-length tier, ...).
    """

    provider: str
    model: str
    input_usd_per_1m: float
    output_usd_per_1m: float
    price_date: str
    source_url: str
    note: str = ""

    def cost(self, input_tokens, output_tokens):
        """US$ per request; broadcasts over arrays of token counts.

        Args:
            input_tokens: prompt tokens per request (scalar or array).
            output_tokens: generated tokens per request (scalar or array).
        """
        usd = (
            np.asarray(input_tokens, float) * self.input_usd_per_1m
            + np.asarray(output_tokens, float) * self.output_usd_per_1m
        ) / 1e6
        return float(usd) if usd.ndim == 0 else usd

    def cost_per_1000(self, input_tokens, output_tokens):
        """US$ per 1,000 requests of the given size."""
        return self.cost(input_tokens, output_tokens) * 1000


def load_api_prices(path: str | Path | None = None) -> list[ApiPrice]:
    """All rows of a price table.

    Args:
        path: a CSV with columns provider, model, input_usd_per_1m, output_usd_per_1m,
            price_date, source_url (and optionally note); None reads the packaged table.

    Raises:
        CostTableError: naming the file and line of a malformed row.
    """
    rows = read_cost_table(
        path or packaged(PRICES_FILE),
        required={
            "provider": str,
            "model": str,
            "input_usd_per_1m": number,
            "output_usd_per_1m": number,
            "price_date": month_or_day,
            "source_url": str,
        },
        optional={"note": str},
    )
    return [ApiPrice(**{**row, "note": row["note"] or ""}) for row in rows]


def api_price(model: str, path: str | Path | None = None) -> ApiPrice:
    """The price of ``model``, looked up by model name or as "provider/model" (case-insensitive).

    Raises:
        KeyError: listing the models the table has, when ``model`` is not one of them or when
            the bare name is ambiguous across providers.
    """
    prices = load_api_prices(path)
    wanted = model.lower()
    matches = [p for p in prices if wanted in (p.model.lower(), f"{p.provider}/{p.model}".lower())]
    if len(matches) != 1:
        known = sorted(f"{p.provider}/{p.model}" for p in prices)
        problem = "is ambiguous" if matches else "is not in the price table"
        raise KeyError(f"{model!r} {problem}; the table has {known}")
    return matches[0]
