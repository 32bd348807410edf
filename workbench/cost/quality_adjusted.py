"""Cost adjusted for quality: what one *correct* answer costs, for every stage and every API, and the break-even.

A cheaper wrong answer is not a saving. Each option's price per request is divided by its accuracy on
the same task (SST-5 exact-mode accuracy), giving US$ per 1,000 correct answers; the break-even between
an API and self-hosting is then solved in correct answers per month (the API's price per correct
answer against a machine whose capacity counts only its correct answers). Stage accuracies are
**measured** here; API accuracies are not (no network): each comes with its source, a published figure
or an explicit ``ASSUMED`` note, and the table says which.

>>> round(usd_per_correct(0.002, 0.5), 4)   # half the answers right: every right one costs two requests
0.004
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from workbench.cost.deployment import break_even
from workbench.cost.evaluation_cost import metric_usd_per_1000
from workbench.cost.hosting import api_cost_table
from workbench.cost.tradeoffs import with_pareto
from workbench.tasks.grid import snap_to_grid

# Why the APIs' SST-5 accuracy is an assumption here (the quality_source of their rows).
API_QUALITY_NOTE = (
    "no API was run here (no network) and no published SST-5 accuracy of these models was checked offline; "
    "fine-tuned BERT-base's published 0.53 is the nearest anchor"
)


def usd_per_correct(usd_per_request: float, accuracy: float) -> float:
    """US$ per correct answer (inf when nothing is answered correctly)."""
    return usd_per_request / accuracy if accuracy > 0 else math.inf


def adjusted_costs(
    scores,
    grid,
    accuracy_set: str,
    api_accuracy: Mapping[str, tuple[float, str]],
    prompt_tokens: int,
    answer_tokens: int,
    usd_per_hour: float,
    utilisation: float,
    prior: float,
) -> pd.DataFrame:
    """Every stage (measured) and every API of the price table, cost per 1,000 requests and per 1,000 correct answers.

    Args:
        scores: :class:`workbench.cost.scorecard.StageScores` (``modes`` and ``seconds_per_request``).
        grid: the answer grid of ``accuracy_set`` (gold values are snapped onto it).
        accuracy_set: the set whose exact-mode accuracy is the quality.
        api_accuracy: API name (``provider/model``) -> (accuracy, source); an API not named has no quality
            figure and is left out rather than assumed equal to anything.
        prompt_tokens, answer_tokens: one request, as the APIs would bill it.
        usd_per_hour, utilisation: this machine's price and the share of it traffic fills.
        prior: the constant prior's answer (the trivial baseline's accuracy, at no cost).

    Returns:
        One row per option: name, kind, accuracy, quality_source, usd_per_1000, usd_per_1000_correct,
        seconds_per_request (stages), and ``pareto`` over (accuracy, usd_per_1000_correct).
    """
    grid = np.asarray(grid, float)
    gold = snap_to_grid(np.asarray(scores[0].gold[accuracy_set], float), grid)
    rows = [
        {
            "name": "constant prior (trivial baseline)",
            "kind": "baseline",
            "accuracy": float(np.mean(gold == snap_to_grid(np.array([prior]), grid)[0])),
            "quality_source": f"measured here, {len(gold)} items",
            "usd_per_1000": 0.0,
        }
    ]
    for s in scores:
        rows.append(
            {
                "name": s.stage,
                "kind": "stage (measured)",
                "accuracy": float(np.mean(np.asarray(s.modes[accuracy_set], float) == gold)),
                "quality_source": f"measured here, {len(gold)} items",
                "usd_per_1000": metric_usd_per_1000(s.seconds_per_request, usd_per_hour, utilisation),
                "seconds_per_request": s.seconds_per_request,
            }
        )
    apis = api_cost_table(prompt_tokens, answer_tokens)
    for api in apis.itertuples():
        if api.api in api_accuracy:
            accuracy, source = api_accuracy[api.api]
            rows.append(
                {
                    "name": api.api,
                    "kind": "API (price dated " + str(api.price_date) + ")",
                    "accuracy": float(accuracy),
                    "quality_source": source,
                    "usd_per_1000": float(api.usd_per_1000),
                }
            )
    table = pd.DataFrame(rows)
    table["usd_per_1000_correct"] = [usd_per_correct(c, a) for c, a in zip(table.usd_per_1000, table.accuracy)]
    return with_pareto(table, "accuracy", "usd_per_1000_correct", lower_is_better=False)


def adjusted_break_even(costs: pd.DataFrame, stages, apis, usd_per_hour: float, utilisation: float) -> pd.DataFrame:
    """Break-even volumes in correct answers per month: each API's price per correct answer against this machine
    running each stage, whose capacity counts only its correct answers.

    Args:
        costs: :func:`adjusted_costs`.
        stages, apis: names of rows of ``costs`` to pair.

    Returns:
        One row per (stage, api): the break-even in millions of correct answers per month (inf: the API stays
        cheaper at any volume), and the same without the quality adjustment (requests) beside it.
    """
    by_name = costs.set_index("name")
    rows = []
    for stage in stages:
        own = by_name.loc[stage]
        per_s = 1 / own.seconds_per_request
        for api in apis:
            other = by_name.loc[api]
            # A stage that answers nothing correctly never delivers a correct answer: no volume breaks even.
            adjusted = (
                break_even(other.usd_per_1000_correct / 1000, usd_per_hour, per_s * own.accuracy, utilisation).volume
                if own.accuracy > 0
                else np.inf
            )
            plain = break_even(other.usd_per_1000 / 1000, usd_per_hour, per_s, utilisation)
            rows.append(
                {
                    "stage": stage,
                    "api": api,
                    "stage_accuracy": own.accuracy,
                    "api_accuracy": other.accuracy,
                    "break_even_million_correct_per_month": adjusted / 1e6,
                    "break_even_million_requests_per_month (unadjusted)": plain.volume / 1e6,
                }
            )
    return pd.DataFrame(rows)
