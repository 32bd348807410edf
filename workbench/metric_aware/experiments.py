"""Metric-aware inference experiments: one model, one task, every inference strategy.

:func:`run_task` collects, for each item, what every strategy needs: the greedy answer, K samples
(parsed to numbers, invalid ones kept as None) and, for tasks with an answer grid, the exact
distribution from the engine's ``score``. Any backend of the
:class:`~workbench.inference.protocol.Engine` protocol serves (in process, a server, Ray, vLLM); the
decoding is cached on disk by the engine, so re-running a notebook or a sweep over K costs nothing.

:func:`strategy_predictions` turns that into the predictions of the strategies compared by
Lukasik et al. (arXiv 2403.04182): greedy, one sample, the mode of the samples (self-consistency),
their mean and median, and the exact-distribution mean, median and mode; with a temperature fitted
on dev (:mod:`workbench.metric_aware.calibration`), the same rules on the rescaled distribution
("tuned T"); and quantile rules for pinball losses. :func:`comparison_table` scores them, and any
baselines (:mod:`workbench.metric_aware.baselines`), with bootstrap confidence intervals;
:func:`pattern_check` decides from paired bootstrap tests whether each Bayes-optimal rule beats
every other rule of its family on its metric.

Items where a strategy has no valid answer (the greedy text does not parse, or no sample does)
get a fallback prediction, the grid midpoint (0 for open answers), and are counted in the
``fallback`` column: never dropped silently.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.inference.grid_sampler import sample_with_grid, sampler_name
from workbench.inference.protocol import Engine
from workbench.inference.types import SampleSet, SamplingConfig
from workbench.metric_aware.baselines import Baselines
from workbench.metric_aware.bootstrap import bootstrap_ci, paired_bootstrap
from workbench.metric_aware.calibration import fit_temperature, with_temperature
from workbench.metric_aware.decision import POINT_RULES, from_grid, from_samples, quantile
from workbench.metric_aware.metrics import get_metric
from workbench.tasks import Task
from workbench.tasks.grid import nearest_grid_index, snap_to_grid

PATTERN_METRICS = ("rmse", "mae", "exact_match")
"""The metrics of the paper's pattern: each should be won by the decision rule on its card."""
EXPECTED_WINNER = {metric: get_metric(metric).bayes_rule for metric in PATTERN_METRICS}
# Rule name -> rule, for the rules of the pattern metrics; exact strategies apply the same rules to the grid.
RULES = {rule: POINT_RULES[rule] for rule in EXPECTED_WINNER.values()}
OUTSIDE_FLAG = 0.5  # items whose exact mass off the grid exceeds this are flagged in run files


@dataclass
class RunConfig:
    """What to decode for one task.

    Attributes:
        split: data split to evaluate on.
        limit: items (a seeded random subset); None for the whole split.
        shots: few-shot demonstrations in the prompt.
        k: samples per item (0: exact distribution and greedy answer only).
        temperature: sampling temperature (the exact distribution is scored at the same one).
        top_p: nucleus mass for sampling.
        max_new_tokens: None for the task's default.
        seed: seed for the item subset, the demonstrations and the samples.
        greedy: decode the greedy answer (False: the exact distribution and samples only, e.g. on
            dev data used to fit a temperature).
    """

    split: str = "test"
    limit: int | None = 200
    shots: int = 5
    k: int = 32
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int | None = None
    seed: int = 0
    greedy: bool = True


@dataclass
class TaskRun:
    """Everything decoded for one task; all arrays are aligned on items.

    Attributes:
        task: task name.
        config: the :class:`RunConfig`.
        fingerprint: the engine's fingerprint (the model stage, and the backend where it names one).
        ids: (B,) item ids.
        gold: (B,) gold values.
        greedy: (B,) parsed greedy answers, None where they do not parse.
        samples: (B, K) parsed samples, None where they do not parse.
        grid: (G,) grid values, or None for open answers.
        exact_probs: (B, G) exact distribution renormalised on the grid, or None.
        outside_mass: (B,) exact probability of answers off the grid, or None.
        texts: a few raw texts per item (greedy + first samples) for inspection.
        tuned_temperature: a temperature fitted on dev (:func:`workbench.metric_aware.calibration.fit_temperature`);
            when set, the "tuned T" strategies apply the rules to the rescaled exact distribution.
        outside_flagged: ids of items whose mass outside the grid exceeds ``OUTSIDE_FLAG``.
        sampler: how the samples were drawn (:func:`~workbench.inference.grid_sampler.sampler_name`):
            on grid tasks, from the exact one-pass grid distribution where the engine can;
            "unrecorded" in run files written before it was recorded.
    """

    task: str
    config: RunConfig
    fingerprint: dict
    ids: list[str]
    gold: np.ndarray
    greedy: list[float | None]
    samples: list[list[float | None]]
    grid: np.ndarray | None = None
    exact_probs: np.ndarray | None = None
    outside_mass: np.ndarray | None = None
    texts: list[list[str]] = field(default_factory=list)
    tuned_temperature: float | None = None
    outside_flagged: list[str] = field(default_factory=list)
    sampler: str = "unrecorded"

    def save(self, path: str | Path) -> None:
        """Write the run as JSON (arrays as lists)."""
        record = asdict(self)
        for key in ("gold", "grid", "exact_probs", "outside_mass"):
            record[key] = None if record[key] is None else np.asarray(record[key]).tolist()
        Path(path).write_text(json.dumps(record))

    def head(self, items: int | None, k: int) -> TaskRun:
        """The run on its first ``items`` items (None: all) with their first ``k`` samples: what a run with
        that limit and K draws, in distribution (item subsets of one seed are nested, see
        :func:`workbench.tasks.base.nested_sample`; an item's samples are independent draws)."""
        if k > self.config.k or (items is not None and self.config.limit is not None and items > self.config.limit):
            raise ValueError(
                f"{self.task}: a run of {self.config.limit} items and K={self.config.k} has no head ({items}, {k})"
            )
        cut = slice(None, items)
        return replace(
            self,
            config=replace(self.config, limit=items, k=k),
            ids=self.ids[cut],
            gold=self.gold[cut],
            greedy=self.greedy[cut],
            samples=[row[:k] for row in self.samples[cut]],
            exact_probs=None if self.exact_probs is None else self.exact_probs[cut],
            outside_mass=None if self.outside_mass is None else self.outside_mass[cut],
            texts=self.texts[cut],
            outside_flagged=[i for i in self.outside_flagged if i in set(self.ids[cut])],
            tuned_temperature=None,  # fitted on dev, not decoded: a fresh run has none
        )

    @classmethod
    def load(cls, path: str | Path) -> TaskRun:
        record = json.loads(Path(path).read_text())
        record["config"] = RunConfig(**record["config"])
        for key in ("gold", "grid", "exact_probs", "outside_mass"):
            record[key] = None if record[key] is None else np.asarray(record[key], dtype=float)
        return cls(**record)


def run_task(engine: Engine, task: Task, config: RunConfig, tokenizer=None) -> TaskRun:
    """Decode greedy answers, K samples and (for grid tasks) the exact distribution for one task.

    Args:
        engine: any backend of the :class:`~workbench.inference.protocol.Engine` protocol.
        task: the task; its prompts are formatted with the tokenizer's chat template.
        config: what to decode.
        tokenizer: the model's tokenizer; default ``engine.tokenizer`` (a
            :class:`~workbench.inference.protocol.ChatEngine`). Pass it for an engine that carries
            none (a :class:`~workbench.inference.ray_engine.RayEngine`, an OpenAI-compatible
            server without ``tokenizer=``).

    Raises:
        ValueError: when neither ``tokenizer`` nor ``engine.tokenizer`` is given.
    """
    tokenizer = tokenizer if tokenizer is not None else getattr(engine, "tokenizer", None)
    if tokenizer is None:
        raise ValueError(
            f"run_task: {type(engine).__name__} carries no tokenizer to format the prompts of {task.name!r} with; "
            "pass tokenizer= (the model's, for its chat template)"
        )
    examples = task.examples(config.split, limit=config.limit, seed=config.seed)
    prompts = task.prompts(examples, tokenizer, task.fewshot(config.shots, seed=config.seed))
    budget = config.max_new_tokens or task.max_new_tokens
    greedy_texts = engine.greedy(prompts, max_new_tokens=budget, stop=task.stop) if config.greedy else []
    sampling = SamplingConfig(
        temperature=config.temperature, top_p=config.top_p, max_new_tokens=budget, stop=task.stop, seed=config.seed
    )
    exact = None
    if task.grid is not None and config.k:  # the samples and the exact distribution from one tree pass
        drawn = sample_with_grid(engine, prompts, config.k, sampling, task.candidates)
        sample_sets, exact = drawn.samples, drawn.score
    elif config.k:
        sample_sets = engine.sample(prompts, config.k, sampling)
    else:
        sample_sets = [SampleSet([], [], [], []) for _ in prompts]
    run = TaskRun(
        task=task.name,
        config=config,
        fingerprint=engine.fingerprint,
        sampler=sampler_name(engine) if task.grid is not None else f"{type(engine).__name__}.sample",
        ids=[ex.id for ex in examples],
        gold=np.array([float(ex.target) for ex in examples]),
        greedy=[task.parse(text) for text in greedy_texts],
        samples=[[task.parse(text) for text in s.texts] for s in sample_sets],
        texts=[[g] + s.texts[:4] for g, s in zip(greedy_texts, sample_sets)]
        if greedy_texts
        else [s.texts[:4] for s in sample_sets],
    )
    if task.grid is not None:
        if exact is None:
            exact = engine.score(prompts, task.candidates, temperature=config.temperature)
        run.grid, run.exact_probs, run.outside_mass = np.array(task.grid), exact.probs, exact.outside_mass
        run.outside_flagged = [i for i, mass in zip(run.ids, exact.outside_mass) if mass > OUTSIDE_FLAG]
    return run


def tune_temperature(run: TaskRun, dev: TaskRun) -> float:
    """Fit a temperature on a dev run's exact distributions (NLL of the gold grid answer) and set it on ``run``.

    The "tuned T" strategies of ``run`` then apply the rules to its rescaled distributions.
    """
    run.tuned_temperature = fit_temperature(dev.exact_probs, nearest_grid_index(dev.gold, dev.grid))
    return run.tuned_temperature


def outside_mass_summary(run: TaskRun) -> dict[str, float]:
    """Mean exact mass outside the grid, and how many items exceed ``OUTSIDE_FLAG`` (flagged in the run file)."""
    if run.outside_mass is None:
        return {}
    mass = np.asarray(run.outside_mass)
    return {
        "outside mass (mean)": float(mass.mean()),
        "outside mass (max)": float(mass.max()),
        f"items > {OUTSIDE_FLAG}": int((mass > OUTSIDE_FLAG).sum()),
    }


@dataclass
class Strategy:
    """Predictions of one inference strategy.

    Attributes:
        predictions: (B,) predictions, fallbacks filled in.
        fallback: (B,) True where the strategy had no valid answer.
        invalid_samples: total non-numeric samples it saw.
    """

    predictions: np.ndarray
    fallback: np.ndarray
    invalid_samples: int = 0


def _filled(predictions: np.ndarray, default: float) -> Strategy:
    missing = ~np.isfinite(predictions)
    return Strategy(np.where(missing, default, predictions), missing)


def strategy_predictions(run: TaskRun, k: int | None = None, quantiles: tuple[float, ...] = ()) -> dict[str, Strategy]:
    """Predictions of every strategy, using the first ``k`` samples (all by default).

    Args:
        run: the decoded task.
        k: use the first k samples.
        quantiles: levels q for which the exact ``q``-quantile rule is added (``"exact q0.25"``),
            the Bayes-optimal answer for the pinball loss at q.
    """
    default = float(np.median(run.grid)) if run.grid is not None else 0.0
    samples = [row[:k] for row in run.samples] if k else run.samples
    strategies = {}
    if run.greedy:
        strategies["greedy"] = _filled(np.array([np.nan if g is None else g for g in run.greedy], dtype=float), default)
    if any(len(row) for row in samples):
        distribution = from_samples(samples)
        strategies["one sample"] = _filled(
            np.array([np.nan if not row or row[0] is None else row[0] for row in samples], dtype=float), default
        )
        for name, rule in RULES.items():
            label = "mode (self-consistency)" if name == "mode" else name
            strategies[label] = _filled(rule(distribution), default)
            strategies[label].invalid_samples = int(distribution.n_invalid.sum())
    if run.exact_probs is not None:
        families = {"exact": run.exact_probs}
        if run.tuned_temperature is not None:
            families["tuned T"] = with_temperature(run.exact_probs, run.tuned_temperature)
        for family, probs in families.items():
            exact = from_grid(run.grid, probs)
            for name, rule in RULES.items():
                strategies[f"{family} {name}"] = _filled(rule(exact), default)
        for level in quantiles:
            strategies[f"exact q{level:g}"] = _filled(quantile(from_grid(run.grid, run.exact_probs), level), default)
    return strategies


def point_estimates(
    run: TaskRun, k: int | None = None, metrics: tuple[str, ...] = ("rmse", "mae", "exact_match", "spearman")
) -> pd.DataFrame:
    """Metric values (no intervals) of every strategy using the first ``k`` samples: cheap enough for sweeps."""
    rows = []
    for name, strategy in strategy_predictions(run, k).items():
        for metric in metrics:
            gold = snap_to_grid(run.gold, run.grid) if metric == "exact_match" else run.gold
            value = get_metric(metric)(strategy.predictions, gold)
            rows.append(
                {"k": k or len(run.samples[0]), "strategy": name, "metric": metric, "value": float(np.mean(value))}
            )
    return pd.DataFrame(rows)


def k_sweep(
    run: TaskRun, ks: list[int], metrics: tuple[str, ...] = ("rmse", "mae", "exact_match", "spearman")
) -> pd.DataFrame:
    """:func:`point_estimates` for each number of samples in ``ks`` (first-k prefixes of the same samples)."""
    return pd.concat([point_estimates(run, k, metrics) for k in ks if k <= run.config.k], ignore_index=True)


def temperature_sweep(
    engine: Engine,
    task: Task,
    config: RunConfig,
    temperatures: list[float],
    metrics: tuple[str, ...] = ("rmse", "mae", "exact_match", "spearman"),
    tokenizer=None,
    decoded: TaskRun | None = None,
) -> pd.DataFrame:
    """Decode at each temperature (samples and exact distribution) and score every strategy.

    ``engine`` and ``tokenizer`` are as for :func:`run_task`. ``decoded``: a run already decoded with
    the same settings at one of the temperatures, on at least as many items and samples (notebook 02's
    run of the stage and task); that temperature's point is its :meth:`TaskRun.head` instead of a
    second decode of the same items at a smaller K.
    """
    frames = []
    for temperature in temperatures:
        wanted = replace(config, temperature=temperature)
        if decoded is not None and _covers(decoded.config, wanted):
            run = decoded.head(wanted.limit, wanted.k)
        else:
            run = run_task(engine, task, wanted, tokenizer)
        frames.append(point_estimates(run, None, metrics).assign(temperature=temperature))
    return pd.concat(frames, ignore_index=True)


def _covers(done: RunConfig, wanted: RunConfig) -> bool:
    """Whether a run of ``done`` holds a run of ``wanted`` as its head: the same settings, at least as
    many items and samples."""
    more_items = done.limit is None or (wanted.limit is not None and wanted.limit <= done.limit)
    same = replace(done, limit=wanted.limit, k=wanted.k) == wanted
    return same and more_items and done.k >= wanted.k


def comparison_table(
    run: TaskRun,
    metrics: tuple[str, ...] = ("rmse", "mae", "exact_match", "spearman"),
    k: int | None = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    baselines: Baselines | None = None,
    quantiles: tuple[float, ...] = (),
) -> pd.DataFrame:
    """One row per strategy (and baseline): each metric with its bootstrap confidence interval.

    Exact match compares with the gold value snapped to the answer grid (STS-B gold scores such as
    3.75 are averages of annotators; the model answers on a 0.1 grid). Baselines are scored for
    exact match on their predictions snapped to the grid (their other metrics use the raw ones).
    ``quantiles`` adds the exact quantile rules and a ``pinball@q`` column for each level.
    """
    metrics = tuple(metrics) + tuple(f"pinball@{level:g}" for level in quantiles)
    rows = []
    named = {
        name: (s.predictions, s.predictions, int(s.fallback.sum()))
        for name, s in strategy_predictions(run, k, quantiles).items()
    }
    if baselines is not None:
        named.update({name: (values, baselines.on_grid[name], 0) for name, values in baselines.predictions.items()})
    for name, (predictions, on_grid, fallback) in named.items():
        row = {"strategy": name, "fallback": fallback}
        for metric in metrics:
            result = _bootstrap(
                metric, on_grid if metric == "exact_match" else predictions, run, n_resamples, confidence
            )
            row[metric] = result.estimate
            row[f"{metric} CI"] = f"[{result.low:.3f}, {result.high:.3f}]"
        rows.append(row)
    return pd.DataFrame(rows).set_index("strategy")


def _metric_call(metric: str, run: TaskRun) -> tuple[str, dict, np.ndarray]:
    """(registered metric, its parameters, gold) for a table column such as ``"pinball@0.25"``."""
    if metric.startswith("pinball@"):
        return "pinball", {"quantile": float(metric.split("@")[1])}, run.gold
    return metric, {}, snap_to_grid(run.gold, run.grid) if metric == "exact_match" else run.gold


def _bootstrap(metric: str, predictions: np.ndarray, run: TaskRun, n_resamples: int, confidence: float):
    name, params, gold = _metric_call(metric, run)
    return bootstrap_ci(name, predictions, gold, n_resamples=n_resamples, confidence=confidence, seed=0, **params)


SAMPLED_NAMES = {"mean": "mean", "median": "median", "mode": "mode (self-consistency)"}
FAMILY_PREFIX = {"exact": "exact", "tuned T": "tuned T"}


def family_names(family: str) -> dict[str, str]:
    """Rule -> strategy name within a family ("exact", "tuned T" or "sampled")."""
    if family == "sampled":
        return dict(SAMPLED_NAMES)
    return {rule: f"{FAMILY_PREFIX[family]} {rule}" for rule in RULES}


def pattern_check(
    run: TaskRun,
    family: str = "exact",
    k: int | None = None,
    quantiles: tuple[float, ...] = (),
    alpha: float = 0.05,
    n_resamples: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Does the paper's pattern hold? Each Bayes-optimal rule against every other rule of its family.

    For each metric of :data:`PATTERN_METRICS` (the rule on its card: RMSE -> mean, MAE -> median,
    exact match -> mode) and pinball at each level of ``quantiles`` (-> that exact quantile rule),
    a paired bootstrap test of the expected winner against each rival on the same resamples gives
    the difference and its two-sided p-value. The verdict comes from the tests, not from point
    estimates:

    * ``holds``: the expected winner is better than every rival with p < ``alpha``;
    * ``fails``: some rival is better than it with p < ``alpha``;
    * ``inconclusive``: neither (ties, identical predictions or too few items).

    Args:
        run: the decoded task.
        family: "exact", "tuned T" (needs ``run.tuned_temperature``) or "sampled".
        k: use the first k samples (sampled family).
        quantiles: pinball levels to check (exact family only).
        alpha: the test level.
        n_resamples: bootstrap resamples of each paired test.
        seed: seeds the resamples (the same indices for every pair).

    Returns:
        One row per metric: expected winner, observed winner (point estimates), verdict, ``holds``,
        and per rival ``diff vs R`` (winner minus rival; lower is better for losses) and ``p vs R``.
    """
    strategies = strategy_predictions(run, k, quantiles if family == "exact" else ())
    names = family_names(family)
    if not all(name in strategies for name in names.values()):
        return pd.DataFrame()
    checks = [(metric, rule) for metric, rule in EXPECTED_WINNER.items()]
    if family == "exact":
        checks += [(f"pinball@{level:g}", f"q{level:g}") for level in quantiles]
    rows = []
    for metric, expected in checks:
        candidates = dict(names)
        if metric.startswith("pinball@"):
            candidates[expected] = f"exact {expected}"
        name, params, gold = _metric_call(metric, run)
        higher = get_metric(name).higher_is_better
        point = {
            rule: float(np.mean(_score(name, strategies[s].predictions, gold, params)))
            for rule, s in candidates.items()
        }
        best = (max if higher else min)(point.values())
        row = {
            "metric": metric,
            "family": family,
            "expected winner": expected,
            "observed winner": " = ".join(r for r, v in point.items() if np.isclose(v, best, rtol=0, atol=1e-12)),
            "expected rule's strategy": candidates[expected],
            "n": len(gold),
        }
        better, worse = [], []
        for rule, strategy in candidates.items():
            if rule == expected:
                continue
            test = paired_bootstrap(
                name,
                strategies[candidates[expected]].predictions,
                strategies[strategy].predictions,
                gold,
                n_resamples=n_resamples,
                seed=seed,
                **params,
            )
            difference, p = test.difference.estimate, test.p_value
            row[f"diff vs {rule}"], row[f"p vs {rule}"] = difference, p
            in_favour = difference > 0 if higher else difference < 0
            better.append(in_favour and p < alpha)
            worse.append(not in_favour and difference != 0 and p < alpha)
        row["verdict"] = "holds" if all(better) else "fails" if any(worse) else "inconclusive"
        row["holds"] = row["verdict"] == "holds"
        row.update({rule: value for rule, value in point.items()})
        rows.append(row)
    return pd.DataFrame(rows).set_index("metric")


def _score(metric: str, predictions: np.ndarray, gold: np.ndarray, params: dict) -> float:
    return float(np.mean(get_metric(metric)(predictions, gold, **params)))


def synthetic_run(items: int = 2000, k: int = 64, concentration=(0.6, 0.3, 0.3, 0.3, 1.2), seed: int = 0) -> TaskRun:
    """A perfectly calibrated "model" on a 1..5 rating task, where the truth is known.

    Each item has its own distribution over 1..5 (drawn from a Dirichlet); the gold answer and the
    K samples are drawn from it, and the exact distribution is the distribution itself. Here each
    rule is provably Bayes-optimal for its metric, so it must win it (up to noise). The greedy answer
    is the mode, as greedy decoding of a one-token answer would be.
    """
    rng = np.random.default_rng(seed)
    grid = np.arange(1.0, 6.0)
    probs = rng.dirichlet(concentration, size=items)
    cumulative = probs.cumsum(axis=1)
    draw = lambda n: grid[(rng.random((items, n, 1)) > cumulative[:, None, :]).sum(axis=2)]  # noqa: E731
    gold, samples = draw(1)[:, 0], draw(k)
    return TaskRun(
        task="synthetic",
        config=RunConfig(split="synthetic", limit=items, shots=0, k=k),
        fingerprint={"name": "synthetic"},
        sampler="synthetic draws from the known distributions",
        ids=[f"synthetic/{i}" for i in range(items)],
        gold=gold,
        greedy=grid[probs.argmax(axis=1)].tolist(),
        samples=samples.tolist(),
        grid=grid,
        exact_probs=probs,
        outside_mass=np.zeros(items),
    )
