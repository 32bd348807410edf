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

Batch layout (one task per batch, so the rows share the prompt's system prefix)::

    [ shared prefix (P) ][ left pad ][ rest of the prompt ][ trie nodes (N) ]
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

MIN_SHARED_PREFIX = 16


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


def grid_logprobs(
    model, prompts: list[list[int]], candidates: list[list[int]], pad_id: int, share_prefix: bool = True
) -> torch.Tensor:
    """(B, K) log P(candidate k complete | prompt b), differentiable in the model's weights.

    Args:
        model: a causal LM whose attention takes a 4-D mask (sdpa or eager).
        prompts: B prompt token lists.
        candidates: K candidate token lists, each ending with the end-of-turn token (shared by the rows).
        pad_id: padding token.
        share_prefix: push the prompts' common prefix through the model once.
    """
    device = next(model.parameters()).device
    batch = len(prompts)
    prefix_len = 0
    if share_prefix and batch > 1:
        prefix_len = min(_common_prefix_len(prompts), min(len(p) for p in prompts) - 1)
        prefix_len = prefix_len if prefix_len >= MIN_SHARED_PREFIX else 0
    cache = None
    if prefix_len:
        cache = DynamicCache()
        model(
            input_ids=torch.tensor([prompts[0][:prefix_len]], device=device),
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        cache = DynamicCache(
            ddp_cache_data=[
                (layer.keys.expand(batch, -1, -1, -1), layer.values.expand(batch, -1, -1, -1)) for layer in cache.layers
            ]
        )
    suffixes = [p[prefix_len:] for p in prompts]
    width = max(len(s) for s in suffixes)
    trie = _trie(candidates)
    nodes = max(1, len(trie))
    queries = width + nodes
    input_ids = torch.full((batch, queries), pad_id, dtype=torch.long)
    positions = torch.zeros((batch, queries), dtype=torch.long)
    real = torch.zeros((batch, width), dtype=torch.bool)
    for row, suffix in enumerate(suffixes):
        input_ids[row, width - len(suffix) : width] = torch.tensor(suffix)
        real[row, width - len(suffix) :] = True
    positions[:, :width] = prefix_len + (real.long().cumsum(-1) - 1).clamp(min=0)
    lengths = prefix_len + real.sum(-1)  # (B,) prompt length: position of the first answer token
    tree = torch.eye(nodes, dtype=torch.bool)
    for prefix, node in trie.items():
        input_ids[:, width + node] = prefix[-1]
        positions[:, width + node] = lengths + len(prefix) - 1
        for length in range(1, len(prefix)):
            tree[node, trie[prefix[:length]]] = True
    # Query rows: the prompt part is causal over real tokens (padding sees only itself, so no row
    # is fully masked); trie nodes see every real prompt token, their ancestors and themselves.
    mask = torch.zeros((batch, queries, queries), dtype=torch.bool)
    causal = torch.tril(torch.ones((width, width), dtype=torch.bool))
    mask[:, :width, :width] = (causal[None] & real[:, None, :]) | torch.eye(width, dtype=torch.bool)[None]
    mask[:, width:, :width] = real[:, None, :]
    mask[:, width:, width:] = tree[None]
    mask = torch.cat([torch.ones((batch, queries, prefix_len), dtype=torch.bool), mask], dim=-1)[:, None]
    out = model(
        input_ids=input_ids.to(device),
        attention_mask=_attention_mask(model, mask.to(device)),
        position_ids=positions.to(device),
        past_key_values=cache,
        use_cache=cache is not None,
        logits_to_keep=nodes + 1,
    )
    logits = out.logits if out.logits.dtype == torch.float64 else out.logits.float()  # bf16 logits lose too much
    logprobs = torch.log_softmax(logits, dim=-1)  # (B, N + 1, V): column 0 = last prompt token
    columns, tokens, owners = [], [], []
    for k, answer in enumerate(candidates):
        for t, token in enumerate(answer):
            columns.append(0 if t == 0 else 1 + trie[tuple(answer[:t])])
            tokens.append(token)
            owners.append(k)
    terms = logprobs[:, torch.tensor(columns, device=device), torch.tensor(tokens, device=device)]  # (B, terms)
    totals = torch.zeros((batch, len(candidates)), dtype=terms.dtype, device=device)
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


def _attention_mask(model, mask: torch.Tensor) -> torch.Tensor:
    """A boolean 4-D mask for SDPA, or an additive one for eager attention."""
    implementation = getattr(model.config, "_attn_implementation", "sdpa")
    if implementation == "sdpa":
        return mask
    if implementation == "eager":
        dtype = next(model.parameters()).dtype
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)
    raise NotImplementedError(
        f"the grid objective needs a custom attention mask; {implementation!r} attention does not take one"
    )


def _common_prefix_len(rows: list[list[int]]) -> int:
    length = min(len(r) for r in rows)
    for r in rows[1:]:
        length = next((i for i in range(length) if r[i] != rows[0][i]), length)
    return length
