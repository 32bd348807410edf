"""The fine-tuned stage of the workbench, end to end and cached: prepared data, hyper-parameter
search on the dev objective, then one final run per training objective (the fine-tuned arms of the
ladder, :mod:`workbench.metric_aware.ladder`) with dev-based model selection; the default fine-tuned
model is the arm with the lowest dev selection loss (:func:`finetuned`).

Notebook 04 runs these steps one by one and shows them; notebooks 02 and 03 call
:func:`finetuned` and get the same model from the cache (every trial and the final run live in
folders named after a hash of their configuration and data, see
:func:`workbench.lifecycle.finetune.run_dir`), so whichever notebook runs first pays for training
and the others cost nothing. An interrupted run resumes from its last checkpoint.

Why this recipe (measured with ``benchmarks/finetune_throughput.py`` on the 2-core CPU): bf16
autocast, logits at the answer positions only and training the top layers while the lower ones run
without gradients are each several times faster than a naive full fine-tune; see the README.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pandas as pd

from workbench.lifecycle import dataprep
from workbench.lifecycle.finetune import FinetuneConfig, FinetuneResult, finetune, resolve_task, run_dir
from workbench.lifecycle.hpo import SearchSpace, best_config, dev_objective, search_all
from workbench.profiles import load_profile
from workbench.tasks import Example
from workbench.text import clean_text, normalized_key

TASKS = ("sst5", "stsb", "sick")  # one multi-task model: the ladder's three scoring tasks


@dataclass
class Profile:
    """Sizes of one profile (read by :func:`profile_sizes` from the profile's YAML file).

    Attributes:
        final: the final run's settings (the searched fields are replaced by the search's choice).
        hpo_examples: training examples per task of each search trial.
        arm_examples: training examples per task of each small arm of the cost study (:func:`arm_config`).
        hpo_steps: steps per search trial (the search picks among these).
        dev: dev items per task for model selection (a seeded subset of the dev split).
        hpo_dev: dev items per task for scoring a search trial.
        trials: trials per search method (grid, random, TPE).
        space: the learning rates the search tries.
        objectives: the objectives of the fine-tuned arms, each trained like the final run (same examples,
            steps and learning rate); the one with the lowest dev selection loss is the default model.
    """

    final: FinetuneConfig
    hpo_examples: int
    arm_examples: int
    hpo_steps: tuple[int, ...]
    dev: int
    hpo_dev: int
    trials: int
    space: SearchSpace = field(default_factory=SearchSpace)
    objectives: tuple[str, ...] = ("ce", "soft", "mix")


def profile_sizes(profile: str) -> Profile:
    """The sizes of a profile, read from the ``finetune`` section of ``workbench/profiles/<profile>.yaml``.

    >>> profile_sizes("smoke").final.train_layers, profile_sizes("smoke").space.max_steps
    (2, (1, 2))
    """
    sizes = dict(load_profile(profile)["finetune"])
    space = {name: tuple(values) for name, values in sizes.pop("space").items()}
    return Profile(
        final=FinetuneConfig(**sizes.pop("final")),
        space=SearchSpace(**space),
        hpo_steps=tuple(sizes.pop("hpo_steps")),
        objectives=tuple(sizes.pop("objectives")),
        **sizes,
    )


def _cleaned(task_name: str, examples: list[Example]) -> list[Example]:
    ptb = task_name == "sst5"  # SST text is PTB-tokenised
    return [
        replace(e, text=clean_text(e.text, ptb=ptb), text_b=e.text_b and clean_text(e.text_b, ptb=ptb))
        for e in examples
    ]


def _key(example: Example) -> str:
    return normalized_key(example.text + " || " + (example.text_b or ""))


def prepared_splits(tasks=TASKS) -> tuple[dict[str, dict[str, list[Example]]], pd.DataFrame]:
    """Cleaned train/dev/test splits per task, the training set de-duplicated and stripped of items
    whose text occurs in dev or test (leakage), and a report of what was removed."""
    splits, report = {}, []
    for spec in tasks:
        task = resolve_task(spec)
        parts = {split: _cleaned(task.name, task.examples(split)) for split in ("train", "dev", "test")}
        dedup = dataprep.deduplicate(parts["train"], text=_key)
        held_out = {_key(e) for split in ("dev", "test") for e in parts[split]}
        train = [e for e in dedup.kept if _key(e) not in held_out]
        report.append(
            {
                "task": task.name,
                "train (raw)": len(parts["train"]),
                "exact dups": dedup.exact_duplicates,
                "near dups": dedup.normalized_duplicates,
                "leaked into dev/test": len(dedup.kept) - len(train),
                "train (clean)": len(train),
                "dev": len(parts["dev"]),
                "test": len(parts["test"]),
            }
        )
        splits[task.name] = {**parts, "train": train}
    return splits, pd.DataFrame(report).set_index("task")


def base_config(profile: str, model: str, device: str = "auto", seed: int = 0, tasks=TASKS) -> FinetuneConfig:
    """The final run's config of a profile, before the search fills in its choices."""
    sizes = profile_sizes(profile)
    return replace(sizes.final, tasks=tuple(tasks), base=model, device=device, seed=seed, dev_examples=sizes.dev)


def dev_subsets(splits, size: int, seed: int = 0) -> dict[str, list[Example]]:
    """A seeded subset of ``size`` dev items per task."""
    import random

    return {
        name: random.Random(seed).sample(parts["dev"], min(size, len(parts["dev"]))) for name, parts in splits.items()
    }


def search(profile: str, base: FinetuneConfig, splits, seed: int = 0) -> pd.DataFrame:
    """Grid, random and TPE search over the learning rate on the dev selection loss (cached trials)."""
    sizes = profile_sizes(profile)
    trial_base = replace(base, max_examples=sizes.hpo_examples, eval_every=0, patience=None)
    train = {name: parts["train"] for name, parts in splits.items()}
    objective = dev_objective(dev_subsets(splits, sizes.hpo_dev, seed), train=train, cache=True)
    return search_all(objective, trial_base, sizes.space, n_trials=sizes.trials, seed=seed)


def arm_config(profile: str, base: FinetuneConfig, table: pd.DataFrame, **changes) -> FinetuneConfig:
    """One small arm of the cost study (:mod:`workbench.cost.stage_grid`): ``arm_examples`` per task, one epoch,
    the search's learning rate, no dev selection; ``changes`` replace fields (objective, seed, method, lr, tasks, ...).

    >>> import pandas as pd
    >>> table = pd.DataFrame({"lr": [3e-4], "objective": [1.0], "batch_size": [16], "max_steps": [16]})
    >>> config = arm_config("smoke", FinetuneConfig(method="full"), table, objective="soft", tasks=("stsb",))
    >>> config.objective, config.tasks, config.max_steps, config.patience
    ('soft', ('stsb',), None, None)
    """
    sizes = profile_sizes(profile)
    config = replace(
        best_config(table, base),
        max_examples=sizes.arm_examples,
        epochs=1,
        max_steps=None,
        eval_every=0,
        patience=None,
        save_every=0,
    )
    return replace(config, **changes)


def train_arm(
    profile: str, base: FinetuneConfig, table: pd.DataFrame, splits, dev_seed: int = 0, fraction: float = 1.0, **changes
) -> FinetuneResult:
    """Train (or reuse from the cache) one arm (:func:`arm_config`) on ``splits`` of its tasks, dev items of
    ``dev_seed`` (a ``seed`` among ``changes`` seeds the training run itself).

    An arm with the same settings is the same cached run.

    Args:
        fraction: train this share of the arm's steps (0.25: a quarter), a shorter run of its own (the learning rate
            warms up and decays over the shorter run), not a snapshot of the full one.
    """
    config = arm_config(profile, base, table, **changes)
    names = [resolve_task(spec).name for spec in config.tasks]
    train = {name: splits[name]["train"] for name in names}
    dev = dev_subsets({name: splits[name] for name in names}, profile_sizes(profile).dev, dev_seed)
    if fraction != 1.0:
        steps = sum(-(-min(config.examples_of(n) or len(train[n]), len(train[n])) // config.batch_size) for n in names)
        config = replace(config, max_steps=max(1, round(fraction * steps)))
    config = replace(config, output_dir=str(run_dir(config, train, dev=dev)))
    return finetune(config, examples=train, dev=dev, progress=False)


def final_config(
    profile: str, base: FinetuneConfig, table: pd.DataFrame, objective: str | None = None
) -> FinetuneConfig:
    """The final run: the profile's settings (objective included, unless given) with the learning rate of
    the search's best trial."""
    chosen = best_config(table, base)
    return replace(base, lr=chosen.lr, objective=objective or base.objective)


def train_final(config: FinetuneConfig, splits, progress: bool = True) -> FinetuneResult:
    """The final run in its cache folder (reused when finished, resumed when interrupted)."""
    train = {name: parts["train"] for name, parts in splits.items()}
    dev = dev_subsets(splits, config.dev_examples or 200, config.seed)
    config = replace(config, output_dir=str(run_dir(config, train, dev=dev)))
    return finetune(config, examples=train, dev=dev, progress=progress)


def arm_results(
    profile: str, model: str, device: str = "auto", seed: int = 0, progress: bool = True
) -> dict[str, FinetuneResult]:
    """``{objective: final run}`` of every objective of the profile: prepared data, search, then one final run
    per objective with the search's learning rate, the same examples and the same steps (every run cached)."""
    splits, _ = prepared_splits()
    base = base_config(profile, model, device, seed)
    table = search(profile, base, splits, seed)
    return {
        objective: train_final(final_config(profile, base, table, objective), splits, progress)
        for objective in profile_sizes(profile).objectives
    }


def kept_record(result: FinetuneResult) -> dict:
    """The dev evaluation of the kept weights (``best_step``; the last evaluation if none matches)."""
    matching = [record for record in result.dev_history if record["step"] == result.best_step]
    return (matching or result.dev_history)[-1]


def objective_table(results: dict[str, FinetuneResult]) -> pd.DataFrame:
    """One row per (objective, task): steps, examples, the kept weights' dev scores and dev selection loss."""
    rows = []
    for objective, result in results.items():
        record = kept_record(result)
        for task_name, scores in record["scores"].items():
            rows.append(
                {
                    "objective": objective,
                    "task": task_name,
                    "steps": result.steps,
                    "kept step": result.best_step,
                    "train examples": result.examples,
                    **{k: v for k, v in scores.items() if k != "target_sd"},
                    "selection loss": record["objective"],
                    "examples/s": result.throughput.get("examples_per_s"),
                }
            )
    return pd.DataFrame(rows)


def best_objective(results: dict[str, FinetuneResult]) -> str:
    """The objective whose kept weights have the lowest dev selection loss (ties: the first listed).

    The same dev items select each arm's checkpoint and compare the arms; every arm gets that advantage alike.
    """
    return winner(objective_table(results))


def winner(table: pd.DataFrame) -> str:
    """The dev winner of an :func:`objective_table` (the rule of :func:`best_objective`), read from the table that
    notebook 04 writes (``04_objectives.csv``) as well as from runs.

    >>> winner(pd.DataFrame({"objective": ["ce", "ce", "soft", "soft"], "selection loss": [0.6, 0.6, 0.5, 0.5]}))
    'soft'
    """
    losses = table.groupby("objective", sort=False)["selection loss"].first()
    return str(losses.idxmin())


def finetuned(profile: str, model: str, device: str = "auto", seed: int = 0, progress: bool = True) -> FinetuneResult:
    """The default fine-tuned model of a profile: the arm of :func:`arm_results` that wins on dev."""
    results = arm_results(profile, model, device, seed, progress)
    return results[best_objective(results)]
