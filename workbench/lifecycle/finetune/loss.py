"""The training loss of a batch: the answer tokens' cross-entropy (:func:`answer_nll`), or a grid
objective of :mod:`workbench.lifecycle.regression_loss`, as :class:`ObjectiveLoss` picks by the
config's ``objective``.

The cross-entropy covers only the answer and the end token, exactly the probability that
:meth:`workbench.inference.engine.HFEngine.score` reads. The rows of a batch share the system
prompt: that prefix is pushed through the model once and its keys and values are expanded over
the rows (gradients flow back through the expansion), and logits are computed only at the answer
positions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from workbench.lifecycle.finetune.config import FinetuneConfig, resolve_task
from workbench.lifecycle.finetune.encoding import Encoded
from workbench.lifecycle.prefix_batch import Rows, forward_rows
from workbench.lifecycle.regression_loss import candidate_tokens, grid_logprobs, grid_loss


def answer_nll(
    model, batch: list[Encoded], pad_id: int, share_prefix: bool = True, trunk=None
) -> tuple[torch.Tensor, int]:
    """Summed negative log-likelihood of the answer tokens of ``batch``, and their number.

    Layout (:mod:`workbench.lifecycle.prefix_batch`): ``[shared prefix][left pad][rest of each row]``,
    positions counted over real tokens. Answers are then right-aligned, so the logits of only the
    last ``longest answer + 1`` columns are computed. With ``trunk`` (a
    :class:`~workbench.lifecycle.finetune.trunk.FrozenTrunk`), only the layers above it run.
    """
    rows = [e.input_ids for e in batch]
    answer_lens = torch.tensor([len(e.input_ids) - e.answer_start for e in batch])
    longest = int(answer_lens.max())
    # Every row keeps its last prompt token out of the prefix: its logits predict the answer.
    limit = min(e.answer_start for e in batch) - 1
    logits = forward_rows(model, Rows(rows, []), longest + 1, pad_id, limit, share_prefix, trunk)
    logits = logits[:, :-1].float()  # column c predicts the token in column c + 1
    targets = torch.full((len(rows), longest), -100, dtype=torch.long)  # right-aligned, like the rows
    for i, e in enumerate(batch):
        targets[i, longest - int(answer_lens[i]) :] = torch.tensor(e.input_ids[e.answer_start :])
    targets = targets.to(logits.device)
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100, reduction="sum")
    return nll, int(answer_lens.sum())


@torch.inference_mode()
def mean_answer_loss(model, tokenizer, encoded: list[Encoded], batch_size: int = 8) -> float:
    """Token-weighted mean answer NLL over ``encoded`` (a dev-set loss), batched within tasks."""
    was_training = model.training
    model.eval()
    order = sorted(range(len(encoded)), key=lambda i: (encoded[i].task, len(encoded[i].input_ids)))
    total, count = 0.0, 0
    for task in sorted({e.task for e in encoded}):
        indices = [i for i in order if encoded[i].task == task]
        for start in range(0, len(indices), batch_size):
            nll, n = answer_nll(
                model, [encoded[i] for i in indices[start : start + batch_size]], tokenizer.pad_token_id
            )
            total, count = total + float(nll), count + n
    model.train(was_training)
    return total / count


class ObjectiveLoss:
    """The loss of one training batch under ``config.objective``.

    The grid objectives need each task's answer candidates as token ids; they are tokenised once
    per task, after the prompt of the first batch of that task, and kept.
    """

    def __init__(self, model, tokenizer, config: FinetuneConfig, trunk=None):
        self.model, self.tokenizer, self.config, self.trunk = model, tokenizer, config, trunk
        self.tasks = {t.name: t for t in (resolve_task(spec) for spec in config.tasks)}
        self._candidates: dict[str, tuple[list[list[int]], torch.Tensor]] = {}

    def candidates(self, batch: list[Encoded]) -> tuple[list[list[int]], torch.Tensor]:
        name = batch[0].task
        if name not in self._candidates:
            task = self.tasks[name]
            tokens = candidate_tokens(self.tokenizer, batch[0].input_ids[: batch[0].answer_start], task.candidates)
            self._candidates[name] = (tokens, torch.tensor(task.grid, dtype=torch.float32))
        return self._candidates[name]

    def loss(self, batch: list[Encoded]) -> tuple[torch.Tensor, int]:
        """The step's loss and the number of answer tokens it covers."""
        pad = self.tokenizer.pad_token_id
        if self.config.objective == "ce":
            nll, count = answer_nll(self.model, batch, pad, trunk=self.trunk)
            return nll / count, count
        tokens, grid = self.candidates(batch)
        prompts = [e.input_ids[: e.answer_start] for e in batch]
        logprobs = grid_logprobs(self.model, prompts, tokens, pad, trunk=self.trunk)
        gold_index = torch.tensor([tokens.index(e.input_ids[e.answer_start :]) for e in batch], device=logprobs.device)
        weight = {"mse": 1.0, "soft": 0.0}.get(self.config.objective, self.config.mse_weight)
        soft_sd = self.config.soft_sd if self.config.objective.startswith("soft") else None
        gold = torch.tensor([e.target for e in batch]).to(logprobs.device)
        loss, _ = grid_loss(logprobs, grid.to(logprobs.device), gold, gold_index, weight, soft_sd=soft_sd)
        return loss, sum(len(e.input_ids) - e.answer_start for e in batch)
