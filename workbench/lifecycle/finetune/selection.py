"""Model selection on dev task metrics, not on training loss.

Every ``eval_every`` steps the dev examples are scored over the grid
(:func:`workbench.lifecycle.evaluation.dev_scores`: accuracy of the exact mode for rating tasks,
RMSE of the exact mean for scores); the training loop keeps the best weights and stops after
``patience`` evaluations without improvement.
"""

from __future__ import annotations

from workbench.inference.engine import HFEngine
from workbench.lifecycle.evaluation import dev_scores
from workbench.lifecycle.finetune.config import FinetuneConfig, resolve_task
from workbench.lifecycle.finetune.model import as_loaded_model, precision_autocast
from workbench.tasks import Example, Task


def dev_sets(
    config: FinetuneConfig, dev: dict[str, list[Example]] | None = None
) -> dict[str, tuple[Task, list[Example]]]:
    """``{task name: (task, dev examples)}``: the given ones, or a seeded subset of each task's dev split."""
    sets = {}
    for spec in config.tasks:
        task = resolve_task(spec)
        examples = (
            dev[task.name] if dev is not None else task.examples("dev", limit=config.dev_examples, seed=config.seed)
        )
        sets[task.name] = (task, list(examples))
    return sets


def evaluate_dev(
    model, tokenizer, sets: dict[str, tuple[Task, list[Example]]], precision: str = "bf16", name: str = "dev"
) -> tuple[dict, float]:
    """Dev task scores and selection loss of an in-memory model (exact grid scoring, no disk cache)."""
    was_training = model.training
    model.eval()
    engine = HFEngine(as_loaded_model(model, tokenizer, name), cache=None, progress=False)
    with precision_autocast(engine.device, precision):
        scores, objective = dev_scores(engine, sets)
    model.train(was_training)
    return scores, objective


def dev_metrics(scores: dict[str, dict[str, float]]) -> dict[str, float]:
    """One dev evaluation's per-task scores as flat MLflow metric names.

    >>> dev_metrics({"sst5": {"accuracy": 0.4, "rmse": 1.1}})
    {'dev_sst5_accuracy': 0.4, 'dev_sst5_rmse': 1.1}
    """
    return {f"dev_{task}_{name}": value for task, metrics in scores.items() for name, value in metrics.items()}


def dev_summary(objective: float, scores: dict[str, dict[str, float]]) -> str:
    """One dev evaluation as a line of the progress output.

    >>> dev_summary(0.41, {"sst5": {"accuracy": 0.5, "rmse": 1.0, "spearman": 0.6}})
    'dev selection loss 0.4100 sst5: acc 0.500 rmse 1.000 spearman 0.600'
    """
    per_task = (
        f"{task}: acc {s['accuracy']:.3f} rmse {s['rmse']:.3f} spearman {s['spearman']:.3f}"
        for task, s in scores.items()
    )
    return f"dev selection loss {objective:.4f} " + " ".join(per_task)


def evaluations_since_best(history: list[dict], best: tuple[float, int] | None) -> int:
    """Dev evaluations after the best one (``best``: (selection loss, step)): early stopping's count after a resume.

    >>> evaluations_since_best([{"step": 2}, {"step": 4}, {"step": 6}], (0.3, 2))
    2
    """
    return 0 if best is None else sum(1 for record in history if record["step"] > best[1])
