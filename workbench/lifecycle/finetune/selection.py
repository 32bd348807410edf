"""Model selection on dev task metrics, not on training loss.

Every ``eval_every`` steps the dev examples are scored over the grid
(:func:`workbench.lifecycle.evaluation.dev_scores`: accuracy of the exact mode for rating tasks,
RMSE of the exact mean for scores); the training loop keeps the best weights and stops after
``patience`` evaluations without improvement.
"""

from __future__ import annotations

import numpy as np
import torch

from workbench.inference.engine import HFEngine
from workbench.inference.types import GridScore
from workbench.lifecycle.evaluation import dev_scores
from workbench.lifecycle.finetune.config import FinetuneConfig, resolve_task
from workbench.lifecycle.finetune.model import as_loaded_model, precision_autocast
from workbench.lifecycle.regression_loss import candidate_tokens, grid_logprobs
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


class TrunkScorer:
    """Exact grid scores of an in-memory model from its frozen trunk's cached outputs: what
    :meth:`HFEngine.score <workbench.inference.engine.HFEngine.score>` computes (P(answer, then end of turn |
    prompt) for every grid answer, in one pass over the answer tree), with only the layers above the trunk run.

    The dev items are the same at every evaluation of a run, and in every arm and search trial over the same dev
    subset, so the lower layers' outputs for their prompts and answer trees are computed at the first evaluation
    and read by all later ones (:class:`~workbench.lifecycle.finetune.trunk.FrozenTrunk`): an evaluation then costs
    the top layers only. Side by side on the idle 2-core CPU (``python benchmarks/dev_evaluation.py --repeats 2``,
    the default recipe's 600 dev items, bf16 autocast): whole model 52.4 s, first evaluation from an empty trunk
    54.6 s, every later one 21.6 s (2.42x). The numbers equal the whole model's up to rounding (another batch
    layout sums in another order): on the untrained model the selection loss differed by 0.0012 (1.0143 against
    1.0131) and SST-5's Spearman by 0.019, its grid distributions being nearly flat. The same class scores the
    fine-tuned stages that share the base model's lower layers (:func:`~workbench.lifecycle.finetune.trunk.
    scoring_trunk`) as an engine's ``grid_scorer``.

    Args:
        model: the model, its lower layers those of ``trunk``.
        tokenizer: its tokenizer.
        trunk: a :class:`~workbench.lifecycle.finetune.trunk.FrozenTrunk` of the model.
        batch_size: prompts per pass (sorted by length, as the engine batches them).
    """

    def __init__(self, model, tokenizer, trunk, batch_size: int = 16):
        self.model, self.tokenizer, self.trunk, self.batch_size = model, tokenizer, trunk, batch_size
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    @torch.no_grad()  # not inference_mode: the trunk keeps what it computes, and training steps may read it later
    def logprobs(self, token_ids: list[list[int]], answers: list[list[int]]) -> np.ndarray:
        """(B, K) log P(answer k's tokens | prompt b) for B prompts and K answers given as token ids (each answer's
        last token the end of turn), the same answers after every prompt."""
        order = sorted(range(len(token_ids)), key=lambda i: len(token_ids[i]))
        out = np.empty((len(token_ids), len(answers)), dtype=np.float64)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            rows = grid_logprobs(self.model, [token_ids[i] for i in batch], answers, self.pad_id, trunk=self.trunk)
            out[batch] = rows.double().cpu().numpy()
        return out

    def score(self, prompts: list[str], candidates: list[str], temperature: float = 1.0) -> GridScore:
        """(B, K) log-probabilities of the K ``candidates`` after each of the B formatted ``prompts``."""
        if temperature != 1.0:
            raise ValueError("TrunkScorer scores at temperature 1 only (the dev selection's distribution)")
        ids = self.tokenizer(prompts, add_special_tokens=False)["input_ids"]
        # a task's prompts end alike, so the answers tokenise alike after each (as the training loss assumes)
        return GridScore(list(candidates), self.logprobs(ids, candidate_tokens(self.tokenizer, ids[0], candidates)))


def evaluate_dev(
    model,
    tokenizer,
    sets: dict[str, tuple[Task, list[Example]]],
    precision: str = "bf16",
    name: str = "dev",
    trunk=None,
) -> tuple[dict, float]:
    """Dev task scores and selection loss of an in-memory model (exact grid scoring, no disk cache).

    With ``trunk`` (the run's frozen trunk) the scores come from :class:`TrunkScorer`, else from an
    :class:`~workbench.inference.engine.HFEngine` over the whole model.
    """
    was_training = model.training
    model.eval()
    if trunk is not None:
        engine = TrunkScorer(model, tokenizer, trunk)
    else:
        engine = HFEngine(as_loaded_model(model, tokenizer, name), cache=None, progress=False)
    with precision_autocast(next(model.parameters()).device, precision):
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
