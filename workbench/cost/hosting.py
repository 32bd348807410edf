"""Cost tables: API cost per request, self-hosting options (measured or roofline-predicted),
break-even volumes, and the extra cost of metric-aware inference.

>>> option = HostingOption("box", usd_per_hour=3.6, seconds_per_request={1: 0.5, 4: 1.0})
>>> option.usd_per_request(4), round(option.usd_per_request(2), 6)   # N=2 interpolates on log N
(0.001, 0.00075)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from workbench.cost.deployment import (
    HOURS_PER_MONTH,
    break_even,
    greedy_cost,
    grid_cost,
    mbr_cost,
    sampling_cost,
    self_hosted_usd_per_request,
)
from workbench.cost.hardware import Hardware, load_hardware
from workbench.cost.prices import ApiPrice, load_api_prices
from workbench.cost.roofline import Efficiency, ModelShape, Roofline


def api_cost_table(
    input_tokens: float, output_tokens: float, n: int = 1, prices: Sequence[ApiPrice] | None = None
) -> pd.DataFrame:
    """Cost per request and per 1,000 requests of every API in a price table.

    Args:
        input_tokens: prompt tokens per request.
        output_tokens: tokens per answer.
        n: answers per request; the prompt is billed once and every answer's tokens (as with
            OpenAI's ``n`` parameter).
        prices: the price rows; None reads the packaged, dated table.
    """
    rows = [
        {
            "api": f"{p.provider}/{p.model}",
            "price_date": p.price_date,
            "input_usd_per_1m": p.input_usd_per_1m,
            "output_usd_per_1m": p.output_usd_per_1m,
            "usd_per_request": p.cost(input_tokens, n * output_tokens),
        }
        for p in (prices if prices is not None else load_api_prices())
    ]
    table = pd.DataFrame(rows)
    table["usd_per_1000"] = 1000 * table["usd_per_request"]
    return table.sort_values("usd_per_request", ignore_index=True)


@dataclass(frozen=True)
class HostingOption:
    """A machine that serves the model, and how long a request takes on it.

    Attributes:
        name: e.g. "this-cpu (measured)" or "h100-sxm (roofline)".
        usd_per_hour: its price.
        seconds_per_request: samples per request N -> machine seconds per request (N = 1: one
            answer). Between listed N it is interpolated linearly on log N.
        source: where the seconds come from.
    """

    name: str
    usd_per_hour: float
    seconds_per_request: dict[int, float]
    source: str = ""

    def seconds(self, n: int = 1) -> float:
        """Machine seconds per request with ``n`` samples."""
        ns = sorted(self.seconds_per_request)
        if not ns[0] <= n <= ns[-1]:
            raise ValueError(f"{self.name}: N={n} outside the timed range {ns[0]}..{ns[-1]}")
        return float(np.interp(np.log(n), np.log(ns), [self.seconds_per_request[k] for k in ns]))

    def requests_per_s(self, n: int = 1) -> float:
        return 1.0 / self.seconds(n)

    def usd_per_request(self, n: int = 1, utilisation: float = 1.0) -> float:
        return self_hosted_usd_per_request(self.usd_per_hour, self.requests_per_s(n), utilisation)


def roofline_seconds_per_request(
    roofline: Roofline, prompt_tokens: int, new_tokens: int, n: int = 1, rows: int = 64
) -> float:
    """Predicted machine seconds per request with N samples each, batching requests statically.

    ``max(1, rows // n)`` requests share a batch: each prompt is prefilled once and its KV cache
    copied into N rows (shared prefill), and all rows decode together.
    """
    prompts = max(1, rows // n)
    return roofline.generate_time(prompt_tokens, new_tokens, batch=prompts * n, prefill_batch=prompts) / prompts


def roofline_options(
    shape: ModelShape,
    efficiency: Efficiency,
    prompt_tokens: int,
    new_tokens: int,
    ns: Sequence[int],
    rows: int = 64,
    hardware: dict[str, Hardware] | None = None,
) -> list[HostingOption]:
    """One :class:`HostingOption` per priced machine of the hardware table, timed by the roofline.

    Args:
        shape: the model (its dtype picks the peak used).
        efficiency: achieved fractions of the peaks and overhead per pass; for hardware that was
            never measured this is an assumption, to be replaced by :func:`~workbench.cost.calibrate`
            on timings from that machine.
        prompt_tokens: prompt length.
        new_tokens: tokens per answer.
        ns: sample counts to tabulate.
        rows: sequences decoded together.
        hardware: name -> specs; None reads the packaged table. Machines without a price are skipped.
    """
    options = []
    for name, machine in (hardware if hardware is not None else load_hardware()).items():
        if machine.usd_per_hour is None:
            continue
        roofline = Roofline(shape, machine, efficiency)
        seconds = {n: roofline_seconds_per_request(roofline, prompt_tokens, new_tokens, n, rows) for n in ns}
        options.append(
            HostingOption(
                f"{name} (roofline)",
                machine.usd_per_hour,
                seconds,
                f"roofline, {shape.dtype}, {rows} rows, assumed efficiency",
            )
        )
    return options


def hosting_table(options: Sequence[HostingOption], n: int = 1, utilisation: float = 1.0) -> pd.DataFrame:
    """Throughput and cost per 1,000 requests of each hosting option at ``n`` samples per request."""
    return pd.DataFrame(
        [
            {
                "hosting": o.name,
                "source": o.source,
                "usd_per_hour": o.usd_per_hour,
                "requests_per_s": o.requests_per_s(n),
                "usd_per_1000": 1000 * o.usd_per_request(n, utilisation),
            }
            for o in options
        ]
    )


def break_even_table(
    apis: pd.DataFrame, options: Sequence[HostingOption], n: int = 1, utilisation: float = 1.0
) -> pd.DataFrame:
    """Monthly volume at which each hosting option becomes cheaper than each API.

    Args:
        apis: from :func:`api_cost_table` (columns api, usd_per_request), priced for the same N.
        options: hosting options.
        n: samples per request.
        utilisation: average share of a machine's throughput the traffic fills.

    Returns:
        One row per (API, hosting): both costs per 1,000 requests, the break-even volume in
        requests per month (inf where the API stays cheaper) and the monthly capacity of one
        machine.
    """
    rows = []
    for _, api in apis.iterrows():
        for option in options:
            result = break_even(api.usd_per_request, option.usd_per_hour, option.requests_per_s(n), utilisation)
            rows.append(
                {
                    "api": api.api,
                    "hosting": option.name,
                    "n": n,
                    "api_usd_per_1000": 1000 * api.usd_per_request,
                    "self_hosted_usd_per_1000_at_capacity": 1000 * option.usd_per_request(n, utilisation),
                    "machine_usd_per_month": option.usd_per_hour * HOURS_PER_MONTH,
                    "break_even_requests_per_month": result.volume,
                    "capacity_requests_per_month": option.requests_per_s(n) * utilisation * 3600 * HOURS_PER_MONTH,
                }
            )
    return pd.DataFrame(rows)


def overhead_table(
    roofline: Roofline,
    prompt_tokens: int,
    new_tokens: int,
    ns: Sequence[int],
    candidates: int,
    seconds_per_utility: float | None = None,
) -> pd.DataFrame:
    """Predicted machine seconds per prompt of metric-aware inference, against greedy decoding.

    Rows: greedy; N samples with one shared prefill; N samples from N prompt copies (what
    ``generate(num_return_sequences=N)`` does); exact scoring of the ``candidates`` grid answers;
    and, when ``seconds_per_utility`` is given, MBR on N samples (N x N utilities on top).
    All requests run one at a time (batch 1), the worst case for the extra rows.
    """
    entries = [
        ("greedy", 1, greedy_cost(roofline, prompt_tokens, new_tokens)),
        ("exact grid scoring", candidates, grid_cost(roofline, prompt_tokens, candidates)),
    ]
    for n in ns:
        entries.append(("sample, shared prefill", n, sampling_cost(roofline, prompt_tokens, new_tokens, n)))
        entries.append(
            ("sample, N prompt copies", n, sampling_cost(roofline, prompt_tokens, new_tokens, n, shared_prefill=False))
        )
        if seconds_per_utility is not None:
            entries.append(
                ("MBR (+ N^2 utilities)", n, mbr_cost(roofline, prompt_tokens, new_tokens, n, seconds_per_utility))
            )
    greedy_s = entries[0][2].total_s
    return pd.DataFrame(
        [
            {
                "method": m,
                "n": n,
                "model_s": c.model_s,
                "utility_s": c.utility_s,
                "total_s": c.total_s,
                "x_greedy": c.total_s / greedy_s,
            }
            for m, n, c in entries
        ]
    )
