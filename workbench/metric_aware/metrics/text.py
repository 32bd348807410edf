"""Metrics of generated texts, per item: SQuAD token F1, ROUGE-L, sentence BLEU, chrF and MiniLM cosine.

They keep their library's scale: BLEU and chrF in [0, 100] as sacrebleu reports them, ROUGE-L and
token F1 in [0, 1], MiniLM cosine in [-1, 1]. Each card's pairwise form (:mod:`workbench.metric_aware.pairwise`) scores
every hypothesis against every reference at once, as MBR needs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import sacrebleu

from workbench.metric_aware.embeddings import embed
from workbench.metric_aware.metrics.card import register_metric
from workbench.metric_aware.pairwise import bleu_matrix, chrf_matrix, cosine_matrix, rouge_l_matrix, token_f1_matrix
from workbench.text import squad_normalize


def _token_f1_one(prediction: str, reference: str) -> float:
    pred_tokens = squad_normalize(prediction).split()
    ref_tokens = squad_normalize(reference).split()
    # SQuAD 2.0 convention: if either side is empty, F1 is 1 only when both are.
    if not pred_tokens or not ref_tokens:
        return float(pred_tokens == ref_tokens)
    overlap = sum((Counter(pred_tokens) & Counter(ref_tokens)).values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(pred_tokens)
    recall = overlap / len(ref_tokens)
    return 2 * precision * recall / (precision + recall)


@register_metric(
    "token_f1",
    kind="item",
    data="text",
    higher_is_better=True,
    bayes_rule="mbr",
    value_range=(0, 1),
    pairwise=token_f1_matrix,
    citation="Rajpurkar et al., SQuAD: 100,000+ Questions for Machine Comprehension of Text, EMNLP 2016",
)
def token_f1(predictions: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """SQuAD-style bag-of-tokens F1 per item, in [0, 1].

    Args:
        predictions: n predicted strings.
        references: n reference strings.

    Returns:
        Array of shape (n,).

    >>> token_f1(["the cat sat", "", "a dog"], ["cat sat down", "", "bird"]).round(4)
    array([0.8, 1. , 0. ])
    """
    return np.array([_token_f1_one(p, r) for p, r in zip(predictions, references, strict=True)])


@lru_cache(maxsize=4)
def _rouge_l_scorer(use_stemmer: bool):
    # Imported lazily: rouge-score pulls in nltk and absl, which are slow to import.
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer)


@register_metric(
    "rouge_l",
    kind="item",
    data="text",
    higher_is_better=True,
    bayes_rule="mbr",
    value_range=(0, 1),
    pairwise=rouge_l_matrix,
    citation="Lin, ROUGE: A Package for Automatic Evaluation of Summaries, ACL workshop 2004",
)
def rouge_l(predictions: Sequence[str], references: Sequence[str], *, use_stemmer: bool = False) -> np.ndarray:
    """ROUGE-L F-measure per item from the ``rouge-score`` package, in [0, 1].

    Args:
        predictions: n predicted strings.
        references: n reference strings.
        use_stemmer: Apply the Porter stemmer to tokens longer than three characters.

    Returns:
        Array of shape (n,).

    >>> rouge_l(["the cat sat on the mat"], ["the cat is on the mat"]).round(4)
    array([0.8333])
    """
    scorer = _rouge_l_scorer(use_stemmer)
    return np.array([scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references, strict=True)])


@register_metric(
    "bleu",
    kind="item",
    data="text",
    higher_is_better=True,
    bayes_rule="mbr",
    value_range=(0, 100),
    pairwise=bleu_matrix,
    citation="Papineni et al., BLEU, ACL 2002; Post, A Call for Clarity in Reporting BLEU Scores (sacrebleu), WMT 2018",
)
def bleu(predictions: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """Sentence BLEU per item (sacrebleu defaults: 13a tokens, exp smoothing), in [0, 100].

    >>> bleu(["the cat sat on the mat"], ["the cat sat on the mat"])
    array([100.])
    """
    return np.array([sacrebleu.sentence_bleu(p, [r]).score for p, r in zip(predictions, references, strict=True)])


@register_metric(
    "chrf",
    kind="item",
    data="text",
    higher_is_better=True,
    bayes_rule="mbr",
    value_range=(0, 100),
    pairwise=chrf_matrix,
    citation="Popović, chrF: character n-gram F-score for automatic MT evaluation, WMT 2015",
)
def chrf(predictions: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """Sentence chrF per item (sacrebleu defaults: char order 6, beta 2), in [0, 100].

    >>> chrf(["abc"], ["abc"]), chrf(["abc"], ["xyz"])
    (array([100.]), array([0.]))
    """
    return np.array([sacrebleu.sentence_chrf(p, [r]).score for p, r in zip(predictions, references, strict=True)])


@register_metric(
    "minilm_cosine",
    kind="item",
    data="text",
    higher_is_better=True,
    bayes_rule="mbr",
    value_range=(-1, 1),
    pairwise=cosine_matrix,
    citation="Reimers & Gurevych, Sentence-BERT, EMNLP 2019; Wang et al., MiniLM, NeurIPS 2020 (all-MiniLM-L6-v2)",
)
def minilm_cosine(predictions: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """Cosine similarity of the all-MiniLM-L6-v2 embeddings of each prediction and its reference, in [-1, 1].

    Args:
        predictions: n predicted strings.
        references: n reference strings.

    Returns:
        Array of shape (n,).

    >>> minilm_cosine(["a cheap pub"], ["a cheap pub"]).round(4)
    array([1.])
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    vectors = embed([*predictions, *references]).astype(np.float64)
    n = len(predictions)
    # The embeddings are unit vectors in float32: a text against itself can come out a few 1e-8 above 1 (by how
    # much depends on the CPU's kernels), so the value is clipped to the range the card states.
    return np.clip((vectors[:n] * vectors[n:]).sum(axis=1), -1.0, 1.0)
