"""Self-hosting versus an API: cost per request, metric-aware decoding, break-even, Pareto front.

A self-hosted machine costs ``usd_per_hour`` whether busy or not, so its cost per request is
the hourly price over the requests it serves in an hour: throughput x utilisation (the average
fraction of its capacity that traffic fills). Throughput comes either from a measurement or from
a :class:`~workbench.cost.roofline.Roofline`.

>>> round(self_hosted_usd_per_request(usd_per_hour=3.6, requests_per_s=10, utilisation=0.5), 6)
0.0002
>>> result = break_even(api_usd_per_request=0.002, usd_per_hour=1.0, requests_per_s=5)
>>> round(result.volume)            # requests/month where one always-on $1/h machine pays off
365000
>>> pareto_mask(quality=[0.7, 0.8, 0.6, 0.9], cost=[1.0, 2.0, 3.0, 5.0]).tolist()
[True, True, False, True]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from workbench.cost.roofline import Roofline

HOURS_PER_MONTH = 730.0  # 8766 hours a year / 12: an always-on machine's hours in an average month


def self_hosted_usd_per_request(usd_per_hour, requests_per_s, utilisation=1.0):
    """US$ per request on a machine billed by the hour; broadcasts.

    Args:
        usd_per_hour: price of the machine.
        requests_per_s: requests it serves per second when fully busy.
        utilisation: average fraction of that capacity actually used, in (0, 1].
    """
    utilisation = np.asarray(utilisation, float)
    if np.any((utilisation <= 0) | (utilisation > 1)):
        raise ValueError("utilisation must be in (0, 1]")
    usd = np.asarray(usd_per_hour, float) / 3600 / (np.asarray(requests_per_s, float) * utilisation)
    return float(usd) if usd.ndim == 0 else usd


def self_hosted_usd_per_1m_tokens(usd_per_hour, tokens_per_s, utilisation=1.0):
    """US$ per million generated tokens at a measured or predicted ``tokens_per_s``, comparable
    with an API's output price; broadcasts.

    >>> round(self_hosted_usd_per_1m_tokens(usd_per_hour=2.0, tokens_per_s=1000, utilisation=0.5), 4)
    1.1111
    """
    return 1e6 * self_hosted_usd_per_request(usd_per_hour, tokens_per_s, utilisation)


def roofline_requests_per_s(roofline: Roofline, prompt_tokens: int, new_tokens: int, batch: int = 1) -> float:
    """Requests per second when ``batch`` requests are prefilled and decoded together (static batching)."""
    return batch / roofline.generate_time(prompt_tokens, new_tokens, batch)


@dataclass(frozen=True)
class InferenceCost:
    """Machine time one prompt costs under a decoding method.

    Attributes:
        model_s: seconds of forward passes per prompt.
        utility_s: seconds of metric/utility computation per prompt (e.g. MBR's pairwise utilities).
    """

    model_s: float
    utility_s: float = 0.0

    @property
    def total_s(self) -> float:
        return self.model_s + self.utility_s

    def usd(self, usd_per_hour: float, utilisation: float = 1.0) -> float:
        """US$ per prompt on a machine at ``usd_per_hour`` that is busy ``utilisation`` of the time."""
        return self_hosted_usd_per_request(usd_per_hour, 1 / self.total_s, utilisation)

    def relative_to(self, baseline: InferenceCost) -> float:
        """How many times the baseline's time (e.g. greedy's) this method takes."""
        return self.total_s / baseline.total_s


def greedy_cost(roofline: Roofline, prompt_tokens: int, new_tokens: int, batch: int = 1) -> InferenceCost:
    """One answer per prompt, ``batch`` prompts decoded together."""
    return InferenceCost(roofline.generate_time(prompt_tokens, new_tokens, batch) / batch)


def sampling_cost(
    roofline: Roofline,
    prompt_tokens: int,
    new_tokens: int,
    n: int,
    shared_prefill: bool = True,
    utility_calls: int = 0,
    seconds_per_utility: float = 0.0,
) -> InferenceCost:
    """N samples of one prompt, decoded as N rows together, plus the utility computations on them.

    Args:
        roofline: model on machine.
        prompt_tokens: prompt length.
        new_tokens: tokens per sample.
        n: samples.
        shared_prefill: True prefills the prompt once and copies its KV cache into the N rows
            (as :class:`workbench.inference.engine.HFEngine` does); False prefills N copies of the prompt
            (as ``generate(num_return_sequences=N)`` does).
        utility_calls: metric evaluations per prompt (see :func:`mbr_cost`).
        seconds_per_utility: measured seconds per evaluation.
    """
    model_s = roofline.generate_time(prompt_tokens, new_tokens, batch=n, prefill_batch=1 if shared_prefill else n)
    return InferenceCost(model_s, utility_calls * seconds_per_utility)


def mbr_cost(
    roofline: Roofline,
    prompt_tokens: int,
    new_tokens: int,
    n: int,
    seconds_per_utility: float,
    shared_prefill: bool = True,
) -> InferenceCost:
    """Minimum-Bayes-risk decoding: N samples and the full N x N utility matrix
    (``workbench.metric_aware.mbr`` scores every pair, the diagonal included)."""
    return sampling_cost(roofline, prompt_tokens, new_tokens, n, shared_prefill, n * n, seconds_per_utility)


def grid_cost(roofline: Roofline, prompt_tokens: int, candidates: int, candidate_tokens: int = 1) -> InferenceCost:
    """Exact scores of K candidate answers (:meth:`workbench.inference.engine.HFEngine.score`): one
    prefill, then one pass over K rows that feeds each candidate's tokens on the prompt's cache
    and keeps the logits of all of them (the end-of-answer token after them is not fed)."""
    prefill = roofline.prefill_time(1, prompt_tokens)
    rows = roofline.forward_time(candidates, candidate_tokens, prompt_tokens, logits_tokens=candidate_tokens)
    return InferenceCost(prefill + rows)


@dataclass(frozen=True)
class BreakEven:
    """Monthly cost of an API versus self-hosting, as a function of volume.

    Attributes:
        volume: requests per month at which self-hosting becomes cheaper; inf if it never does
            (the API costs less even when a machine is full).
        volumes: (V,) requests per month, for plotting.
        api_usd: (V,) monthly API bill.
        self_hosted_usd: (V,) monthly self-hosting bill (whole machines, always on).
        machines: (V,) machines needed.
    """

    volume: float
    volumes: np.ndarray
    api_usd: np.ndarray
    self_hosted_usd: np.ndarray
    machines: np.ndarray


def break_even(
    api_usd_per_request: float,
    usd_per_hour: float,
    requests_per_s: float,
    utilisation: float = 1.0,
    variable_usd_per_request: float = 0.0,
    hours_per_month: float = HOURS_PER_MONTH,
    volumes=None,
) -> BreakEven:
    """Solve api x V = machine cost + variable x V for the monthly volume V.

    Self-hosting runs at least one machine all month, and one more per ``capacity`` requests,
    ``capacity = requests_per_s x utilisation x 3600 x hours_per_month``. The first crossing is
    ``V = usd_per_hour x hours / (api - variable)`` if a single machine can serve it. (Just past
    each further multiple of the capacity the newly added machine is nearly idle, so in a narrow
    window the API can again be cheaper for the overflow.)

    Args:
        api_usd_per_request: the API's price per request (see :meth:`ApiPrice.cost`).
        usd_per_hour: the machine's price.
        requests_per_s: its throughput when busy (measured, or from a roofline).
        utilisation: average fraction of that throughput the traffic can use, in (0, 1].
        variable_usd_per_request: self-hosting cost that scales with requests (e.g. metric
            compute on other machines), on top of the machines.
        hours_per_month: billed hours per machine-month.
        volumes: (V,) monthly volumes for the curves; default 200 points from 0 to 3 x the
            break-even volume (or 3 machines' capacity when there is none).
    """
    if not 0 < utilisation <= 1:
        raise ValueError("utilisation must be in (0, 1]")
    machine_month = usd_per_hour * hours_per_month
    capacity = requests_per_s * utilisation * 3600 * hours_per_month
    margin = api_usd_per_request - variable_usd_per_request
    volume = machine_month / margin if margin > 0 and machine_month <= margin * capacity else float("inf")
    if volumes is None:
        volumes = np.linspace(0, 3 * (volume if np.isfinite(volume) else capacity), 200)
    volumes = np.asarray(volumes, float)
    machines = np.maximum(1, np.ceil(volumes / capacity))
    return BreakEven(
        volume=volume,
        volumes=volumes,
        api_usd=api_usd_per_request * volumes,
        self_hosted_usd=machines * machine_month + variable_usd_per_request * volumes,
        machines=machines,
    )


def pareto_mask(quality, cost) -> np.ndarray:
    """Which points no other point dominates (higher quality is better, lower cost is better).

    A point is dominated when another has cost <= and quality >=, one of them strictly. Equal
    points do not dominate each other; points with a NaN are never on the front. O(n log n).

    Args:
        quality: (n,) e.g. accuracy; negate a metric where lower is better.
        cost: (n,) e.g. US$ per 1,000 requests.

    Returns:
        (n,) boolean mask of the non-dominated points.
    """
    quality, cost = np.asarray(quality, float), np.asarray(cost, float)
    if quality.shape != cost.shape or quality.ndim != 1:
        raise ValueError(f"quality and cost must be 1-d of the same length, got {quality.shape} and {cost.shape}")
    mask = np.zeros(len(quality), dtype=bool)
    valid = np.flatnonzero(np.isfinite(quality) & np.isfinite(cost))
    if not len(valid):
        return mask
    order = valid[np.lexsort((-quality[valid], cost[valid]))]  # cost up, then quality down
    q, c = quality[order], cost[order]
    first_same_cost = np.searchsorted(c, c, side="left")
    running_best = np.maximum.accumulate(q)
    best_cheaper = np.where(first_same_cost > 0, running_best[first_same_cost - 1], -np.inf)
    # Within a cost, quality is sorted down, so the first of the group is the group's best.
    dominated = (best_cheaper >= q) | (q[first_same_cost] > q)
    mask[order] = ~dominated
    return mask


def pareto_front(table: pd.DataFrame, quality: str, cost: str) -> pd.DataFrame:
    """The non-dominated rows of ``table`` (see :func:`pareto_mask`), cheapest first."""
    return table[pareto_mask(table[quality].to_numpy(), table[cost].to_numpy())].sort_values(cost)
