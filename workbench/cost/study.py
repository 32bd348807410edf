"""The cost study of notebook 07 (its sections 1-4) on one model: what one request costs, measured and predicted.

:class:`CostStudy` runs the steps of :mod:`workbench.cost.study_steps` in order (the workload, timing
the stages, hosting options, the extra cost of metric-aware inference, the roofline checked on this
CPU, break-even volumes, the quality/cost front, what evaluation costs), keeping what a later step
needs; :class:`Assumptions` holds the prices and shares it assumes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from workbench.cost.deployment import break_even
from workbench.cost.evaluation_cost import (
    evaluation_cost_table,
)
from workbench.cost.hardware import get_hardware
from workbench.cost.hosting import (
    HostingOption,
    api_cost_table,
    hosting_table,
    roofline_options,
)
from workbench.cost.plots import plot_break_even
from workbench.cost.prices import api_price
from workbench.cost.roofline import Efficiency, ModelShape, Roofline
from workbench.cost.study_steps import (
    break_even_volumes,
    cpu_roofline_from_record,
    evaluation_metrics,
    label_budget,
    mbr_utility_seconds,
    measured_multiples,
    overhead_side_by_side,
    quality_cost_front,
    request_tokens,
    rmse_seconds_per_item,
    roofline_validation,
    time_and_decode_stages,
    usd_per_1000,
)
from workbench.lifecycle.stages import VARIANTS, load_stage
from workbench.metric_aware.experiments import RunConfig, strategy_predictions
from workbench.tasks import get_task


@dataclass(frozen=True)
class Assumptions:
    """The prices and shares the study assumes (notebook 07's parameters cell states each).

    Attributes:
        machine_usd_per_hour: price of the machine the timings were taken on.
        gpu_efficiency: :class:`Efficiency` fields assumed for GPUs that were never measured.
        gpu_rows: sequences a GPU decodes together.
        utilisation: average share of a machine's capacity that real traffic fills.
        human_usd_per_rating: price of one human rating of a short text.
        ratings_per_item: human ratings per evaluation item.
        reference_usd_per_item: price of one human-written reference answer.
    """

    machine_usd_per_hour: float
    gpu_efficiency: Mapping[str, float]
    gpu_rows: int
    utilisation: float
    human_usd_per_rating: float
    ratings_per_item: int
    reference_usd_per_item: float

    @classmethod
    def from_parameters(cls, params: Mapping) -> Assumptions:
        """From upper-case parameter names (``MACHINE_USD_PER_HOUR``, ...), e.g. a notebook's ``globals()``."""
        return cls(**{name: params[name.upper()] for name in cls.__dataclass_fields__})

    @property
    def label_usd_per_item(self) -> float:
        """Human ratings of one evaluation item."""
        return self.human_usd_per_rating * self.ratings_per_item

    @property
    def efficiency(self) -> Efficiency:
        return Efficiency(**self.gpu_efficiency)


@dataclass
class CostStudy:
    """Notebook 07's sections 1-4 on one model: each method is one step, its results kept for the next.

    Args:
        model: the base model whose stages (``base-<variant>``) are costed.
        dtype: the reference stage's variant (``base-<dtype>``), whose timings price the cost model.
        device: where the stages decode.
        sizes: the notebook's profile section (items, shots, k, ns, stages, time_prompts, time_repeats).
        assumptions: prices and shares.
        seed: items, demonstrations and samples.
        resamples: bootstrap resamples.
        on_model: called with the fingerprint of every stage loaded (a run records them).
    """

    model: str
    dtype: str
    device: str
    sizes: Mapping
    assumptions: Assumptions
    seed: int = 0
    resamples: int = 1000
    on_model: Callable[[dict], None] = lambda fingerprint: None

    def __post_init__(self):
        self.task = get_task("sst5")
        self.ns = list(self.sizes["ns"])
        self.reference = f"base-{self.dtype}"
        self.stages = ([self.reference] + [f"base-{v}" for v in VARIANTS if v != self.dtype])[: self.sizes["stages"]]
        self.items = self.task.examples("test", limit=self.sizes["items"], seed=self.seed)
        self.reference_cpu = load_stage(
            self.reference, device="cpu", base_model=self.model
        )  # tokenizer, shape, CPU timings
        demonstrations = self.task.fewshot(self.sizes["shots"], seed=self.seed)
        self.prompts = self.task.prompts(self.items, self.reference_cpu.tokenizer, demonstrations)
        self.prompt_tokens, self.answer_tokens = request_tokens(
            self.reference_cpu.tokenizer, self.prompts, self.task.candidates
        )
        self.shape = ModelShape.from_model(self.reference_cpu.model)
        self.shape_bf16 = ModelShape.from_config(self.reference_cpu.model.config, dtype="bf16")

    def api_costs(self) -> pd.DataFrame:
        """What every API of the price table charges for one request (one answer)."""
        return api_cost_table(self.prompt_tokens, self.answer_tokens)

    def time_stages(self) -> pd.DataFrame:
        """Time and decode every stage of the quality/cost front; the timing table (measured), with US$ per 1,000."""
        config = RunConfig(limit=self.sizes["items"], shots=self.sizes["shots"], k=self.sizes["k"], seed=self.seed)
        self.timings, self.runs = time_and_decode_stages(
            self.stages,
            self.model,
            self.device,
            self.task,
            self.prompts,
            config,
            self.ns,
            self.sizes["time_prompts"],
            self.sizes["time_repeats"],
            self.on_model,
        )
        self.timing = pd.concat(self.timings, names=["stage"]).reset_index(level=0)
        self.timing["usd_per_1000"] = usd_per_1000(self.timing.seconds_per_item, self.assumptions.machine_usd_per_hour)
        return self.timing

    def hosting(self, threads: int) -> pd.DataFrame:
        """Hosting options (this machine, measured; priced GPUs, roofline) at N = 1 and the largest N; prints the CPU
        roofline's source."""
        self.record, self.cpu_roofline, message = cpu_roofline_from_record(self.shape, threads)
        print(message)
        price = self.assumptions.machine_usd_per_hour
        sampled = self.timings[self.reference].query("method == 'sample'").set_index("n").seconds_per_item.to_dict()
        self.measured = HostingOption(
            f"this machine, {self.reference} (measured)", price, sampled, f"HFEngine timings at an assumed ${price}/h"
        )
        gpus = roofline_options(
            self.shape_bf16,
            self.assumptions.efficiency,
            self.prompt_tokens,
            self.answer_tokens,
            self.ns,
            rows=self.assumptions.gpu_rows,
        )
        self.options = [self.measured] + gpus
        return pd.concat(
            [hosting_table(self.options, n, self.assumptions.utilisation).assign(n=n) for n in (1, self.ns[-1])],
            ignore_index=True,
        )

    def overhead(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(the reference stage's measured multiples of greedy, measured and predicted multiples side by side)."""
        self.utility_s, message = mbr_utility_seconds("chrf")
        print(message)
        rooflines = {"this CPU roofline (calibrated)": self.cpu_roofline} if self.cpu_roofline is not None else {}
        rooflines["H100 roofline (assumed efficiency)"] = Roofline(
            self.shape_bf16, get_hardware("h100-sxm"), self.assumptions.efficiency
        )
        measured = measured_multiples(self.timing.query("stage == @self.reference"))
        return measured, overhead_side_by_side(
            measured,
            rooflines,
            self.prompt_tokens,
            self.answer_tokens,
            self.ns[1:],
            len(self.task.grid),
            self.utility_s,
        )

    def validate_roofline(self, threads: Sequence[int], passes: Sequence, repeats: int) -> tuple[pd.DataFrame, str]:
        """(the roofline's validation rows, a summary): see :func:`roofline_validation`."""
        validation, _, summary = roofline_validation(
            self.reference_cpu.model, self.shape, passes, threads, repeats, self.seed, self.record, self.cpu_roofline
        )
        return validation, summary

    def break_even(self) -> pd.DataFrame:
        """Break-even volumes of every API against every hosting option at N = 1 and the largest N."""
        return break_even_volumes(
            self.prompt_tokens, self.answer_tokens, self.options, (1, self.ns[-1]), self.assumptions.utilisation
        )

    def plot_break_even(self, ax, option: HostingOption, api: str):
        """Monthly bills of ``api`` (a row of the price table) and of ``option`` against volume, at N = 1; returns
        ``ax``."""
        price = api_price(api)
        result = break_even(
            price.cost(self.prompt_tokens, self.answer_tokens),
            option.usd_per_hour,
            option.requests_per_s(1),
            self.assumptions.utilisation,
        )
        plot_break_even(ax, result, f"{api} ({price.price_date})", option.name)
        ax.set_title(
            f"{option.name}: ${option.usd_per_hour}/h at {self.assumptions.utilisation:.0%} utilisation", fontsize=9
        )
        return ax

    def quality_cost(self) -> pd.DataFrame:
        """The quality/cost points of every stage and decoding method, with the Pareto set."""
        return quality_cost_front(self.runs, self.timings, self.ns, self.assumptions.machine_usd_per_hour)

    def evaluation_costs(self) -> pd.DataFrame:
        """Compute and reference costs of two reference-based metrics and two reference-free checks."""
        run = self.runs[self.reference]
        exact_s = self.timing.query("stage == @self.reference and method == 'exact'").seconds_per_item.iloc[0]
        rmse_s = rmse_seconds_per_item(strategy_predictions(run)["exact mean"].predictions, run.gold)
        metrics = evaluation_metrics(
            rmse_s,
            self.utility_s,
            exact_s,
            self.ns[-1],
            self.assumptions.label_usd_per_item,
            self.assumptions.reference_usd_per_item,
        )
        return evaluation_cost_table(metrics, self.assumptions.machine_usd_per_hour)

    def label_budget(self, half_widths: Sequence[float]) -> tuple[pd.DataFrame, object, pd.DataFrame, float]:
        """(items and human budget per half-width, the RMSE scaling fit, bootstrap half-widths, exact-mode accuracy)."""
        run = self.runs[self.reference]
        strategies = strategy_predictions(run)
        accuracy = float(np.mean(strategies["exact mode"].predictions == run.gold))
        budget, scaling, by_size = label_budget(
            strategies["exact mean"].predictions,
            run.gold,
            accuracy,
            half_widths,
            self.assumptions.human_usd_per_rating,
            self.assumptions.ratings_per_item,
            self.resamples,
            self.seed,
        )
        return budget, scaling, by_size, accuracy
