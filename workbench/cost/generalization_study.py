"""The generalization and scorecard study of notebook 07 (its sections 5-6), step by step.

Two in-domain sets (SST-5, STS-B) and their out-of-domain counterparts (product-review sentences
under the SST-5 prompt, SICK pairs under the STS-B prompt) are answered by every lifecycle stage
with the mean of the exact grid distribution; :func:`score_stages` measures the drop and each
stage's serving time, :func:`predicted_serving_columns` prices the stages on GPUs by the roofline,
and :func:`orthogonality_summary` says what the rank correlations between the axes support.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from workbench.cost.evaluation_cost import metric_usd_per_1000
from workbench.cost.generalization import drop_table, rule_predictions, with_prompt_of
from workbench.cost.hardware import load_hardware
from workbench.cost.hosting import roofline_seconds_per_request
from workbench.cost.roofline import Efficiency, ModelShape, Roofline
from workbench.cost.scorecard import StageScores, bootstrap_scorecards, nondominated, rank_correlations, scorecard
from workbench.cost.study import CostStudy
from workbench.cost.study_steps import held_out_errors, request_tokens
from workbench.cost.timing import time_methods
from workbench.inference.engine import HFEngine
from workbench.inference.gencache import GenerationCache
from workbench.lifecycle.stages import VARIANTS, FingerprintMismatch, finetuned_prefix, list_stages, load_stage
from workbench.paths import cache_dir, data_dir
from workbench.progress import tqdm
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


def score_stages(
    stages: Sequence[str],
    model: str,
    device: str,
    study: GeneralizationSets,
    time_prompts: int,
    repeats: int,
    n_resamples: int,
    seed: int = 0,
    on_model: Callable[[dict], None] = lambda fingerprint: None,
) -> tuple[list[StageScores], pd.DataFrame]:
    """Every stage's exact-mean answers on every set, the in- to out-of-domain drop, and its serving time.

    A stage that is registered under other weights (:class:`FingerprintMismatch`) is skipped with a
    message. The serving time is one zero-shot SST-5 request answered by exact grid scoring, no cache.

    Returns:
        ([StageScores per stage scored], drop rows (RMSE and Spearman) per stage and transfer, and
        the constant prior's RMSE rows).
    """
    scores, rows = [], []
    for stage in tqdm(stages, desc="scorecard stages"):
        try:
            lm = load_stage(stage, device=device, base_model=model)
        except FingerprintMismatch as error:
            print(f"SKIPPED {stage}: {error}")
            continue
        on_model(lm.fingerprint)
        engine = HFEngine(lm, cache=GenerationCache(cache_dir() / "generations", lm.fingerprint), progress=False)
        gold, answers = {}, {}
        for name, (task, examples) in study.sets.items():
            gold[name], rules, _ = rule_predictions(engine, task, examples)
            answers[name] = rules["exact mean"]
        for own, unseen in study.transfer.items():
            table = drop_table(
                (gold[own], {"exact mean": answers[own]}),
                (gold[unseen], {"exact mean": answers[unseen]}),
                metrics=("rmse", "spearman"),
                grid=study.sets[own][0].grid,
                n_resamples=n_resamples,
                seed=seed,
            )
            rows.append(table.assign(stage=stage, in_domain_set=own, out_of_domain_set=unseen))
        sst5, examples = study.sets["SST-5"]
        timed = time_methods(
            HFEngine(lm, cache=None, progress=False),
            sst5.prompts(examples[:time_prompts], lm.tokenizer),
            sst5.candidates,
            [1],
            sst5.max_new_tokens,
            repeats=repeats,
        )
        scores.append(StageScores(stage, gold, answers, float(timed.set_index("method").seconds_per_item["exact"])))
        del lm, engine
    rows += [
        _prior_rows(scores[0].gold, study, own, unseen, n_resamples, seed) for own, unseen in study.transfer.items()
    ]
    return scores, pd.concat(rows, ignore_index=True)


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


def orthogonality_summary(orthogonality: pd.DataFrame, stages: int) -> str:
    """Markdown: each pair of axes' rank correlation, and what the data say about orthogonality.

    Args:
        orthogonality: from :func:`workbench.cost.scorecard.rank_correlations`.
        stages: how many stages the correlations are over.
    """
    lines = [
        f"- {r.axis_a} vs {r.axis_b}: rho {r.rho:+.2f} (permutation p {r.p:.3f}; bootstrap interval "
        f"[{r.low:+.2f}, {r.high:+.2f}]) over {r.stages} stages: {r.verdict}"
        for r in orthogonality.itertuples()
    ]
    correlated = orthogonality[orthogonality.verdict == "correlated"]
    if stages < 4:
        verdict = (
            f"With {stages} stages no rank correlation can be told from chance: "
            "the orthogonality claim is not tested here."
        )
    elif len(correlated):
        verdict = (
            "The data do **not** support full orthogonality: "
            + "; ".join(f"{r.axis_a} and {r.axis_b} move together (rho {r.rho:+.2f})" for r in correlated.itertuples())
            + "."
        )
    else:
        verdict = (
            f"No pair of axes is correlated beyond chance across these {stages} stages, which is *compatible* with the "
            "orthogonality claim; with this few stages it is weak support, not a confirmation."
        )
    return "\n".join(lines) + "\n\n" + verdict


def scorecard_stages(model: str, profile: str) -> tuple[list[str], list[str], str]:
    """The stages the scorecard compares: base and fine-tuned (notebook 04), each in every variant.

    Returns:
        (the registered stages, the fine-tuned ones missing, a Markdown note on the fine-tuned stages).
    """
    registered = list_stages(base_model=model).set_index("name")
    finetuned = [f"{finetuned_prefix(profile)}-{v}" for v in VARIANTS]
    missing = [stage for stage in finetuned if stage not in registered.index]
    stages = [f"base-{v}" for v in VARIANTS] + [stage for stage in finetuned if stage not in missing]
    if missing:
        return (
            stages,
            missing,
            (
                f"**The fine-tuned stages {missing} are not registered for {model} (run notebook 04 first): "
                "the scorecard covers the base stages only, and its rank correlations say little.**"
            ),
        )
    notes = registered.loc[finetuned[0]]
    return stages, missing, f"Fine-tuned stages: task {notes.task}; {notes.notes} (registered {notes.registered})."


def priced_scorecard(
    scores: Sequence[StageScores], sets: GeneralizationSets, costs: CostStudy, half_width: float
) -> pd.DataFrame:
    """The scorecard (:func:`workbench.cost.scorecard.scorecard`) with GPU serving prices predicted by the roofline,
    the measured seconds per request and the Pareto set.

    Args:
        scores: every stage's answers and serving time (:func:`score_stages`).
        sets: the item sets.
        costs: the cost study (its assumptions, tokenizer, model shape and answer tokens).
        half_width: wanted 95% half-width of each own task's RMSE interval (prices the evaluation).
    """
    assumed = costs.assumptions
    card = scorecard(
        scores,
        sets.own,
        sets.unseen,
        sets.prior,
        half_width,
        assumed.label_usd_per_item,
        assumed.machine_usd_per_hour,
        assumed.utilisation,
    )
    sst5, examples = sets.sets["SST-5"]
    tokenizer = costs.reference_cpu.tokenizer
    zero_shot_tokens, _ = request_tokens(tokenizer, sst5.prompts(examples, tokenizer), sst5.candidates)
    card = predicted_serving_columns(
        card,
        costs.reference_cpu.model.config,
        assumed.efficiency,
        zero_shot_tokens,
        costs.answer_tokens,
        assumed.gpu_rows,
        assumed.utilisation,
    )
    card["seconds_per_request (measured)"] = [s.seconds_per_request for s in scores]
    card["pareto"] = nondominated(card)
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
            "roofline error on untrained-on passes: "
            + ", ".join(f"{s} {e:.0%}" for s, e in held_out_errors(validation).items()),
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


def orthogonality(
    card: pd.DataFrame,
    scores: Sequence[StageScores],
    sets: GeneralizationSets,
    costs: CostStudy,
    half_width: float,
    replicates: int,
    seed: int = 0,
) -> pd.DataFrame:
    """Rank correlations between the scorecard's axes, with intervals from ``replicates`` bootstrap scorecards.

    See :func:`workbench.cost.scorecard.rank_correlations`; the scorecards are priced as in :func:`priced_scorecard`.
    """
    assumed = costs.assumptions
    resampled = bootstrap_scorecards(
        scores,
        sets.own,
        sets.unseen,
        n_resamples=replicates,
        seed=seed,
        prior=sets.prior,
        half_width=half_width,
        label_usd_per_item=assumed.label_usd_per_item,
        usd_per_hour=assumed.machine_usd_per_hour,
        utilisation=assumed.utilisation,
    )
    return rank_correlations(card, resampled)
