"""Cost models for LLM deployment and evaluation (after Aryan et al., "The Costly Dilemma", 2023).

* :mod:`~workbench.cost.prices`: hosted-API cost per request from a dated price table.
* :mod:`~workbench.cost.hardware`: accelerator specs and $/hour; this CPU measured.
* :mod:`~workbench.cost.roofline`: prefill/decode time from FLOPs and bytes, calibrated on
  measurements.
* :mod:`~workbench.cost.deployment`: self-hosting cost per request, metric-aware decoding
  overhead, API-vs-self-hosting break-even, Pareto front.
* :mod:`~workbench.cost.evaluation_cost`: metric compute and human-rating budgets, labelled-set size
  for a confidence interval.
* :mod:`~workbench.cost.hosting`: API and self-hosting cost tables, break-even volumes, overheads.
* :mod:`~workbench.cost.timing`: fresh timings of forward passes and decoding methods (measured).
* :mod:`~workbench.cost.records`: benchmark records read back (the calibrated roofline).
* :mod:`~workbench.cost.tradeoffs`: quality against cost and the Pareto front.
* :mod:`~workbench.cost.generalization`: how a model carries over to a data set it was not trained on.
* :mod:`~workbench.cost.stage_grid`, :mod:`~workbench.cost.stage_scoring`: the scorecard's stages (arms trained
  through the recipe) and their answers on every set.
* :mod:`~workbench.cost.item_budget`: evaluation cost by subsampling the evaluated items.
* :mod:`~workbench.cost.orthogonality`: whether the scorecard's axes move together, grouping respected.
* :mod:`~workbench.cost.quality_adjusted`: cost per correct answer, stages against APIs.
* :mod:`~workbench.cost.plots`: the plots (each takes an Axes and returns it).
"""

from workbench.cost._table import CostTableError
from workbench.cost.deployment import (
    HOURS_PER_MONTH,
    BreakEven,
    InferenceCost,
    break_even,
    greedy_cost,
    grid_cost,
    mbr_cost,
    pareto_front,
    pareto_mask,
    roofline_requests_per_s,
    sampling_cost,
    self_hosted_usd_per_1m_tokens,
    self_hosted_usd_per_request,
)
from workbench.cost.evaluation_cost import (
    BootstrapScaling,
    MetricCost,
    ci_half_width,
    evaluation_cost_table,
    fit_bootstrap_scaling,
    human_rating_budget,
    items_for_half_width,
    metric_usd_per_1000,
)
from workbench.cost.hardware import Hardware, get_hardware, load_hardware, measure_cpu
from workbench.cost.prices import ApiPrice, api_price, load_api_prices
from workbench.cost.roofline import Efficiency, Measurement, ModelShape, Roofline, calibrate

__all__ = [
    "HOURS_PER_MONTH",
    "ApiPrice",
    "BootstrapScaling",
    "BreakEven",
    "CostTableError",
    "Efficiency",
    "Hardware",
    "InferenceCost",
    "Measurement",
    "MetricCost",
    "ModelShape",
    "Roofline",
    "api_price",
    "break_even",
    "calibrate",
    "ci_half_width",
    "evaluation_cost_table",
    "fit_bootstrap_scaling",
    "get_hardware",
    "greedy_cost",
    "grid_cost",
    "human_rating_budget",
    "items_for_half_width",
    "load_api_prices",
    "load_hardware",
    "mbr_cost",
    "measure_cpu",
    "metric_usd_per_1000",
    "pareto_front",
    "pareto_mask",
    "roofline_requests_per_s",
    "sampling_cost",
    "self_hosted_usd_per_1m_tokens",
    "self_hosted_usd_per_request",
]
