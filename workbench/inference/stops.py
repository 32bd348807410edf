"""How a sample ends on a stop string, shared by the engines that decode token by token.

:class:`~workbench.inference.engine.HFEngine`, :class:`~workbench.inference.llamacpp_engine.LlamaCppEngine`
and the grid sampler's off-grid continuations (:mod:`~workbench.inference.grid_sampler`) end a row when the
text of its last tokens holds a stop string, and cut the finished text before the first one, the way the
OpenAI API returns it (the stop string itself left out).
"""

from __future__ import annotations

import torch


def tail_tokens(stop: tuple[str, ...]) -> int:
    """Tokens enough to hold any stop string: a token decodes to at least one character, plus one for a
    string that starts inside the previous token.

    >>> tail_tokens(("\\n\\n", "###")), tail_tokens(())
    (4, 1)
    """
    return max((len(s) for s in stop), default=0) + 1


def end_on_stop(
    tokenizer,
    stop: tuple[str, ...],
    tokens_of: torch.Tensor,
    active: torch.Tensor,
    ended: torch.Tensor,
    step: int,
    reason_of: list[str],
) -> None:
    """Mark the rows of ``active`` that have not ``ended`` and whose last tokens hold a stop string: ended
    (in place), finish reason "stop".

    Args:
        tokenizer: decodes the rows' last tokens.
        stop: the stop strings (none: nothing to do).
        tokens_of: (rows, max new tokens) the tokens drawn so far.
        active: (A,) the rows decoded in this step.
        ended: (A,) bool, the active rows that ended in this step already (on an end-of-turn token).
        step: the step just drawn.
        reason_of: each row's finish reason.
    """
    if not stop or ended.all():
        return
    going = active[~ended]
    tails = tokenizer.batch_decode(tokens_of[going, max(0, step + 1 - tail_tokens(stop)) : step + 1].tolist())
    hit = torch.tensor([any(s in text for s in stop) for text in tails])
    for row in going[hit].tolist():
        reason_of[row] = "stop"
    ended[(~ended).nonzero()[:, 0][hit]] = True


def finish_text(tokenizer, eos_ids, tokens: list[int], reason: str, stop: tuple[str, ...]) -> tuple[str, str]:
    """A sample's text (end-of-turn tokens dropped) cut before its first stop string, and its finish reason."""
    text = tokenizer.decode([t for t in tokens if t not in eos_ids], skip_special_tokens=True)
    cuts = [text.find(s) for s in stop if s in text]
    if cuts:
        return text[: min(cuts)], "stop"
    return text, reason
