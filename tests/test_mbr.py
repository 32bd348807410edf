from __future__ import annotations

import random

import numpy as np
import pytest
import sacrebleu
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU, CHRF

from workbench.metric_aware import mbr
from workbench.metric_aware.mbr import mbr_select, mbr_select_batch
from workbench.metric_aware.metrics import get_metric, list_metrics
from workbench.metric_aware.pairwise import (
    BleuConfig,
    ChrfConfig,
    RougeLConfig,
    bleu_matrix,
    chrf_matrix,
    lcs_length_matrix,
    rouge_l_matrix,
)

REALISH = [
    "The committee approved the new budget on Tuesday after a long debate.",
    "After a lengthy debate, the committee approved the new budget on Tuesday.",
    "The new budget was approved by the committee on Tuesday.",
    "On Tuesday the committee rejected the budget.",
    "Budget approved Tuesday; debate was long.",
    "The committee approved the budget.",
    "the committee approved the new budget on tuesday after a long debate",
    "It's 3.5% higher than last year's ($1.2bn), officials said.",
]

WORDS = (
    "the a cat dog sat on mat quickly runs over lazy fox jumps brown , . ! ? don't it's 3.5 "
    "$100 (hi) naïve café 北京 über"
).split()


def random_texts(count: int, seed: int) -> list[str]:
    """Random word salad plus the edge cases: empty, whitespace-only, one or two characters."""
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 20)))
        if rng.random() < 0.2:
            text = "  " + text + " \t\n"
        texts.append(text)
    return texts + ["", " ", "a", "ab", "The Cat", "the cat"]


HYPOTHESES = random_texts(30, seed=0) + REALISH
REFERENCES = random_texts(8, seed=1) + REALISH[:3]

_ROUGE = {stem: rouge_scorer.RougeScorer(["rougeL"], use_stemmer=stem) for stem in (False, True)}

PAIR_SCORERS = {
    "chrf": lambda h, r: sacrebleu.sentence_chrf(h, [r]).score,
    "rouge_l": lambda h, r: _ROUGE[False].score(r, h)["rougeL"].fmeasure,
    "bleu": lambda h, r: sacrebleu.sentence_bleu(h, [r]).score,
    # The sentence form, itself checked against hand-computed SQuAD values in test_metrics.py.
    "token_f1": lambda h, r: get_metric("token_f1")([h], [r])[0],
}


def pairwise(score, hypotheses, references):
    return np.array([[score(h, r) for r in references] for h in hypotheses])


@pytest.mark.parametrize("utility", sorted(PAIR_SCORERS))
def test_utility_matrices_reproduce_the_library_scorers(utility):
    matrix_fn = mbr.UTILITIES[utility]
    score = PAIR_SCORERS[utility]
    shared = matrix_fn(HYPOTHESES)
    np.testing.assert_allclose(shared, pairwise(score, HYPOTHESES, HYPOTHESES), rtol=0, atol=1e-9)
    separate = matrix_fn(HYPOTHESES, REFERENCES)
    assert separate.shape == (len(HYPOTHESES), len(REFERENCES))
    np.testing.assert_allclose(separate, pairwise(score, HYPOTHESES, REFERENCES), rtol=0, atol=1e-9)


def test_non_default_configs_reproduce_the_library_scorers():
    chrf = CHRF(char_order=4, beta=1, lowercase=True)
    chrf_spaces = CHRF(whitespace=True)
    bleu = BLEU(max_ngram_order=3, tokenize="intl", lowercase=True, effective_order=True)
    cases = [
        (chrf_matrix, ChrfConfig(char_order=4, beta=1, lowercase=True), lambda h, r: chrf.sentence_score(h, [r]).score),
        (chrf_matrix, ChrfConfig(remove_whitespace=False), lambda h, r: chrf_spaces.sentence_score(h, [r]).score),
        (rouge_l_matrix, RougeLConfig(use_stemmer=True), lambda h, r: _ROUGE[True].score(r, h)["rougeL"].fmeasure),
        (
            bleu_matrix,
            BleuConfig(max_ngram_order=3, tokenize="intl", lowercase=True),
            lambda h, r: bleu.sentence_score(h, [r]).score,
        ),
    ]
    for matrix_fn, config, score in cases:
        np.testing.assert_allclose(
            matrix_fn(HYPOTHESES, REFERENCES, config),
            pairwise(score, HYPOTHESES, REFERENCES),
            rtol=0,
            atol=1e-9,
            err_msg=str(config),
        )


def python_lcs(a, b):
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            if x == y:
                table[i + 1][j + 1] = table[i][j] + 1
            else:
                table[i + 1][j + 1] = max(table[i][j + 1], table[i + 1][j])
    return table[-1][-1]


@pytest.mark.parametrize("max_length", [12, 70, 140])  # one, two and three 64-bit words
def test_lcs_length_matrix_matches_the_textbook_dp(max_length):
    rng = np.random.default_rng(max_length)
    hyps = [list(rng.integers(0, 4, size=rng.integers(0, max_length))) for _ in range(6)]
    refs = [list(rng.integers(0, 4, size=rng.integers(0, max_length))) for _ in range(5)]
    refs.append(list(rng.integers(0, 4, size=max_length)))  # fills its last word exactly
    hyps.append([9, 9])  # tokens no reference contains

    def pad(rows):
        out = np.full((len(rows), max(map(len, rows))), -1)
        for k, row in enumerate(rows):
            out[k, : len(row)] = row
        return out

    expected = [[python_lcs(h, r) for r in refs] for h in hyps]
    np.testing.assert_array_equal(lcs_length_matrix(pad(hyps), pad(refs)), expected)


def test_lcs_carries_across_words():
    # A long run of matches makes the additions carry from one 64-bit word into the next.
    sequence = np.arange(130)[None, :] % 3
    assert lcs_length_matrix(sequence, sequence)[0, 0] == 130
    shifted = np.concatenate([[[7]], sequence[:, :-1]], axis=1)
    assert lcs_length_matrix(shifted, sequence)[0, 0] == 129


def test_utilities_are_the_pairwise_forms_of_the_text_metric_cards():
    assert set(mbr.UTILITIES) == set(list_metrics(kind="item", data="text"))
    assert all(mbr.UTILITIES[name] is get_metric(name).pairwise for name in mbr.UTILITIES)
    for name, matrix_fn in mbr.UTILITIES.items():
        np.testing.assert_allclose(
            np.diag(matrix_fn(REALISH[:5], REALISH[3:8])),
            get_metric(name)(REALISH[:5], REALISH[3:8]),
            atol=1e-9,
        )


@pytest.mark.parametrize("utility", sorted(PAIR_SCORERS))
def test_mbr_selects_the_highest_expected_utility(utility):
    result = mbr_select(REALISH, utility)
    expected = pairwise(PAIR_SCORERS[utility], REALISH, REALISH).mean(axis=1)
    assert result.index == int(np.argmax(expected))
    assert result.hypothesis == REALISH[result.index]
    np.testing.assert_allclose(result.expected_utility, expected, atol=1e-9)
    assert result.utility.shape == (len(REALISH), len(REALISH))


def test_mbr_prefers_the_consensus_sample_and_breaks_ties_by_position():
    samples = ["a red car", "a red car", "a blue car", "the red bus", "a red cat"]
    assert mbr_select(samples, "rouge_l").index == 0
    results = mbr_select_batch([samples, ["same", "same"]], "chrf", config=ChrfConfig())
    assert [r.index for r in results] == [0, 0]


def test_mbr_select_with_external_references_and_errors():
    result = mbr_select(["completely off", "the cat sat"], "bleu", references=["the cat sat"])
    assert result.index == 1 and result.utility.shape == (2, 1)
    with pytest.raises(KeyError, match="unknown MBR utility"):
        mbr_select(["a"], "meteor")
    with pytest.raises(ValueError):
        mbr_select([], "chrf")
