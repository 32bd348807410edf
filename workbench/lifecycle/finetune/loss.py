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
from transformers import DynamicCache

from workbench.lifecycle.finetune.config import FinetuneConfig, resolve_task
from workbench.lifecycle.finetune.encoding import Encoded
from workbench.lifecycle.regression_loss import candidate_tokens, grid_logprobs, grid_loss

MIN_SHARED_PREFIX = 16  # below this, a separate prefix pass costs more than it saves


def answer_nll(model, batch: list[Encoded], pad_id: int, share_prefix: bool = True) -> tuple[torch.Tensor, int]:
    """Summed negative log-likelihood of the answer tokens of ``batch``, and their number.

    Layout (as in :mod:`workbench.inference.engine`): ``[shared prefix][left pad][rest of each row]``, with
    positions counted over real tokens. Answers are then right-aligned, so the logits of only the
    last ``longest answer + 1`` columns are computed.
    """
    device = next(model.parameters()).device
    rows = [e.input_ids for e in batch]
    prefix_len = 0
    if share_prefix and len(rows) > 1:
        # Every row keeps its last prompt token out of the prefix: its logits predict the answer.
        limit = min(e.answer_start for e in batch) - 1
        prefix_len = min(_common_prefix_len(rows), limit)
        prefix_len = prefix_len if prefix_len >= MIN_SHARED_PREFIX else 0
    cache = None
    if prefix_len:
        cache = DynamicCache()
        model(
            input_ids=torch.tensor([rows[0][:prefix_len]], device=device),
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        cache = DynamicCache(
            ddp_cache_data=[
                (layer.keys.expand(len(rows), -1, -1, -1), layer.values.expand(len(rows), -1, -1, -1))
                for layer in cache.layers
            ]
        )
    suffixes = [r[prefix_len:] for r in rows]
    width = max(len(s) for s in suffixes)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, suffix in enumerate(suffixes):
        input_ids[i, width - len(suffix) :] = torch.tensor(suffix)
        mask[i, width - len(suffix) :] = 1
    positions = prefix_len + (mask.cumsum(-1) - 1).clamp(min=0)
    full_mask = torch.cat([torch.ones((len(rows), prefix_len), dtype=torch.long), mask], dim=1)
    answer_lens = torch.tensor([len(e.input_ids) - e.answer_start for e in batch])
    longest = int(answer_lens.max())
    input_ids, full_mask, positions = (t.to(device) for t in (input_ids, full_mask, positions))
    out = model(
        input_ids=input_ids,
        attention_mask=full_mask,
        position_ids=positions,
        past_key_values=cache,
        use_cache=cache is not None,
        logits_to_keep=longest + 1,
    )
    logits = out.logits[:, :-1].float()  # column c predicts the token in column c + 1
    targets = input_ids[:, width - longest :].clone()
    is_answer = torch.arange(longest)[None, :] >= (longest - answer_lens)[:, None]
    targets[~is_answer.to(device)] = -100
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100, reduction="sum")
    return nll, int(is_answer.sum())


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


def _common_prefix_len(rows: list[list[int]]) -> int:
    length = min(len(r) for r in rows)
    for r in rows[1:]:
        length = next((i for i in range(length) if r[i] != rows[0][i]), length)
    return length


class ObjectiveLoss:
    """The loss of one training batch under ``config.objective``.

    The grid objectives need each task's answer candidates as token ids; they are tokenised once
    per task, after the prompt of the first batch of that task, and kept.
    """

    def __init__(self, model, tokenizer, config: FinetuneConfig):
        self.model, self.tokenizer, self.config = model, tokenizer, config
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
            nll, count = answer_nll(self.model, batch, pad)
            return nll / count, count
        tokens, grid = self.candidates(batch)
        logprobs = grid_logprobs(self.model, [e.input_ids[: e.answer_start] for e in batch], tokens, pad)
        gold_index = torch.tensor([tokens.index(e.input_ids[e.answer_start :]) for e in batch], device=logprobs.device)
        weight = {"mse": 1.0, "soft": 0.0}.get(self.config.objective, self.config.mse_weight)
        soft_sd = self.config.soft_sd if self.config.objective.startswith("soft") else None
        gold = torch.tensor([e.target for e in batch]).to(logprobs.device)
        loss, _ = grid_loss(logprobs, grid.to(logprobs.device), gold, gold_index, weight, soft_sd=soft_sd)
        return loss, sum(len(e.input_ids) - e.answer_start for e in batch)
