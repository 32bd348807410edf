"""Turn next-token logits into a sampling distribution: temperature, top-k and top-p (nucleus).

These follow the usual conventions (Hugging Face ``generate``, vLLM): temperature divides the
logits, top-k keeps the k largest, top-p keeps the smallest set of tokens whose probability reaches
p (always at least one token). Filtered tokens get ``-inf``.

>>> import torch
>>> logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
>>> torch.softmax(filter_logits(logits, top_k=2), -1).round(decimals=3)
tensor([[0.6250, 0.3750, 0.0000, 0.0000]])
>>> torch.softmax(filter_logits(logits, top_p=0.9), -1).round(decimals=3)
tensor([[0.5260, 0.3160, 0.1580, 0.0000]])
"""

from __future__ import annotations

import torch


def filter_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Apply temperature, top-k and top-p to logits.

    Args:
        logits: (rows, vocab) float tensor.
        temperature: > 0; 1 leaves the distribution unchanged.
        top_k: keep the k most likely tokens; 0 keeps all.
        top_p: keep the smallest prefix of the sorted distribution with mass >= top_p; 1 keeps all.

    Returns:
        (rows, vocab) logits with filtered entries set to -inf.
    """
    if temperature <= 0:
        raise ValueError("temperature must be > 0 here; greedy decoding takes the argmax instead")
    logits = logits / temperature if temperature != 1.0 else logits.clone()
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits[logits < kth] = float("-inf")
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        # Drop a token when the mass *before* it already reaches top_p; the first token always stays.
        drop_sorted = (cumulative - torch.softmax(sorted_logits, dim=-1)) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits[drop] = float("-inf")
    return logits
