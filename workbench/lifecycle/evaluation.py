"""Evaluate a model stage: perplexity on held-out text, and classification metrics read off the
exact answer distribution.

For a rating task the model's prediction is not one sampled answer but the exact distribution over
the answer grid (the engine's exact ``score``). Grid values are grouped into classes
(SST-5: the five ratings; STS-B: five bins of width 1), which gives class probabilities for
accuracy, macro F1 / precision / recall, one-vs-rest AUC and the expected calibration error; the
distribution's mean gives the RMSE. Per-slice tables (SST-5 by sentence length, STS-B by genre)
show where a stage does worse. Everything comes back as pandas DataFrames.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure  # noqa: F401  (doctests)

from workbench.inference.engine import HFEngine
from workbench.inference.models import LoadedModel
from workbench.inference.protocol import ChatEngine
from workbench.metric_aware.metrics import get_metric, list_metrics
from workbench.tasks import Example, Task
from workbench.tasks.grid import nearest_grid_index, snap_to_grid


def classification_metrics(labels: Sequence[int], probs: np.ndarray) -> dict[str, float]:
    """Accuracy and every class-probability metric of the registry (macro F1 / precision /
    recall, one-vs-rest AUC, ECE, NLL), from class probabilities.

    Args:
        labels: (n,) gold class indices.
        probs: (n, C) class probabilities.

    >>> metrics = classification_metrics([0, 1, 1], np.array([[.8, .2], [.3, .7], [.6, .4]]))
    >>> round(metrics["accuracy"], 3), round(metrics["macro_f1"], 3), metrics["auc_ovr"]
    (0.667, 0.667, 1.0)
    """
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=float)
    result = {"accuracy": float(get_metric("accuracy")(probs.argmax(axis=1), labels).mean())}
    result.update({name: float(get_metric(name)(probs, labels)) for name in list_metrics(data="probs")})
    return result


# ---------------------------------------------------------------------------------------- grid -> classes


@dataclass
class ClassScheme:
    """How grid values and gold targets fall into classes.

    Attributes:
        names: class names.
        edges: inner boundaries; class i holds values in [edges[i-1], edges[i]).
    """

    names: list[str]
    edges: list[float]

    def of(self, values) -> np.ndarray:
        """Class index of each value.

        >>> ClassScheme(["low", "high"], [2.5]).of([1.0, 2.5, 4.0]).tolist()
        [0, 1, 1]
        """
        return np.digitize(np.asarray(values, dtype=float), self.edges)


def class_scheme(task: Task, bins: int = 5) -> ClassScheme:
    """Integer grids (SST-5 ratings): one class per value. Others (STS-B 0.0..5.0): ``bins`` equal-width bins."""
    grid = np.asarray(task.grid, dtype=float)
    if np.allclose(grid, np.round(grid)) and len(grid) <= 10:
        return ClassScheme([task.grid_format.format(v) for v in grid], list((grid[1:] + grid[:-1]) / 2))
    edges = np.linspace(grid.min(), grid.max(), bins + 1)
    return ClassScheme([f"{lo:g}-{hi:g}" for lo, hi in zip(edges[:-1], edges[1:])], list(edges[1:-1]))


@dataclass
class Predictions:
    """The exact answer distribution of a stage on a set of examples.

    Attributes:
        task: the task.
        examples: the examples scored.
        probs: (n, K) probabilities over the grid (renormalised on it).
        outside_mass: (n,) probability of answers off the grid.
        scheme: the grid's classes.
    """

    task: Task
    examples: list[Example]
    probs: np.ndarray
    outside_mass: np.ndarray
    scheme: ClassScheme

    @property
    def targets(self) -> np.ndarray:
        return np.array([float(e.target) for e in self.examples])

    @property
    def expected(self) -> np.ndarray:
        """Mean of each distribution: the answer that minimises squared error."""
        return self.probs @ np.asarray(self.task.grid, dtype=float)

    @property
    def class_probs(self) -> np.ndarray:
        """(n, C) probability of each class: the grid probabilities summed within classes."""
        membership = np.eye(len(self.scheme.names))[self.scheme.of(self.task.grid)]  # (K, C)
        return self.probs @ membership

    def metrics(self, rows: np.ndarray | None = None) -> dict[str, float]:
        """Classification metrics, RMSE of the mean and mass outside the grid, on every example or on the
        boolean selection ``rows``."""
        rows = np.ones(len(self.examples), dtype=bool) if rows is None else rows
        labels = self.scheme.of(self.targets[rows])
        result = {"n": int(rows.sum()), **classification_metrics(labels, self.class_probs[rows])}
        result["rmse"] = float(get_metric("rmse")(self.expected[rows], self.targets[rows]))
        result["outside_mass"] = float(self.outside_mass[rows].mean())
        return result


def predict(engine: ChatEngine, task: Task, examples: list[Example], shots: Sequence[Example] = ()) -> Predictions:
    """Score every grid answer for each example's prompt (zero-shot unless ``shots`` are given).

    ``engine``: any backend with the model's tokenizer (its chat template formats the prompts).
    """
    prompts = task.prompts(examples, engine.tokenizer, list(shots))
    scored = engine.score(prompts, task.candidates)
    return Predictions(task, list(examples), scored.probs, scored.outside_mass, class_scheme(task))


def is_rating_task(task: Task) -> bool:
    """Integer grids of at most 10 values (SST-5 ratings) are judged by accuracy, other grids by RMSE."""
    grid = np.asarray(task.grid, dtype=float)
    return bool(np.allclose(grid, np.round(grid)) and len(grid) <= 10)


def task_scores(predictions: Predictions) -> dict[str, float]:
    """Accuracy of the exact mode (on the grid), RMSE / MAE / Spearman of the exact mean, NLL of the
    gold answer on the grid (gold snapped to the nearest grid value), mass outside the grid.

    The selection metric of the task (see :func:`selection_loss`) is among them.
    """
    grid = np.asarray(predictions.task.grid, dtype=float)
    targets = predictions.targets
    snapped = snap_to_grid(targets, grid)
    mode = grid[predictions.probs.argmax(axis=1)]
    expected = predictions.expected
    return {
        "accuracy": float(np.mean(mode == snapped)),
        "rmse": float(get_metric("rmse")(expected, targets)),
        "mae": float(get_metric("mae")(expected, targets)),
        "spearman": float(get_metric("spearman")(expected, targets)) if np.ptp(expected) > 0 else float("nan"),
        "nll": float(get_metric("nll")(predictions.probs, nearest_grid_index(targets, grid))),
        "outside_mass": float(predictions.outside_mass.mean()),
        "target_sd": float(np.std(targets)),
    }


def selection_loss(scores: dict[str, dict[str, float]], rating_tasks: set[str]) -> float:
    """One number to minimise for model selection over several tasks (lower is better).

    The mean over tasks of ``1 - accuracy`` for rating tasks and ``RMSE / sd(gold)`` for score
    tasks: both are 0 for a perfect model and about 1 for a model without item-level skill
    (a constant at the gold mean has RMSE = sd; chance accuracy on 5 classes is 0.2).

    >>> selection_loss({"a": {"accuracy": 0.5}, "b": {"rmse": 1.0, "target_sd": 2.0}}, {"a"})
    0.5
    """
    terms = [
        1.0 - s["accuracy"] if name in rating_tasks else s["rmse"] / max(s["target_sd"], 1e-9)
        for name, s in scores.items()
    ]
    return float(np.mean(terms))


def dev_scores(
    engine: ChatEngine, sets: dict[str, tuple[Task, list[Example]]]
) -> tuple[dict[str, dict[str, float]], float]:
    """:func:`task_scores` of every task and their :func:`selection_loss`, from exact grid scoring."""
    scores = {name: task_scores(predict(engine, task, examples)) for name, (task, examples) in sets.items()}
    return scores, selection_loss(scores, {name for name, (task, _) in sets.items() if is_rating_task(task)})


# ---------------------------------------------------------------------------------------- slices


def length_bucket(example: Example, edges: Sequence[int] = (10, 20)) -> str:
    """A coarse length slice of the example's text, in whitespace words.

    >>> length_bucket(Example("x", "a b c", 1.0)), length_bucket(Example("y", "w " * 25, 1.0))
    ('<=10 words', '>20 words')
    """
    words = len(example.text.split())
    for lower, upper in zip((0, *edges), edges):
        if words <= upper:
            return f"<={upper} words" if lower == 0 else f"{lower + 1}-{upper} words"
    return f">{edges[-1]} words"


def genre(example: Example) -> str:
    """The STS-B genre (main-news, main-captions, main-forums)."""
    return example.meta.get("genre", "unknown")


SLICERS: dict[str, tuple[str, Callable[[Example], str]]] = {"sst5": ("length", length_bucket), "stsb": ("genre", genre)}


def slice_metrics(predictions: Predictions, slicer: Callable[[Example], str], slicing: str = "slice") -> pd.DataFrame:
    """Metrics per slice (one row each, sorted by slice name), to expose uneven quality."""
    keys = np.array([slicer(e) for e in predictions.examples])
    rows = [{"slicing": slicing, "slice": key, **predictions.metrics(keys == key)} for key in sorted(set(keys))]
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------- perplexity


@torch.inference_mode()
def perplexity(
    lm: LoadedModel, texts: Sequence[str], max_length: int = 128, stride: int = 64, batch_size: int = 8
) -> dict[str, float]:
    """Token-weighted perplexity of ``texts`` with a sliding window.

    The texts form one stream, each preceded by the end-of-turn token, so every token of every
    text (and its closing separator) is predicted. Windows of ``max_length`` tokens start every
    ``stride`` tokens (see :func:`sliding_windows`); each token is scored once, in the first
    window that has it past the previous window's end, so past the first window it sees at least
    ``max(max_length - stride, 1)`` tokens of context.

    Returns:
        ``{"perplexity": exp(mean NLL), "nll": mean NLL per token, "tokens": tokens scored}``.
    """
    if not 0 < stride <= max_length:
        raise ValueError("need 0 < stride <= max_length")
    tokenizer, model = lm.tokenizer, lm.model
    stream = []
    for text in texts:
        stream += [tokenizer.eos_token_id] + tokenizer(text, add_special_tokens=False)["input_ids"]
    stream.append(tokenizer.eos_token_id)
    windows = sliding_windows(len(stream), max_length, stride)
    total, count = 0.0, 0
    for start in range(0, len(windows), batch_size):
        batch = windows[start : start + batch_size]
        width = max(end - begin for begin, end, _ in batch)
        scored = max(n for _, _, n in batch)
        input_ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, (begin, end, _) in enumerate(batch):  # left padding: every window ends in the last column
            input_ids[row, width - (end - begin) :] = torch.tensor(stream[begin:end])
            mask[row, width - (end - begin) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = model(
            input_ids=input_ids.to(lm.device),
            attention_mask=mask.to(lm.device),
            position_ids=positions.to(lm.device),
            logits_to_keep=scored + 1,
        )
        logprobs = torch.log_softmax(out.logits[:, :-1].float(), dim=-1).cpu()
        targets = input_ids[:, width - scored :]
        picked = logprobs.gather(2, targets[:, :, None])[:, :, 0]
        keep = torch.arange(scored)[None, :] >= torch.tensor([scored - n for _, _, n in batch])[:, None]
        total -= float(picked[keep].double().sum())
        count += int(keep.sum())
    return {"perplexity": float(np.exp(total / count)), "nll": total / count, "tokens": count}


def sliding_windows(length: int, max_length: int, stride: int) -> list[tuple[int, int, int]]:
    """``(begin, end, scored)`` per window: tokens ``end - scored .. end - 1`` are scored there.

    >>> sliding_windows(10, max_length=6, stride=3)
    [(0, 6, 5), (3, 9, 3), (6, 10, 1)]
    >>> sliding_windows(10, max_length=5, stride=5)
    [(0, 5, 4), (4, 9, 4), (8, 10, 1)]
    """
    windows, previous_end, begin = [], 0, 0
    while True:
        end = min(begin + max_length, length)
        windows.append((begin, end, end - max(previous_end, begin + 1)))
        if end == length:
            return windows
        # A window's first token is context only, so the next window starts at most at this one's
        # last token: with stride == max_length no token goes unscored.
        previous_end, begin = end, min(begin + stride, end - 1)


# ---------------------------------------------------------------------------------------- a stage


@dataclass
class Evaluation:
    """One stage evaluated on several tasks.

    Attributes:
        metrics: one row per task: stage, task, n, perplexity on the task's held-out text, then
            :meth:`Predictions.metrics`.
        slices: one row per (task, slice).
        predictions: ``{task: Predictions}``.
    """

    metrics: pd.DataFrame
    slices: pd.DataFrame
    predictions: dict[str, Predictions]


def evaluate_stage(
    stage: str,
    lm: LoadedModel | HFEngine,
    sets: dict[str, tuple[Task, list[Example]]],
    ppl_length: int = 128,
    ppl_stride: int = 64,
) -> Evaluation:
    """Perplexity, classification metrics and per-slice metrics of one stage.

    Args:
        stage: the stage name written in every row.
        lm: the model, or an :class:`HFEngine` around it (its disk cache then spares repeated scoring).
        sets: ``{task name: (task, held-out examples)}``; the examples' texts also serve as the
            held-out text for perplexity.
        ppl_length: perplexity window.
        ppl_stride: perplexity stride.
    """
    engine = lm if isinstance(lm, HFEngine) else HFEngine(lm, cache=None, progress=False)
    rows, slices, predictions = [], [], {}
    for name, (task, examples) in sets.items():
        texts = [t for e in examples for t in (e.text, e.text_b) if t]
        ppl = perplexity(engine.lm, texts, ppl_length, ppl_stride)
        predictions[name] = predict(engine, task, examples)
        rows.append({"stage": stage, "task": name, "perplexity": ppl["perplexity"], **predictions[name].metrics()})
        if name in SLICERS:
            slicing, slicer = SLICERS[name]
            slices.append(slice_metrics(predictions[name], slicer, slicing).assign(stage=stage, task=name))
    slice_table = pd.concat(slices, ignore_index=True) if slices else pd.DataFrame()
    return Evaluation(pd.DataFrame(rows), slice_table, predictions)


def plot_metric(
    axes: Axes, table: pd.DataFrame, metric: str, x: str = "task", hue: str = "stage", title: str = ""
) -> Axes:
    """Grouped bars of ``metric``: one group per value of column ``x``, one bar per ``hue``.

    >>> table = pd.DataFrame({"stage": ["a", "b"], "task": ["t", "t"], "accuracy": [0.2, 0.5]})
    >>> [round(float(bar.get_height()), 1) for bar in plot_metric(Figure().add_subplot(), table, "accuracy").patches]
    [0.2, 0.5]
    """
    pivot = table.pivot_table(index=x, columns=hue, values=metric, aggfunc="first", sort=False)
    width = 0.8 / max(len(pivot.columns), 1)
    positions = np.arange(len(pivot))
    for offset, name in enumerate(pivot.columns):
        axes.bar(positions + (offset - (len(pivot.columns) - 1) / 2) * width, pivot[name], width=width, label=str(name))
    axes.set_xticks(positions, [str(v) for v in pivot.index])
    axes.set(title=title or metric, ylabel=metric)
    axes.legend(fontsize=8)
    return axes
