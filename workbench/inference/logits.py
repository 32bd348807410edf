"""Turn next-token logits into a sampling distribution: temperature, top-k and top-p (nucleus).

These follow the usual conventions (Hugging Face ``generate``, vLLM): temperature divides the
logits, top-k keeps the k largest, top-p keeps the smallest set of tokens whose probability reaches
p (always at least one token). Filtered tokens get ``-inf``.

Tempering is numerically safe at every accepted temperature: the logits are shifted so that each
row's maximum is 0 *before* dividing (softmax does not change), and tiny temperatures divide in
float64. So a temperature of 1e-45 or 1e-300 gives exactly the argmax distribution (ties split
evenly) instead of ``inf - inf = NaN``. Positive temperatures below :data:`MIN_TEMPERATURE` are
refused: they underflow even float64.

>>> import torch
>>> logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
>>> torch.softmax(filter_logits(logits, top_k=2), -1).round(decimals=3)
tensor([[0.6250, 0.3750, 0.0000, 0.0000]])
>>> torch.softmax(filter_logits(logits, top_p=0.9), -1).round(decimals=3)
tensor([[0.5260, 0.3160, 0.1580, 0.0000]])
>>> torch.softmax(filter_logits(logits, temperature=1e-300), -1)
tensor([[1., 0., 0., 0.]])
>>> tempered_log_softmax(logits, 1e-300)[0, 0].item()
0.0
"""

from __future__ import annotations

import math
import numbers

import torch

MIN_TEMPERATURE = 1e-300  # smallest positive temperature accepted; 0 means greedy (argmax)
_FLOAT64_BELOW = 1e-3  # temperatures below this divide in float64 (float32 would overflow)
# top-p looks for its nucleus among this many most likely tokens first: a partial top-k instead of sorting the
# whole vocabulary (the sort took 41% of the log-probability test's scoring time with a top-p scorer; 1.73x
# faster without it, benchmarks/logprob_grouping.py); rows whose nucleus reaches further (flat distributions)
# are sorted whole, so the kept set is the same either way.
NUCLEUS_CANDIDATES = 256


def check_temperature(temperature: float) -> float:
    """``temperature`` as a float when it is finite and >= :data:`MIN_TEMPERATURE`; ValueError otherwise."""
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not math.isfinite(temperature):
        raise ValueError(f"temperature must be a finite number, got {temperature!r}")
    if temperature < MIN_TEMPERATURE:
        raise ValueError(
            f"temperature must be >= {MIN_TEMPERATURE:g} (0 means greedy decoding where that applies), "
            f"got {temperature!r}"
        )
    return float(temperature)


def tempered(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """(rows, vocab) logits / temperature, shifted so each row's maximum is 0; float32, -inf where underflowing."""
    shifted = logits.float() - logits.float().amax(dim=-1, keepdim=True)
    if temperature == 1.0:
        return shifted
    if temperature < _FLOAT64_BELOW:
        return (shifted.double() / temperature).float()
    return shifted / temperature


def tempered_log_softmax(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """log softmax(logits / temperature) over the last dimension, finite for the most likely token.

    Below :data:`_FLOAT64_BELOW` it is computed in float64 (and returned as float64), so that tiny
    temperatures keep the ratios of candidate probabilities instead of rounding them all to -inf.
    """
    shifted = logits.double() if temperature < _FLOAT64_BELOW else logits.float()
    shifted = shifted - shifted.amax(dim=-1, keepdim=True)
    return torch.log_softmax(shifted / temperature, dim=-1)


def filter_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Apply temperature, top-k and top-p to logits.

    Args:
        logits: (rows, vocab) float tensor.
        temperature: >= MIN_TEMPERATURE; 1 leaves the distribution unchanged.
        top_k: keep the k most likely tokens; 0 keeps all.
        top_p: keep the smallest prefix of the sorted distribution with mass >= top_p; 1 keeps all.

    Returns:
        (rows, vocab) float32 logits (shifted: each row's maximum is 0) with filtered entries set to -inf.
    """
    if temperature <= 0:
        raise ValueError("temperature must be > 0 here; greedy decoding takes the argmax instead")
    logits = tempered(logits, check_temperature(temperature))
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits[logits < kth] = float("-inf")
    if top_p < 1.0:
        logits[~_nucleus(logits, top_p)] = float("-inf")
    return logits


def _nucleus(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """(rows, vocab) bool: the tokens top-p keeps. A token is dropped when the mass of the more likely tokens
    before it (in descending order) already reaches ``top_p``; the most likely token always stays."""
    probs = torch.softmax(logits, dim=-1)
    candidates = min(NUCLEUS_CANDIDATES, probs.shape[-1])
    top, order = torch.topk(probs, candidates, dim=-1)  # descending
    cumulative = top.cumsum(dim=-1)
    if candidates < probs.shape[-1] and bool((cumulative[..., -1] < top_p).any()):
        top, order = torch.sort(probs, dim=-1, descending=True)  # a nucleus beyond the candidates: sort whole rows
        cumulative = top.cumsum(dim=-1)
    # tokens outside the candidates have at least the candidates' mass before them, which reaches top_p
    return torch.zeros_like(probs, dtype=torch.bool).scatter(-1, order, (cumulative - top) < top_p)
