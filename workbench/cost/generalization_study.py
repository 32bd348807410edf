"""The item sets of notebook 07's generalization study (its sections 5-6) and the tables made from them.

Two in-domain sets (SST-5, STS-B) and their out-of-domain counterparts (product-review sentences
under the SST-5 prompt, SICK pairs under the STS-B prompt), read by :func:`generalization_sets`;
:func:`predicted_serving_columns` prices the stages on GPUs by the roofline; :func:`headline` says
the study's findings in a few lines. :mod:`workbench.cost.scorecard_study` runs the sections.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from workbench.cost.evaluation_cost import metric_usd_per_1000
from workbench.cost.generalization import drop_table, with_prompt_of
from workbench.cost.hardware import load_hardware
from workbench.cost.hosting import roofline_seconds_per_request
from workbench.cost.roofline import Efficiency, ModelShape, Roofline
from workbench.cost.study_steps import held_out_summary
from workbench.paths import cache_dir, data_dir
from workbench.tasks import Example, Task, get_task
from workbench.tasks.rating_sets import hutto_snippets_path, sick_to_csv, snippets_to_csv


@dataclass
class GeneralizationSets:
    """The item sets of the generalization study.

    Attributes:
        sets: set name -> (task, its examples); the out-of-domain tasks carry the in-domain prompt and grid.
        transfer: in-domain set -> its out-of-domain set.
        prior: set name -> the constant prior's answer (the in-domain training labels' mean).
        conversions: set name -> the CSV conversion of an out-of-domain source (kept and dropped rows).
    """

    sets: dict[str, tuple[Task, list[Example]]]
    transfer: dict[str, str]
    prior: dict[str, float]
    conversions: dict[str, object]

    @property
    def own(self) -> list[str]:
        return list(self.transfer)

    @property
    def unseen(self) -> list[str]:
        return list(self.transfer.values())


def _evaluation_only(task: Task) -> dict:
    """``"table"`` task options on ``task``'s grid, every row a test item."""
    return {
        "low": task.grid[0],
        "high": task.grid[-1],
        "step": round(task.grid[1] - task.grid[0], 6),
        "fractions": {"train": 0, "dev": 0, "test": 1},
    }


def generalization_sets(items: int, seed: int = 0) -> GeneralizationSets:
    """SST-5 and STS-B test items, and product reviews (as SST-5) and SICK (as STS-B), ``items`` of each.

    Raises:
        FileNotFoundError: SICK is not in ``WORKBENCH_DATA_DIR/sick``.
    """
    if data_dir() is None or not (data_dir() / "sick").is_dir():
        raise FileNotFoundError(
            "SICK is read from WORKBENCH_DATA_DIR/sick (SICK_test_annotated.txt); see the README's data section"
        )
    sst5, stsb = get_task("sst5"), get_task("stsb")
    amazon = snippets_to_csv(
        hutto_snippets_path("amazonReviewSnippets"), cache_dir() / "ood" / "amazon_review_snippets_1to5.csv"
    )
    sick = sick_to_csv(
        data_dir() / "sick" / "SICK_test_annotated.txt", cache_dir() / "ood" / "sick_test_0to5.csv", low=0.0, high=5.0
    )
    reviews = with_prompt_of(
        sst5,
        get_task("table", path=str(amazon.path), text_column="text", label_column="rating", **_evaluation_only(sst5)),
        name="product reviews (as sst5)",
    )
    sick_task = with_prompt_of(
        stsb,
        get_task(
            "table",
            path=str(sick.path),
            text_column="text",
            text_b_column="text_b",
            label_column="score",
            **_evaluation_only(stsb),
        ),
        name="SICK (as stsb)",
    )
    tasks = {"SST-5": sst5, "STS-B": stsb, "product reviews": reviews, "SICK": sick_task}
    transfer = {"SST-5": "product reviews", "STS-B": "SICK"}
    prior = {own: float(np.mean([e.target for e in tasks[own].examples("train")])) for own in transfer}
    prior.update({unseen: prior[own] for own, unseen in transfer.items()})
    sets = {name: (task, task.examples("test", limit=items, seed=seed)) for name, task in tasks.items()}
    return GeneralizationSets(sets, transfer, prior, {"product reviews": amazon, "SICK": sick})


def set_summary(study: GeneralizationSets) -> pd.DataFrame:
    """Items, gold mean and sd, and the constant prior of each set."""
    return pd.DataFrame(
        {
            name: {
                "items": len(examples),
                "gold mean": np.mean([e.target for e in examples]),
                "gold sd": np.std([e.target for e in examples]),
                "constant prior": study.prior[name],
            }
            for name, (_, examples) in study.sets.items()
        }
    ).T


def _prior_rows(
    gold: Mapping[str, np.ndarray], study: GeneralizationSets, own: str, unseen: str, n_resamples: int, seed: int
) -> pd.DataFrame:
    """The trivial baseline on the same items: always the in-domain training mean."""
    answer = {name: np.full(len(gold[name]), study.prior[name]) for name in (own, unseen)}
    return drop_table(
        (gold[own], {"constant prior": answer[own]}),
        (gold[unseen], {"constant prior": answer[unseen]}),
        metrics=("rmse",),
        n_resamples=n_resamples,
        seed=seed,
    ).assign(stage="constant prior", in_domain_set=own, out_of_domain_set=unseen)


def with_interval_text(table: pd.DataFrame, columns: Mapping[str, str]) -> pd.DataFrame:
    """``table`` with text columns "estimate [low, high]" of each ``{value column: new column}``.

    >>> t = pd.DataFrame({"drop": [0.5], "drop_low": [0.25], "drop_high": [0.75]})
    >>> with_interval_text(t, {"drop": "drop (+: worse)"})["drop (+: worse)"][0]
    '0.500 [0.250, 0.750]'
    """
    return table.assign(
        **{
            shown: [f"{row[c]:.3f} [{row[c + '_low']:.3f}, {row[c + '_high']:.3f}]" for _, row in table.iterrows()]
            for c, shown in columns.items()
        }
    )


def predicted_serving_columns(
    card: pd.DataFrame,
    model_config,
    efficiency: Efficiency,
    prompt_tokens: int,
    answer_tokens: int,
    rows: int,
    utilisation: float,
) -> pd.DataFrame:
    """The scorecard with a ``serving_usd_per_1000 <machine> (predicted)`` column per priced machine.

    Each stage's variant (the name's last part: fp32, bf16 or int8) sets the weights' dtype of its
    roofline; the machines and prices come from ``workbench/data/hardware.csv``.

    Args:
        card: scorecard indexed by stage.
        model_config: the model's transformers config (its shape).
        efficiency: achieved fractions of the peaks (assumed for machines never measured).
        prompt_tokens, answer_tokens: one request.
        rows: requests decoded together.
        utilisation: share of the machine real traffic fills.
    """
    card = card.copy()
    priced = {name: hardware for name, hardware in load_hardware().items() if hardware.usd_per_hour is not None}
    for stage in card.index:
        variant = stage.rsplit("-", 1)[-1]
        shape = ModelShape.from_config(
            model_config,
            dtype="bf16" if variant == "bf16" else "fp32",
            weight_dtype="int8" if variant == "int8" else None,
        )
        for name, hardware in priced.items():
            seconds = roofline_seconds_per_request(
                Roofline(shape, hardware, efficiency), prompt_tokens, answer_tokens, 1, rows=rows
            )
            card.loc[stage, f"serving_usd_per_1000 {name} (predicted)"] = metric_usd_per_1000(
                seconds, hardware.usd_per_hour, utilisation
            )
    return card


def headline(
    pareto: pd.DataFrame,
    breaks: pd.DataFrame,
    validation: pd.DataFrame,
    card: pd.DataFrame,
    api: str,
    utilisation: float,
) -> str:
    """The study's findings in four lines: break-even volumes, the quality/cost front, the roofline's error, the Pareto
    stages."""
    front = pareto[pareto.pareto].sort_values("usd_per_1000")
    volumes = breaks.query("n == 1 and api == @api").set_index("hosting").break_even_millions_per_month
    return "\n".join(
        [
            f"break-even vs {api} (N=1, {utilisation:.0%} utilisation): "
            + ", ".join(f"{h} {v:,.2f}M/month" for h, v in volumes.items()),
            "Pareto front (RMSE, $/1000 on this machine, measured): "
            + "; ".join(f"{r.label} {r.rmse:.3f} ${r.usd_per_1000:.4f}" for r in front.itertuples()),
            "roofline error on untrained-on passes (mean, max): "
            + ", ".join(
                f"{s} {r['mean']:.0%}, {r['max']:.0%} ({int(r.points)} passes)"
                for s, r in held_out_summary(validation).iterrows()
            ),
            "scorecard Pareto set: " + ", ".join(card.index[card.pareto]),
        ]
    )


def describe_sets(sets: GeneralizationSets, tokenizer) -> pd.DataFrame:
    """Print what each out-of-domain conversion kept and dropped, and one product-review prompt's end; return
    :func:`set_summary`."""
    for name, conversion in sets.conversions.items():
        print(
            f"{name}: {conversion.path.name} kept {conversion.kept} rows; dropped {conversion.duplicates} "
            f"with conflicting duplicates, {conversion.malformed} malformed"
        )
    reviews, items = sets.sets["product reviews"]
    print("prompt of a product-review item:\n" + reviews.prompt(items[0], tokenizer)[-200:])
    return set_summary(sets)


def generalization_view(generalization: pd.DataFrame) -> pd.DataFrame:
    """The drop table to read: "estimate [low, high]" per side and for the drop, indexed by sets, metric and stage."""
    shown = with_interval_text(
        generalization, {"in_domain": "in domain", "out_of_domain": "out of domain", "drop": "drop (+: worse)"}
    )
    index = ["in_domain_set", "out_of_domain_set", "metric", "stage"]
    return shown.set_index(index).sort_index()[["in domain", "out of domain", "drop (+: worse)", "significant"]]
