"""Notebook 02's study, step by step: decode both stages, compare every decision rule with the baselines, test.

Each function is one step of the notebook (decoding the planned runs of each stage, the fitted
baselines, the comparison tables, calibration, the paired tests of the Bayes-optimal rules, the
skill against the baselines, the findings in words), so a script or another notebook runs the same
study. The run settings come from the ``metric_aware`` section of the profiles
(:func:`stage_plans`), which notebook 03 shares so that its decodes come from the cache.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.inference.gencache import GenerationCache
from workbench.metric_aware import plots
from workbench.metric_aware.baselines import Baselines, baseline_predictions
from workbench.metric_aware.bootstrap import paired_bootstrap
from workbench.metric_aware.calibration import calibration_report, reliability, spread_report, with_temperature
from workbench.metric_aware.experiments import (
    EXPECTED_WINNER,
    PATTERN_METRICS,
    RunConfig,
    TaskRun,
    comparison_table,
    outside_mass_summary,
    pattern_check,
    run_task,
    snap_to_grid,
    strategy_predictions,
    tune_temperature,
)
from workbench.paths import model_name
from workbench.profiles import load_profile
from workbench.progress import tqdm
from workbench.tasks import get_task
from workbench.tasks.grid import nearest_grid_index

# metric -> the exact-distribution strategy that is Bayes-optimal for it
BAYES_STRATEGY = {metric: f"exact {rule}" for metric, rule in EXPECTED_WINNER.items()}
SAMPLED = ["one sample", "mean", "median", "mode (self-consistency)"]
SUPERVISED = ("tfidf ridge", "minilm ridge")
# (strategy, baseline, metric): does the stage beat the constant prior, and the best supervised baseline?
SKILL_CHECKS = [
    ("exact mean", "prior mean", "rmse"),
    ("exact median", "prior median", "mae"),
    ("exact mode", "prior mode", "exact_match"),
    ("exact mean", "minilm ridge", "rmse"),
]


def stage_plans(profile: str, tasks: tuple[str, ...] | None = None) -> dict[str, dict[str, RunConfig]]:
    """``{stage: {task: RunConfig}}`` of a profile's ``metric_aware`` section (``tasks``: keep only these).

    >>> stage_plans("smoke", ("sst5",))["finetuned"]["sst5"].shots
    0
    """
    plans = load_profile(profile)["metric_aware"]
    return {
        stage: {task: RunConfig(**settings) for task, settings in by_task.items() if tasks is None or task in tasks}
        for stage, by_task in plans.items()
    }


def plot_bayes_bars(axes, table: pd.DataFrame, title: str) -> None:
    """One bar chart per metric of :data:`BAYES_STRATEGY` on ``axes`` (a row of Axes), its Bayes-optimal rule
    highlighted."""
    for ax, (metric, best) in zip(axes, BAYES_STRATEGY.items(), strict=True):
        plots.strategy_bars(ax, table, metric, highlight=best, title=f"{title}: {metric} (orange: Bayes-optimal rule)")


def decode_stages(
    engines: Mapping,
    plans: Mapping[str, Mapping[str, RunConfig]],
    dev_items: int | None,
    exact_items: Mapping[str, int | None],
    seed: int,
    folder: Path,
) -> tuple[dict, dict, pd.DataFrame]:
    """Decode every planned run, the fine-tuned stage's exact-only runs and the dev runs that fit the temperature.

    Args:
        engines: ``{stage: engine}``.
        plans: ``{stage: {task: RunConfig}}`` (see :func:`stage_plans`).
        dev_items: dev items each temperature is fitted on (None: the whole split).
        exact_items: per task, test items the fine-tuned stage scores exactly (None: all).
        seed: item subsets and demonstrations.
        folder: where each run is saved as JSON (``<stage>_<task>.json``, ``..._exact.json``).

    Returns:
        ({(stage, task): sampled run}, {(stage, task): exact run} for grid tasks, the mass outside the grid per run).
    """
    runs, exact_runs, outside = {}, {}, []
    for stage, engine in engines.items():
        for name, config in tqdm(plans[stage].items(), desc=stage):
            task = get_task(name)
            runs[stage, name] = run_task(engine, task, config)
            runs[stage, name].save(folder / f"{stage}_{name}.json")
            if task.grid is None:
                continue
            dev = run_task(
                engine, task, RunConfig(split="dev", limit=dev_items, shots=config.shots, k=0, greedy=False, seed=seed)
            )
            exact_config = RunConfig(limit=exact_items[name], shots=config.shots, k=0, seed=seed)
            exact_runs[stage, name] = (
                run_task(engine, task, exact_config) if stage == "finetuned" else runs[stage, name]
            )
            for run in {id(r): r for r in (runs[stage, name], exact_runs[stage, name])}.values():
                tune_temperature(run, dev)
            runs[stage, name].save(folder / f"{stage}_{name}.json")  # again, with the tuned temperature
            exact_runs[stage, name].save(folder / f"{stage}_{name}_exact.json")
            outside.append(
                {
                    "model": stage,
                    "task": name,
                    "n": len(exact_runs[stage, name].gold),
                    **outside_mass_summary(exact_runs[stage, name]),
                }
            )
    return runs, exact_runs, pd.DataFrame(outside).set_index(["model", "task"])


def cached_baselines(
    task_name: str, train_items: int | None, seed: int, cache: GenerationCache
) -> tuple[Baselines, dict]:
    """Every baseline's predictions on a task's whole test split, fitted on ``train_items`` training items.

    The predictions are kept in ``cache`` (a :class:`GenerationCache`, kind ``"baselines"``), keyed on the
    test items, the training items and the seed, so a rerun fits nothing.

    Returns:
        (the :class:`Baselines`, ``{example id: its row}``).
    """
    task = get_task(task_name)
    test = task.examples("test")
    settings = {"test": [e.id for e in test], "train_items": train_items, "supervised": list(SUPERVISED)}
    key = cache.key("baselines", task_name, settings, seed=seed, device="cpu")
    stored = cache.get("baselines", key)
    if stored is None:
        fitted = baseline_predictions(task.examples("train", limit=train_items, seed=seed), test, task.grid, SUPERVISED)
        stored = {
            part: {name: values.tolist() for name, values in getattr(fitted, part).items()}
            for part in ("predictions", "on_grid")
        }
        cache.put_many("baselines", {key: stored})
    arrays = {
        part: {name: np.array(values) for name, values in stored[part].items()} for part in ("predictions", "on_grid")
    }
    return Baselines(arrays["predictions"], arrays["on_grid"]), {e.id: i for i, e in enumerate(test)}


def baselines_for(baselines: Mapping[str, tuple[Baselines, dict]], run: TaskRun) -> Baselines | None:
    """The baselines' predictions on a run's items (None for a task without baselines)."""
    if run.task not in baselines:
        return None
    full, index = baselines[run.task]
    return full.take([index[i] for i in run.ids])


def comparison_tables(
    runs: Mapping,
    exact_runs: Mapping,
    baselines: Mapping,
    metrics: tuple[str, ...],
    quantiles: tuple[float, ...],
    n_resamples: int,
) -> dict[tuple[str, str], pd.DataFrame]:
    """One comparison table per stage and task: the exact run's strategies and baselines, the sampled ones on their
    subset.

    Column ``n`` says how many items each row is scored on.
    """
    tables = {}
    for (stage, name), run in runs.items():
        exact_run = exact_runs.get((stage, name), run)
        table = comparison_table(
            exact_run,
            metrics,
            n_resamples=n_resamples,
            baselines=baselines_for(baselines, exact_run),
            quantiles=quantiles if run.grid is not None else (),
        ).assign(n=len(exact_run.gold))
        if exact_run is not run:  # sampled strategies come from the sampled subset
            sampled = comparison_table(run, metrics, n_resamples=n_resamples, quantiles=quantiles).assign(
                n=len(run.gold)
            )
            table = pd.concat([table, sampled.loc[[s for s in SAMPLED if s in sampled.index]]])
        tables[stage, name] = table
    return tables


def table_heading(stage: str, name: str, run: TaskRun, exact_run: TaskRun) -> str:
    """A Markdown heading for one comparison table: items, samples, shots, temperatures."""
    return (
        f"### {stage} · {name}: n={len(exact_run.gold)} (sampled: {len(run.gold)} items, K={run.config.k}), "
        f"{run.config.shots}-shot, T={run.config.temperature}, tuned T={exact_run.tuned_temperature}"
    )


def calibration_table(exact_runs: Mapping) -> pd.DataFrame:
    """NLL and ECE of each exact distribution before and after its tuned temperature, with the mass off the grid."""
    return pd.DataFrame(
        [
            {
                "model": stage,
                "task": name,
                "n": len(run.gold),
                **calibration_report(run.exact_probs, run.gold, run.grid, run.tuned_temperature),
                **outside_mass_summary(run),
            }
            for (stage, name), run in exact_runs.items()
        ]
    ).set_index(["model", "task"])


def temperature_effects(exact_runs: Mapping, n_resamples: int, seed: int) -> pd.DataFrame:
    """Does the temperature fitted on dev (by NLL) help or hurt each Bayes rule on test? A paired test per rule.

    One row per (model, task, metric): the exact rule at T = 1 and at the tuned T, their ``difference``
    (tuned minus T = 1; lower is better except for exact match), the two-sided ``p``, and ``effect``
    ("helps", "hurts" at p < 0.05, else "no significant change"); then the :func:`spread_report` of the
    distribution at both temperatures, which says why the mean moves.
    """
    rows = []
    for (stage, name), run in exact_runs.items():
        strategies = strategy_predictions(run)
        spreads = {
            label: spread_report(probs, run.grid, run.gold)
            for label, probs in (
                ("T=1", run.exact_probs),
                ("tuned T", with_temperature(run.exact_probs, run.tuned_temperature)),
            )
        }
        for metric in PATTERN_METRICS:
            rule = EXPECTED_WINNER[metric]
            plain, tuned = strategies[f"exact {rule}"].predictions, strategies[f"tuned T {rule}"].predictions
            gold = snap_to_grid(run.gold, run.grid) if metric == "exact_match" else run.gold
            test = paired_bootstrap(metric, tuned, plain, gold, n_resamples=n_resamples, seed=seed)
            difference = test.difference.estimate
            better = difference > 0 if metric == "exact_match" else difference < 0
            significant = test.p_value < 0.05 and difference != 0
            rows.append(
                {
                    "model": stage,
                    "task": name,
                    "metric": metric,
                    "rule": rule,
                    "tuned T": run.tuned_temperature,
                    "difference": difference,
                    "p": test.p_value,
                    "effect": ("helps" if better else "hurts") if significant else "no significant change",
                    **{f"{key} ({label})": value for label, spread in spreads.items() for key, value in spread.items()},
                }
            )
    return pd.DataFrame(rows).set_index(["model", "task", "metric"])


def reliability_curves(run: TaskRun, n_bins: int = 10) -> dict[str, pd.DataFrame]:
    """The reliability diagram's points of an exact run at T = 1 and at its tuned temperature."""
    gold = nearest_grid_index(run.gold, run.grid)
    curves = {"T=1": reliability(run.exact_probs, gold, n_bins)}
    if run.tuned_temperature is not None:
        tuned = with_temperature(run.exact_probs, run.tuned_temperature)
        curves[f"tuned T={run.tuned_temperature:.2f}"] = reliability(tuned, gold, n_bins)
    return curves


def signal_table(skill: pd.DataFrame, calibration: pd.DataFrame, alpha: float, bound: float = 20.0) -> pd.DataFrame:
    """Has a model item-level signal on a task? Its exact mean must beat the constant prior mean on RMSE
    (paired test, p < ``alpha``); a tuned temperature at the search's upper ``bound`` also says "no signal"
    (flattening the distribution entirely fits dev best). Without signal, a pattern check tests nothing.
    """
    rows = []
    for (stage, name), row in calibration.iterrows():
        test = skill.loc[(stage, name, "rmse", "prior mean")]
        beats_prior = test["difference"] < 0 and test["p"] < alpha
        at_bound = row.get("temperature", 0.0) >= bound * 0.99
        why = "tuned T at the search bound" if at_bound else "" if beats_prior else "exact mean does not beat the prior"
        rows.append({"model": stage, "task": name, "signal": beats_prior and not at_bound, "why not": why})
    return pd.DataFrame(rows).set_index(["model", "task"])


def mark_no_signal(checks: pd.DataFrame, signal: pd.DataFrame) -> pd.DataFrame:
    """``checks`` with the verdict of every model and task without signal replaced by ``no signal (<why>)``."""
    checks = checks.copy()
    for (stage, name), row in signal[~signal.signal].iterrows():
        rows = (checks.index.get_level_values("model") == stage) & (checks.index.get_level_values("task") == name)
        checks.loc[rows, "verdict"] = f"no signal ({row['why not']})"
        checks.loc[rows, "holds"] = False
    return checks


def pattern_checks(
    runs: Mapping, exact_runs: Mapping, quantiles: tuple[float, ...], alpha: float, n_resamples: int, seed: int
) -> pd.DataFrame:
    """:func:`pattern_check` of every family (exact, tuned T, sampled) of every stage and task, indexed by them and the
    metric."""
    checks = []
    for (stage, name), run in runs.items():
        exact_run = exact_runs.get((stage, name), run)
        families = (
            [("exact", exact_run), ("tuned T", exact_run), ("sampled", run)]
            if run.grid is not None
            else [("sampled", run)]
        )
        for family, source in families:
            check = pattern_check(
                source,
                family,
                quantiles=quantiles if family == "exact" else (),
                alpha=alpha,
                n_resamples=n_resamples,
                seed=seed,
            )
            if len(check):
                checks.append(check.reset_index().assign(model=stage, task=name))
    return pd.concat(checks, ignore_index=True).set_index(["model", "task", "family", "metric"]).sort_index()


def skill_table(exact_runs: Mapping, baselines: Mapping, n_resamples: int, seed: int) -> pd.DataFrame:
    """Paired tests of :data:`SKILL_CHECKS` on each exact run's items: difference (strategy - baseline) and p."""
    rows = []
    for (stage, name), run in exact_runs.items():
        strategies, against = strategy_predictions(run), baselines_for(baselines, run)
        for strategy, baseline, metric in SKILL_CHECKS:
            exact_match = metric == "exact_match"
            theirs = (against.on_grid if exact_match else against.predictions)[baseline]
            gold = snap_to_grid(run.gold, run.grid) if exact_match else run.gold
            test = paired_bootstrap(
                metric, strategies[strategy].predictions, theirs, gold, n_resamples=n_resamples, seed=seed
            )
            rows.append(
                {
                    "model": stage,
                    "task": name,
                    "metric": metric,
                    "strategy": strategy,
                    "against": baseline,
                    "difference": test.difference.estimate,
                    "p": test.p_value,
                }
            )
    return pd.DataFrame(rows).set_index(["model", "task", "metric", "against"])


def findings(checks: pd.DataFrame, tables: Mapping, skill: pd.DataFrame, alpha: float) -> str:
    """Markdown, one line per stage, task and metric: the verdict of the paired tests and the skill against the
    baselines."""
    p_columns = [c for c in checks.columns if c.startswith("p vs")]
    lines = []
    for (stage, name, family, metric), row in checks.iterrows():
        if family != "exact":
            continue
        table, strategy = tables[stage, name], row["expected rule's strategy"]
        rivals = ", ".join(f"{c[5:]} p={row[c]:.3g}" for c in p_columns if pd.notna(row.get(c)))
        score = table.loc[strategy, metric] if metric in table else row[row["expected winner"]]
        lines.append(
            f"- **{stage} · {name} · {metric}**: {row['verdict']} ({strategy} {score:.3f}; "
            f"observed best {row['observed winner']}; {rivals})"
        )
    for (stage, name, metric, against), row in skill.iterrows():
        better = row["difference"] > 0 if metric == "exact_match" else row["difference"] < 0
        verdict = "better" if better and row["p"] < alpha else "not significantly better"
        lines.append(
            f"- {stage} · {name}: {row['strategy']} vs {against} on {metric}: difference {row['difference']:+.3f}, "
            f"p={row['p']:.3g} ({verdict})"
        )
    return "\n".join(lines)


def summary_table(tables: Mapping, model_names: Mapping[str, str], metrics: tuple[str, ...]) -> pd.DataFrame:
    """All comparison tables in one (``results/02_metric_aware.csv``): model, task, strategy, n, fallback, the metrics'
    columns, and ``model_name`` as provenance records it (relative to the cache, never one machine's path)."""
    summary = pd.concat(
        [table.reset_index().assign(model=stage, task=name) for (stage, name), table in tables.items()],
        ignore_index=True,
    )
    keep = ["model", "task", "strategy", "n", "fallback"]
    keep += [c for c in summary.columns if c not in keep and (c.split(" ")[0] in metrics or c.startswith("pinball"))]
    return summary[keep].assign(model_name=summary.model.map(model_names).map(model_name))


def total_variation_by_k(samples, grid, exact_probs: np.ndarray, ks) -> dict[int, float]:
    """Mean over items of the total variation between the first-K samples' frequencies on the grid and the exact
    distribution.

    Args:
        samples: (n, K_max) parsed samples (answers off the grid count toward no grid value).
        grid: (G,) the answer grid.
        exact_probs: (n, G) exact probabilities over the grid.
        ks: sample counts (those above K_max are skipped).

    >>> total_variation_by_k([[1.0, 1.0, 2.0, 2.0]], [1.0, 2.0], np.array([[0.5, 0.5]]), [1, 4, 8])
    {1: 0.5, 4: 0.0}
    """
    samples, grid = np.asarray(samples, dtype=float), np.asarray(grid, dtype=float)
    result = {}
    for k in [k for k in ks if k <= samples.shape[1]]:
        frequencies = (samples[:, :k, None] == grid[None, None, :]).sum(axis=1).astype(float)
        frequencies /= np.maximum(frequencies.sum(axis=1, keepdims=True), 1)
        result[k] = float((0.5 * np.abs(frequencies - exact_probs).sum(axis=1)).mean())
    return result
