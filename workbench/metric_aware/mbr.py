"""Minimum Bayes risk (MBR) selection among text samples.

For a text metric there is no closed-form Bayes-optimal answer (no "mean of sentences"); MBR
approximates it by picking the sample with the highest expected utility against the other samples,
which act as pseudo-references drawn from the model (Kumar & Byrne, "Minimum Bayes-Risk Decoding
for Statistical Machine Translation", NAACL 2004). The utility of a metric is the ``pairwise`` form
on its card (:mod:`workbench.metric_aware.metrics`), a vectorised utility matrix from
:mod:`workbench.metric_aware.pairwise`.

>>> result = mbr_select(["the cat sat", "a cat sat down", "the cat sat down"], "chrf")
>>> result.index, result.hypothesis
(2, 'the cat sat down')
>>> sorted(UTILITIES)
['bleu', 'chrf', 'minilm_cosine', 'rouge_l', 'token_f1']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from workbench.metric_aware.metrics import get_metric, list_metrics
from workbench.metric_aware.pairwise import BleuConfig, ChrfConfig, RougeLConfig

UTILITIES: dict[str, Callable[..., np.ndarray]] = {
    name: get_metric(name).pairwise for name in list_metrics(data="text")
}
"""Utility matrix functions by metric name: the ``pairwise`` forms of the text metric cards."""


@dataclass(frozen=True)
class MBRResult:
    """The MBR choice for one item.

    Attributes:
        index: Position of the selected hypothesis (ties go to the first).
        hypothesis: The selected text.
        utility: (H, R) utility of hypothesis i against pseudo-reference j.
        expected_utility: (H,) mean utility of each hypothesis over the references.
    """

    index: int
    hypothesis: str
    utility: np.ndarray
    expected_utility: np.ndarray


def mbr_select(
    hypotheses: Sequence[str],
    utility: str = "chrf",
    *,
    references: Sequence[str] | None = None,
    config: ChrfConfig | RougeLConfig | BleuConfig | None = None,
) -> MBRResult:
    """Select the hypothesis with the highest expected utility.

    Args:
        hypotheses: H candidate texts (usually the model's samples).
        utility: a text metric with a pairwise form (:data:`UTILITIES`).
        references: Pseudo-references; None uses the hypotheses themselves, each sample
            included as a reference for itself too, as in standard sampling-based MBR.
        config: Settings for the utility (chrF, ROUGE-L, BLEU); None uses the library defaults.

    Returns:
        An :class:`MBRResult`.
    """
    if not hypotheses or (references is not None and not references):
        raise ValueError("mbr_select needs at least one hypothesis and one reference")
    try:
        matrix_fn = UTILITIES[utility]
    except KeyError:
        raise KeyError(f"unknown MBR utility {utility!r}; known: {sorted(UTILITIES)}") from None
    settings = {} if config is None else {"config": config}
    matrix = matrix_fn(hypotheses, references, **settings)
    expected = matrix.mean(axis=1)
    index = int(np.argmax(expected))
    return MBRResult(index, hypotheses[index], matrix, expected)


def mbr_select_batch(
    items: Sequence[Sequence[str]],
    utility: str = "chrf",
    *,
    config: ChrfConfig | RougeLConfig | BleuConfig | None = None,
) -> list[MBRResult]:
    """:func:`mbr_select` for each item's list of samples (samples as their own references)."""
    return [mbr_select(samples, utility, config=config) for samples in items]
