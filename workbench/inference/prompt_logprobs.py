"""Log-probability of every token of a text under a causal LM: what an OpenAI-compatible server
returns for ``echo=True, logprobs=k, max_tokens=0`` (``prompt_logprobs`` in vLLM).

One plain forward pass per sequence, so it is exact for every architecture the model's own
``forward`` handles (sliding windows included): no custom attention mask is involved. Sequences
of one call that share a token prefix (a few-shot prompt scored with K candidate answers) have
that prefix prefilled once; the remainders run as one right-padded batch on a copy of its cache.
Right padding never changes a real token's logits, since causal attention looks only backwards.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from transformers import DynamicCache

MIN_SHARED_PREFIX = 16  # below this a separate prefix pass costs more than it saves


@dataclass
class TokenLogprobs:
    """The tokens of one text with their log-probabilities.

    Attributes:
        token_ids: T token ids (the text tokenised without added special tokens).
        logprobs: T values; ``None`` for the first token, which has no context.
        top: T entries of the k most likely tokens at that position as ``{token id: logprob}``
            (``None`` for the first token; empty dicts when k is 0).
        offsets: T character offsets of the tokens in the text.
    """

    token_ids: list[int]
    logprobs: list[float | None]
    top: list[dict[int, float] | None]
    offsets: list[int]


@torch.inference_mode()
def prompt_logprobs(model, tokenizer, texts: list[str], top_k: int = 0, batch_size: int = 8) -> list[TokenLogprobs]:
    """Per-token log-probabilities of each text.

    Args:
        model: a causal LM (eval mode).
        tokenizer: its tokenizer; texts are tokenised with ``add_special_tokens=False``, as
            :class:`workbench.inference.engine.HFEngine` tokenises prompts.
        texts: B strings.
        top_k: also return the k most likely tokens at each position.
        batch_size: sequences per forward pass.

    Returns:
        B :class:`TokenLogprobs`, in the order of ``texts``.
    """
    encoded = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True)
    scored = sequence_logprobs(model, encoded["input_ids"], top_k, batch_size)
    return [
        TokenLogprobs(ids, values, tops, [int(pair[0]) for pair in offsets])
        for ids, (values, tops), offsets in zip(encoded["input_ids"], scored, encoded["offset_mapping"])
    ]


@torch.inference_mode()
def sequence_logprobs(
    model, sequences: list[list[int]], top_k: int = 0, batch_size: int = 8
) -> list[tuple[list[float | None], list[dict[int, float] | None]]]:
    """Per-token log-probabilities of token sequences, as given (token-id prompts, or a prompt's
    tokens followed by generated ones).

    Args:
        model: a causal LM (eval mode).
        sequences: B lists of token ids.
        top_k: also return the k most likely tokens at each position.
        batch_size: sequences per forward pass.

    Returns:
        B pairs (logprobs, top) as in :class:`TokenLogprobs`, in the order of ``sequences``.
    """
    device = next(model.parameters()).device
    results: list[tuple | None] = [None] * len(sequences)
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        for i, scored in zip(chunk, _score_chunk(model, [list(sequences[i]) for i in chunk], top_k, device)):
            results[i] = scored
    return results


def _score_chunk(model, ids: list[list[int]], top_k: int, device) -> list[tuple[list, list]]:
    """(logprobs, top) for each sequence of one batch; the shared prefix is prefilled once."""
    nonempty = [seq for seq in ids if seq]
    shared = _common_prefix(nonempty) if len(nonempty) > 1 else []
    shared = shared[: max(0, min((len(s) for s in nonempty), default=0) - 1)]  # each keeps >= 1 own token
    if len(shared) < MIN_SHARED_PREFIX or _has_sliding_window(model):
        shared = []  # a sliding window needs the model's own cache layout: plain passes instead
    prefix_len = len(shared)
    rests = [seq[prefix_len:] for seq in ids]
    prefix_logits, logits = prefix_then_rows(model, shared, rests, device)
    results = []
    for row, seq in enumerate(ids):
        if not seq:
            results.append(([], []))
            continue
        # Distributions that predict tokens 1..T-1: the prefix rows, then this row's own positions.
        rows = (
            [logits[row, : len(rests[row]) - 1]]
            if prefix_len == 0
            else [prefix_logits, logits[row, : len(rests[row]) - 1]]
        )
        predicting = torch.log_softmax(torch.cat(rows), dim=-1)  # (T-1, vocab)
        targets = torch.tensor(seq[1:], device=predicting.device)
        chosen = predicting.gather(1, targets[:, None])[:, 0].double().tolist()
        tops: list[dict[int, float] | None] = [None]
        if top_k > 0:
            values, indices = predicting.topk(top_k, dim=-1)
            tops += [dict(zip(i.tolist(), v.double().tolist())) for i, v in zip(indices, values)]
        else:
            tops += [{} for _ in chosen]
        results.append(([None, *chosen], tops))
    return results


def prefix_then_rows(
    model, prefix: list[int], rows: list[list[int]], device
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Logits of a token prefix run once and of each row run after it, the rows as one right-padded batch.

    The prefix's cache is expanded over the batch, not copied. With an empty prefix the rows run as one plain
    right-padded pass (what a model with a sliding attention window needs: no shared cache layout).

    Args:
        model: a causal LM.
        prefix: P token ids shared by every row (may be empty).
        rows: B lists of token ids that follow the prefix.
        device: where the model is.

    Returns:
        (the prefix's (P, vocab) logits, or None when P is 0; the rows' (B, width, vocab) logits), as float32.
        Row r's logits at column j predict the token after ``rows[r][j]``.
    """
    cache, prefix_logits = prefill(model, prefix, device) if prefix else (None, None)
    return prefix_logits, rows_after(model, cache, len(prefix), rows, device)


def prefill(model, prefix: list[int], device, last_only: bool = False) -> tuple[DynamicCache, torch.Tensor]:
    """Run a token prefix once: its KV cache and its logits ((P, vocab), or (1, vocab) with ``last_only``)."""
    cache = DynamicCache()
    keep = {"logits_to_keep": 1} if last_only else {}
    out = model(
        input_ids=torch.tensor([prefix], device=device), use_cache=True, **{_cache_argument(model): cache}, **keep
    )
    return cache, out.logits[0].float()


def rows_after(model, cache: DynamicCache | None, prefix_len: int, rows: list[list[int]], device) -> torch.Tensor:
    """(B, width, vocab) float32 logits of B rows run as one right-padded batch after a prefilled cache.

    The cache (of ``prefix_len`` tokens; None when there is no prefix) is expanded over the batch, not copied,
    and left as it was, so several batches of rows can follow one prefill.
    """
    batch, width = len(rows), max(1, max(len(r) for r in rows))
    input_ids = torch.zeros((batch, width), dtype=torch.long)
    mask = torch.zeros((batch, prefix_len + width), dtype=torch.long)
    mask[:, :prefix_len] = 1
    for row, ids in enumerate(rows):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        mask[row, prefix_len : prefix_len + len(ids)] = 1
    kwargs = {}
    if cache is not None:
        kwargs[_cache_argument(model)] = DynamicCache(
            ddp_cache_data=[
                (layer.keys.expand(batch, -1, -1, -1), layer.values.expand(batch, -1, -1, -1)) for layer in cache.layers
            ]
        )
    positions = (prefix_len + torch.arange(width)).expand(batch, -1)
    out = model(
        input_ids=input_ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device), **kwargs
    )
    return out.logits.float()


def length_groups(lengths: list[int], overhead: int = 32) -> list[list[int]]:
    """Row indices split into batches of similar length, so that right padding wastes little compute.

    Rows sorted by length are cut into contiguous groups minimising the tokens a padded batch computes
    (rows x the longest row) plus ``overhead`` token-equivalents per extra forward pass (an exact dynamic
    programme, O(n^2) in the rows).

    >>> length_groups([30, 2, 31, 3, 1], overhead=8)
    [[4, 1, 3], [0, 2]]
    >>> length_groups([5, 5, 6], overhead=8)
    [[0, 1, 2]]
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    sizes = [max(1, lengths[i]) for i in order]
    best = [0.0] + [float("inf")] * len(order)  # best[j]: cost of the first j sorted rows
    cut = [0] * (len(order) + 1)
    for end in range(1, len(order) + 1):
        for start in range(end):  # the group order[start:end], padded to its longest (last) row
            cost = best[start] + (end - start) * sizes[end - 1] + overhead
            if cost < best[end]:
                best[end], cut[end] = cost, start
    groups, end = [], len(order)
    while end:
        groups.append(order[cut[end] : end])
        end = cut[end]
    return groups[::-1]


def _common_prefix(sequences: list[list[int]]) -> list[int]:
    first = sequences[0]
    length = min(len(s) for s in sequences)
    for seq in sequences[1:]:
        length = next((i for i in range(length) if seq[i] != first[i]), length)
    return first[:length]


def _has_sliding_window(model) -> bool:
    config = getattr(model, "config", None)
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return bool(getattr(text_config, "sliding_window", None)) or "sliding_attention" in (
        getattr(text_config, "layer_types", None) or ()
    )


def _cache_argument(model) -> str:
    """The name ``forward`` takes a KV cache under: ``cache`` in newer transformers, else ``past_key_values``."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
