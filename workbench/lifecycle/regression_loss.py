"""A regression-aware training objective: the squared error of the model's exact predictive mean.

Cross-entropy on the gold answer treats "2" as just as wrong as "5" when the gold rating is 1. The
metric-aware decision rules score the *mean* of the model's distribution over the answer grid with
squared error, so this objective trains that quantity directly (in the spirit of regression-aware
fine-tuning, beyond Lukasik et al.'s inference-only rules)::

    p_k  = P(candidate k, then end of answer | prompt) / sum_j P(candidate j, ...)   (renormalised on the grid)
    mean = sum_k p_k * grid_k
    loss = (mean - gold)^2

A second grid objective is ordinal: cross-entropy against a *soft* target, a Gaussian of standard
deviation ``sd`` centred on the gold value and discretised on the grid (:func:`soft_targets`)::

    q_k  = exp(-(grid_k - gold)^2 / (2 sd^2)) / sum_j exp(-(grid_j - gold)^2 / (2 sd^2))
    loss = -sum_k q_k log P(candidate k, then end of answer | prompt)        (NOT renormalised)

Saying "3.7" when the gold is 3.8 then costs little and "0.5" costs a lot, and an off-grid gold
such as STS-B's 3.75 (an average of annotators) spreads its target over 3.7 and 3.8 instead of
being rounded to one string. The log-probabilities are the model's own, so mass outside the grid
lowers every term and is penalised as in plain cross-entropy; the loss is minimal (it equals the
entropy of q) when the model's grid distribution is q with nothing outside.

All K candidates of an example are scored in ONE forward pass, as
:meth:`workbench.inference.engine.HFEngine.score` does it: the candidates form a token trie placed
after the prompt, and a 4-D attention mask lets each trie node see the prompt and its own
ancestors only. Unlike ``Engine.score`` this pass keeps the autograd graph, so the loss is
differentiable in the weights; ``tests/test_regression_loss.py`` checks the gradient against a
finite difference and the log-probabilities against ``Engine.score``.

Batch layout (one task per batch, so the rows share the prompt's system prefix; see
:mod:`workbench.lifecycle.prefix_batch`)::

    [ shared prefix (P) ][ left pad ][ rest of the prompt ][ trie nodes (N) ]
"""

from __future__ import annotations

import torch

from workbench.lifecycle.prefix_batch import Rows, forward_rows


def candidate_tokens(tokenizer, prompt_ids: list[int], candidates: list[str]) -> list[list[int]]:
    """Each candidate's tokens after the prompt, then the end-of-turn token (as ``Engine.score`` tokenises them)."""
    prompt_text = tokenizer.decode(prompt_ids)
    result = []
    for answer in candidates:
        joint = tokenizer(prompt_text + answer, add_special_tokens=False)["input_ids"]
        tokens = (
            joint[len(prompt_ids) :]
            if joint[: len(prompt_ids)] == prompt_ids and len(joint) > len(prompt_ids)
            else tokenizer(answer, add_special_tokens=False)["input_ids"]
        )
        result.append(tokens + [tokenizer.eos_token_id])
    return result


def _trie(candidates: list[list[int]]) -> dict[tuple[int, ...], int]:
    """Node index of every proper prefix of the candidates (the last token predicts nothing)."""
    trie: dict[tuple[int, ...], int] = {}
    for answer in candidates:
        for length in range(1, len(answer)):
            trie.setdefault(tuple(answer[:length]), len(trie))
    return trie


def answer_tree(candidates: list[list[int]], pad_id: int) -> tuple[dict[tuple[int, ...], int], list[tuple[int, int]]]:
    """The candidates' trie and its nodes as :class:`~workbench.lifecycle.prefix_batch.Rows` takes them.

    Returns:
        (node index of every proper prefix, the ``(token, parent)`` nodes; one padding node when every candidate is
        the end token alone, which keeps the layout whole).

    >>> answer_tree([[5, 9, 2], [5, 2], [7, 2]], pad_id=0)
    ({(5,): 0, (5, 9): 1, (7,): 2}, [(5, -1), (9, 0), (7, -1)])
    """
    trie = _trie(candidates)
    nodes = [(prefix[-1], trie[prefix[:-1]] if len(prefix) > 1 else -1) for prefix in trie]
    return trie, nodes or [(pad_id, -1)]


def grid_logprobs(
    model, prompts: list[list[int]], candidates: list[list[int]], pad_id: int, share_prefix: bool = True, trunk=None
) -> torch.Tensor:
    """(B, K) log P(candidate k complete | prompt b), differentiable in the model's weights.

    Args:
        model: a causal LM whose attention takes a 4-D mask (sdpa or eager).
        prompts: B prompt token lists.
        candidates: K candidate token lists, each ending with the end-of-turn token (shared by the rows).
        pad_id: padding token.
        share_prefix: push the prompts' common prefix through the model once.
        trunk: a :class:`~workbench.lifecycle.finetune.trunk.FrozenTrunk` (only the layers above it
            run, from its cached outputs), or None.
    """
    trie, nodes = answer_tree(candidates, pad_id)
    limit = min(len(p) for p in prompts) - 1
    logits = forward_rows(model, Rows(prompts, nodes), len(nodes) + 1, pad_id, limit, share_prefix, trunk)
    logits = logits if logits.dtype == torch.float64 else logits.float()  # bf16 logits lose too much
    logprobs = torch.log_softmax(logits, dim=-1)  # (B, N + 1, V): column 0 = last prompt token
    device = logprobs.device
    columns, tokens, owners = [], [], []
    for k, answer in enumerate(candidates):
        for t, token in enumerate(answer):
            columns.append(0 if t == 0 else 1 + trie[tuple(answer[:t])])
            tokens.append(token)
            owners.append(k)
    terms = logprobs[:, torch.tensor(columns, device=device), torch.tensor(tokens, device=device)]  # (B, terms)
    totals = torch.zeros((len(prompts), len(candidates)), dtype=terms.dtype, device=device)
    return totals.index_add(1, torch.tensor(owners, device=device), terms)


def soft_targets(grid: torch.Tensor, gold: torch.Tensor, sd: float) -> torch.Tensor:
    """(B, K) a Gaussian of standard deviation ``sd`` around each gold value, discretised on the grid.

    Args:
        grid: (K,) grid values.
        gold: (B,) gold values (off-grid values are fine: 3.75 puts equal weight on 3.7 and 3.8).
        sd: standard deviation, in the grid's units.

    >>> [round(q, 3) for q in soft_targets(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0]), sd=0.5)[0].tolist()]
    [0.107, 0.787, 0.107]
    """
    if sd <= 0:
        raise ValueError(f"the soft target's sd must be > 0, got {sd}")
    logits = -0.5 * ((grid[None, :] - gold[:, None]) / sd) ** 2
    return torch.softmax(logits, dim=-1)


def grid_loss(
    logprobs: torch.Tensor,
    grid: torch.Tensor,
    gold: torch.Tensor,
    gold_index: torch.Tensor,
    mse_weight: float = 1.0,
    soft_sd: float | None = None,
) -> tuple[torch.Tensor, dict]:
    """Mean over the batch of ``mse_weight * (exact mean - gold)^2 + (1 - mse_weight) * CE``.

    Args:
        logprobs: (B, K) from :func:`grid_logprobs`.
        grid: (K,) grid values.
        gold: (B,) gold values (not snapped: STS-B's 3.75 stays 3.75).
        gold_index: (B,) index of the gold answer on the grid (for the one-hot cross-entropy term).
        mse_weight: 1 for pure squared error, 0 for pure cross-entropy.
        soft_sd: None: the cross-entropy term is that of the complete gold answer (one-hot); a
            number: cross-entropy against :func:`soft_targets` of that sd (the ordinal objective).

    Returns:
        The loss and ``{"mse": ..., "ce": ...}`` batch means (floats), for logging.

    >>> logprobs = torch.log(torch.tensor([[0.5, 0.25, 0.25]]))
    >>> loss, parts = grid_loss(logprobs, torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0]), torch.tensor([1]))
    >>> round(float(loss), 4), round(parts["ce"], 4)
    (0.0625, 1.3863)
    >>> loss, parts = grid_loss(
    ...     logprobs, torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0]), torch.tensor([1]), mse_weight=0, soft_sd=0.5
    ... )
    >>> round(float(loss), 4)  # 0.107 * log 2 + 0.787 * log 4 + 0.107 * log 4
    1.3125
    """
    probs = torch.softmax(logprobs, dim=-1)  # renormalised on the grid, as GridScore.probs
    mean = probs @ grid.to(probs.dtype)
    mse = (mean - gold.to(probs.dtype)) ** 2
    if soft_sd is None:
        ce = -logprobs.gather(1, gold_index[:, None])[:, 0]
    else:
        ce = -(soft_targets(grid.to(logprobs.dtype), gold.to(logprobs.dtype), soft_sd) * logprobs).sum(-1)
    loss = mse_weight * mse.mean() + (1.0 - mse_weight) * ce.mean() if mse_weight < 1 else mse.mean()
    return loss, {"mse": float(mse.mean().detach()), "ce": float(ce.mean().detach())}
