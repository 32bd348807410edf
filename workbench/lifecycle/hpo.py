"""Hyper-parameter search for fine-tuning: grid, random and Bayesian (optuna TPE) search.

The three searches share one objective (a function of a :class:`FinetuneConfig`, lower is better)
and one search space over learning rate, batch size and number of steps; they differ only in the
optuna sampler that proposes the next trial. With a budget of a few trials, TPE has little to
model: its first half of trials are random start-up trials, the rest are proposed by TPE.

The default objective is the one the final run selects its checkpoint with: the dev selection loss
of :func:`workbench.lifecycle.evaluation.selection_loss` (1 - accuracy of the exact mode for rating
tasks, RMSE of the exact mean / sd of the gold for scores, averaged over tasks). With
``cache=True`` every trial trains in its own cache folder, so a repeated search costs nothing.

    objective = dev_objective(dev={"sst5": dev_examples})
    table = search_all(objective, FinetuneConfig(max_examples=64), SearchSpace(), n_trials=4)
    chosen = best_config(table, FinetuneConfig(max_examples=64))
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import optuna
import pandas as pd

from workbench import tracking
from workbench.inference.engine import HFEngine
from workbench.lifecycle.evaluation import predict
from workbench.lifecycle.finetune import FinetuneConfig, finetune, run_dir
from workbench.lifecycle.finetune.encoding import encode
from workbench.lifecycle.finetune.loss import mean_answer_loss
from workbench.tasks import Example, get_task

METHODS = ("grid", "random", "tpe")


@dataclass
class SearchSpace:
    """Where the searches look.

    Attributes:
        lr: (low, high) learning-rate range, sampled log-uniformly by random and TPE search.
        lr_grid: learning rates tried by grid search (inside ``lr``).
        batch_size: batch sizes to choose from.
        max_steps: step budgets to choose from.
    """

    lr: tuple[float, float] = (1e-4, 3e-3)
    lr_grid: tuple[float, ...] = (3e-4, 1e-3, 3e-3)
    batch_size: tuple[int, ...] = (4, 8)
    max_steps: tuple[int, ...] = (8, 16)

    def grid(self) -> dict[str, list]:
        """The grid for :class:`optuna.samplers.GridSampler`."""
        return {"lr": list(self.lr_grid), "batch_size": list(self.batch_size), "max_steps": list(self.max_steps)}


def dev_objective(
    dev: dict[str, list[Example]],
    train: dict[str, list[Example]] | None = None,
    metric: str = "selection",
    cache: bool = False,
) -> Callable[[FinetuneConfig], float]:
    """An objective that trains a config and scores it on dev examples.

    Args:
        dev: ``{task: dev examples}``.
        train: ``{task: training examples}`` (default: each task's train split).
        metric: "selection" (the dev selection loss the final run uses for model selection),
            "loss" (token-weighted answer NLL) or "rmse" (RMSE of the mean of the exact grid
            distribution against the gold targets, pooled over tasks).
        cache: train each trial in its :func:`run_dir` folder, reusing finished trials.
    """
    if metric not in ("selection", "loss", "rmse"):
        raise ValueError(f"metric must be 'selection', 'loss' or 'rmse', got {metric!r}")

    def objective(config: FinetuneConfig) -> float:
        if metric == "selection":
            if cache:
                config = replace(config, output_dir=str(run_dir(config, train, dev=dev)), save_every=0)
            return finetune(config, examples=train, dev=dev, progress=False).best_objective
        result = finetune(config, examples=train, progress=False)
        if metric == "loss":
            encoded = [
                encode(get_task(name), example, result.tokenizer)
                for name, examples in dev.items()
                for example in examples
            ]
            return mean_answer_loss(result.model, result.tokenizer, encoded)
        engine = HFEngine(result.loaded(), cache=None, progress=False)
        errors = []
        for name, examples in dev.items():
            predictions = predict(engine, get_task(name), examples)
            errors.append(predictions.expected - predictions.targets)
        return float(np.sqrt(np.mean(np.concatenate(errors) ** 2)))

    return objective


def search(
    method: str,
    objective: Callable[[FinetuneConfig], float],
    base: FinetuneConfig,
    space: SearchSpace,
    n_trials: int,
    seed: int = 0,
) -> pd.DataFrame:
    """Run ``n_trials`` trials of one search method.

    Args:
        method: "grid", "random" or "tpe".
        objective: config -> value to minimise (see :func:`dev_objective`).
        base: the config every trial starts from (trials train in memory: no output_dir).
        space: the search space.
        n_trials: the budget.
        seed: seeds the sampler.

    Returns:
        One row per trial: method, trial, lr, batch_size, max_steps, objective, seconds.
    """
    samplers = {
        "grid": lambda: optuna.samplers.GridSampler(space.grid(), seed=seed),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(1, n_trials // 2)),
    }
    if method not in samplers:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=samplers[method]())

    def trial_objective(trial: optuna.Trial) -> float:
        config = replace(
            base,
            lr=trial.suggest_float("lr", *space.lr, log=True),
            batch_size=trial.suggest_categorical("batch_size", list(space.batch_size)),
            max_steps=trial.suggest_categorical("max_steps", list(space.max_steps)),
            output_dir=None,
        )
        started = time.time()
        # Every trial is a tracked run (nested under the notebook's run when there is one).
        with tracking.run(
            f"{method} trial {trial.number}",
            experiment="hpo",
            params={"method": method, "trial": trial.number, **trial.params},
        ) as tracker:
            value = objective(config)
            trial.set_user_attr("seconds", time.time() - started)
            tracker.log_metrics({"objective": value, "seconds": trial.user_attrs["seconds"]})
        return value

    study.optimize(trial_objective, n_trials=n_trials)
    return pd.DataFrame(
        [
            {"method": method, "trial": t.number, **t.params, "objective": t.value, "seconds": t.user_attrs["seconds"]}
            for t in study.trials
        ]
    )


def search_all(
    objective: Callable[[FinetuneConfig], float],
    base: FinetuneConfig,
    space: SearchSpace,
    n_trials: int,
    methods=METHODS,
    seed: int = 0,
) -> pd.DataFrame:
    """:func:`search` with each method in turn, one table.

    Each method gets its own sampler seed (``seed + its index``): with one seed, random search and
    TPE's random start-up trials would propose the very same first configurations.
    """
    return pd.concat(
        [search(method, objective, base, space, n_trials, seed + i) for i, method in enumerate(methods)],
        ignore_index=True,
    )


def best_config(table: pd.DataFrame, base: FinetuneConfig) -> FinetuneConfig:
    """``base`` with the learning rate, batch size and steps of the best trial in ``table``."""
    best = table.loc[table["objective"].idxmin()]
    return replace(base, lr=float(best["lr"]), batch_size=int(best["batch_size"]), max_steps=int(best["max_steps"]))


def save_search(table: pd.DataFrame, chosen: FinetuneConfig, folder: Path, stem: str = "hpo") -> tuple[Path, Path]:
    """Write the trial table to ``<stem>.csv`` and the chosen config to ``<stem>_chosen_config.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    table_path, config_path = folder / f"{stem}.csv", folder / f"{stem}_chosen_config.json"
    table.to_csv(table_path, index=False)
    best = table.loc[table["objective"].idxmin()]
    config_path.write_text(
        json.dumps(
            {"config": asdict(chosen), "objective": float(best["objective"]), "found_by": best["method"]}, indent=1
        )
    )
    return table_path, config_path
