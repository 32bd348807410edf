"""Pairwise (utility-matrix) forms of the text metrics: every hypothesis against every reference at once.

These are the ``pairwise`` forms on the text metric cards (:mod:`workbench.metric_aware.metrics`),
which minimum Bayes risk selection (:mod:`workbench.metric_aware.mbr`) uses as utilities. With N
samples MBR needs an N x N matrix; scoring it pair by pair with a library's sentence scorer repeats
the same n-gram extraction or tokenisation N times per sample and runs the inner loops in Python.
Here every text is processed once and all pairs are scored with array operations:

* chrF, BLEU and token F1: n-grams (tokens, for token F1) get integer ids with numpy (no string
  slicing), and the clipped matches ``sum_g min(count_i(g), count_j(g))`` of all pairs are one
  sparse matrix product: the k-th copy of n-gram g in a text counts as a token (g, k) of its own,
  and two texts with a and b copies of g share exactly min(a, b) of those tokens.
* MiniLM cosine: each distinct text is embedded once and all pairs are one matrix product.
* ROUGE-L: longest common subsequence lengths for all pairs at once with the bit-parallel
  LCS recurrence: each reference is a bit vector, and each hypothesis token updates every
  pair with a few integer operations over uint64 words.

The matrices reproduce sacrebleu's ``sentence_chrf`` / ``sentence_bleu``, rouge-score's ROUGE-L
F-measure and the SQuAD token F1 (``tests/test_mbr.py`` checks this to 1e-9);
``benchmarks/mbr_speed.py`` measures the speed-up over the pair-by-pair loop.

``matrix[i, j]`` always scores hypothesis i against reference j (chrF and ROUGE-L weight
recall and precision differently, so the matrix is not symmetric).

>>> chrf_matrix(["abc", "abd"]).round(1)  # sacrebleu.sentence_chrf("abc", ["abd"]).score is 38.89
array([[100. ,  38.9],
       [ 38.9, 100. ]])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import sparse

from workbench.metric_aware.embeddings import embed
from workbench.text import squad_normalize


@dataclass(frozen=True)
class ChrfConfig:
    """sacrebleu chrF settings (its defaults). Word n-grams (chrF++) are not supported."""

    char_order: int = 6
    beta: int = 2
    lowercase: bool = False
    remove_whitespace: bool = True


@dataclass(frozen=True)
class RougeLConfig:
    """rouge-score ROUGE-L settings (its defaults)."""

    use_stemmer: bool = False


@dataclass(frozen=True)
class BleuConfig:
    """sacrebleu sentence-BLEU settings: exp smoothing with effective order, as its defaults."""

    max_ngram_order: int = 4
    tokenize: str = "13a"
    lowercase: bool = False


def _texts(hypotheses: Sequence[str], references: Sequence[str] | None) -> list[str]:
    return list(hypotheses) if references is None else [*hypotheses, *references]


def _code_points(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The texts' characters as one concatenated array of code points, and their lengths."""
    # UTF-32 has one unit per Python character; surrogatepass keeps lone surrogates as they are.
    joined = "".join(texts).encode("utf-32-le", "surrogatepass")
    return np.frombuffer(joined, dtype="<u4").astype(np.int64), _lengths(texts)


def _token_ids(token_lists: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
    """Tokens as one concatenated array of ids (shared vocabulary), and the sequence lengths."""
    flat = [token for tokens in token_lists for token in tokens]
    # dict.fromkeys and map run in C, unlike a Python loop over the tokens.
    vocabulary = {token: i for i, token in enumerate(dict.fromkeys(flat))}
    ids = np.fromiter(map(vocabulary.__getitem__, flat), dtype=np.int64, count=len(flat))
    return ids, _lengths(token_lists)


def _lengths(sequences: Sequence[Sequence]) -> np.ndarray:
    return np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))


def _ngrams_by_order(codes: np.ndarray, lengths: np.ndarray, max_order: int):
    """Yield, for n = 1 .. max_order, every n-gram of each sequence as (owner, n-gram id).

    Args:
        codes: The sequences concatenated (code points or token ids).
        lengths: (S,) sequence lengths.
        max_order: The largest n.

    Yields:
        ``owner`` (which sequence each n-gram occurrence belongs to) and ``gram_ids`` (equal
        ids for equal n-grams), both of shape (number of n-grams,).
    """
    owner = np.repeat(np.arange(lengths.size), lengths)
    sequence_end = np.repeat(np.cumsum(lengths), lengths)
    _, symbols = np.unique(codes, return_inverse=True)
    n_symbols = int(symbols.max()) + 1 if symbols.size else 0
    starts, gram_ids = np.arange(codes.size), symbols
    for n in range(1, max_order + 1):
        if n > 1:
            # An n-gram is an (n-1)-gram id plus one more symbol: renumbering that pair keeps
            # ids exact and small, with no string slicing.
            fits = starts + n <= sequence_end[starts]
            starts, gram_ids = starts[fits], gram_ids[fits]
            pairs = gram_ids * n_symbols + symbols[starts + n - 1]
            _, gram_ids = np.unique(pairs, return_inverse=True)
        yield owner[starts], gram_ids


def _clipped_matches(
    owner: np.ndarray, gram_ids: np.ndarray, n_texts: int, n_hypotheses: int, shared: bool
) -> np.ndarray:
    """Clipped n-gram matches for every (hypothesis, reference) pair.

    Args:
        owner: Which text each n-gram occurrence belongs to: hypotheses first, then references
            (unless shared).
        gram_ids: The n-gram of each occurrence.
        n_texts: Number of texts.
        n_hypotheses: How many leading texts are hypotheses.
        shared: The references are the hypotheses themselves.

    Returns:
        (H, R) float array of ``sum_g min(count_i(g), count_j(g))`` (exact integers).
    """
    n_grams = int(gram_ids.max()) + 1 if gram_ids.size else 0
    # Number the copies of each n-gram within its text (0, 1, ...) and treat the k-th copy of g
    # as a token (g, k) of its own: a text with a copies and one with b copies then share
    # exactly min(a, b) such tokens, so clipped counts are dot products of 0/1 indicator rows.
    text_gram = owner * n_grams + gram_ids
    order = np.argsort(text_gram, kind="stable")
    starts_run = np.ones(owner.size, dtype=bool)
    starts_run[1:] = text_gram[order][1:] != text_gram[order][:-1]
    run_start = np.maximum.accumulate(np.where(starts_run, np.arange(owner.size), 0))
    copy = np.empty(owner.size, dtype=np.int64)
    copy[order] = np.arange(owner.size) - run_start
    n_copies = int(copy.max()) + 1 if copy.size else 0
    indicators = sparse.csr_matrix(
        (np.ones(owner.size), (owner, copy * n_grams + gram_ids)),
        shape=(n_texts, n_copies * n_grams),
    )
    hypotheses = indicators[:n_hypotheses]
    references = hypotheses if shared else indicators[n_hypotheses:]
    return (hypotheses @ references.T).toarray()


def chrf_matrix(
    hypotheses: Sequence[str],
    references: Sequence[str] | None = None,
    config: ChrfConfig = ChrfConfig(),
) -> np.ndarray:
    """``sacrebleu.sentence_chrf(hypotheses[i], [references[j]]).score`` for all pairs.

    Args:
        hypotheses: H texts.
        references: R texts; None uses the hypotheses (the MBR setting).
        config: chrF settings.

    Returns:
        (H, R) array with values in [0, 100].

    >>> chrf_matrix(["abc", "xyz"])
    array([[100.,   0.],
           [  0., 100.]])
    """
    texts = _texts(hypotheses, references)
    if config.lowercase:
        texts = [text.lower() for text in texts]
    if config.remove_whitespace:
        texts = ["".join(text.split()) for text in texts]
    codes, lengths = _code_points(texts)
    n_hyp = len(hypotheses)
    hyp_lengths = lengths[:n_hyp, None]
    ref_lengths = lengths[None, :n_hyp] if references is None else lengths[None, n_hyp:]
    shape = (n_hyp, ref_lengths.shape[1])

    # Mirrors sacrebleu's CHRF._compute_f_score (effective-order averaging, not eps smoothing)
    # operation by operation, so the floats come out bit for bit the same.
    eps = 1e-16
    factor = config.beta**2
    precision_sum, recall_sum = np.zeros(shape), np.zeros(shape)
    effective_order = np.zeros(shape)
    by_order = _ngrams_by_order(codes, lengths, config.char_order)
    for n, (owner, gram_ids) in enumerate(by_order, start=1):
        matches = _clipped_matches(owner, gram_ids, len(texts), n_hyp, references is None)
        n_ref = np.broadcast_to(np.maximum(ref_lengths - n + 1, 0), shape)
        # sacrebleu counts no hypothesis n-grams when the reference has none of this order.
        n_hyp_grams = np.where(n_ref > 0, np.maximum(hyp_lengths - n + 1, 0), 0)
        precision = np.divide(matches, n_hyp_grams, out=np.full(shape, eps), where=n_hyp_grams > 0)
        recall = np.divide(matches, n_ref, out=np.full(shape, eps), where=n_ref > 0)
        effective = (n_hyp_grams > 0) & (n_ref > 0)
        precision_sum += np.where(effective, precision, 0.0)
        recall_sum += np.where(effective, recall, 0.0)
        effective_order += effective
    has_order = effective_order > 0
    avg_precision = np.divide(precision_sum, effective_order, out=np.zeros(shape), where=has_order)
    avg_recall = np.divide(recall_sum, effective_order, out=np.zeros(shape), where=has_order)
    numerator = (1 + factor) * avg_precision * avg_recall
    denominator = (factor * avg_precision) + avg_recall
    defined = (avg_precision + avg_recall) != 0
    score = np.divide(numerator, denominator, out=np.zeros(shape), where=defined)
    return 100 * score


@lru_cache(maxsize=4)
def _rouge_tokenizer(use_stemmer: bool):
    from rouge_score.tokenizers import DefaultTokenizer

    return DefaultTokenizer(use_stemmer)


def _padded(codes: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated sequences as rows of a matrix, padded at the end with -1."""
    padded = np.full((lengths.size, lengths.max(initial=0)), -1, dtype=np.int64)
    rows = np.repeat(np.arange(lengths.size), lengths)
    columns = np.arange(codes.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    padded[rows, columns] = codes
    return padded


def _add_with_carry(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """``left + right`` for multi-word unsigned integers stored little-endian on the last axis."""
    total = left + right
    carry = total < left
    for word in range(1, total.shape[-1]):
        total[..., word] += carry[..., word - 1]
        # Adding the incoming 1 overflows only when it wraps this word round to zero.
        carry[..., word] |= carry[..., word - 1] & (total[..., word] == 0)
    return total


def lcs_length_matrix(hypotheses: np.ndarray, references: np.ndarray) -> np.ndarray:
    """Longest-common-subsequence lengths for all pairs of token-id rows.

    Uses the bit-parallel LCS recurrence of Hyyrö (2004), vectorised over all pairs: each
    reference is a bit vector (64 positions per uint64 word) and every hypothesis token
    updates all pair states with a handful of word operations, instead of a DP table row.

    Args:
        hypotheses: (H, Lh) non-negative token ids, padded at the end with -1.
        references: (R, Lr) non-negative token ids, padded at the end with -1.

    Returns:
        (H, R) integer LCS lengths.

    >>> lcs_length_matrix(np.array([[1, 2, 3, 4]]), np.array([[2, 4, -1], [5, -1, -1]]))
    array([[2, 0]])
    """
    n_hyp, hyp_width = hypotheses.shape
    n_ref, ref_width = references.shape
    n_words = max(1, -(-ref_width // 64))
    # match_bits[r, t] marks the positions of token t in reference r. Tokens are renumbered
    # over the reference vocabulary; the extra last row, with no bits, serves hypothesis
    # tokens that no reference contains, and padding.
    vocabulary = np.unique(references[references >= 0])
    rows, positions = np.nonzero(references >= 0)
    tokens = np.searchsorted(vocabulary, references[rows, positions])
    match_bits = np.zeros((n_ref, vocabulary.size + 1, n_words), dtype=np.uint64)
    bits = np.left_shift(np.uint64(1), (positions % 64).astype(np.uint64))
    np.bitwise_or.at(match_bits, (rows, tokens, positions // 64), bits)
    hyp_ids = np.where(np.isin(hypotheses, vocabulary), np.searchsorted(vocabulary, hypotheses), vocabulary.size)

    # state bit j is 0 where LCS(hypothesis so far, reference[:j+1]) steps up; the update is
    # V' = (V + U) | (V - U) with U = V & matches, and V - U = V & ~U because U is a subset of V.
    state = np.full((n_ref, n_hyp, n_words), np.iinfo(np.uint64).max, dtype=np.uint64)
    for i in range(hyp_width):
        taken = state & match_bits[:, hyp_ids[:, i]]
        state = _add_with_carry(state, taken) | (state & ~taken)

    # The LCS length is the number of zero bits among a reference's first m positions.
    lengths = (references >= 0).sum(axis=1)
    bits_in_word = np.clip(lengths[:, None] - 64 * np.arange(n_words), 0, 64).astype(np.uint64)
    all_ones = np.iinfo(np.uint64).max
    low_bits = np.where(bits_in_word == 64, all_ones, (np.uint64(1) << np.minimum(bits_in_word, 63)) - 1).astype(
        np.uint64
    )
    ones = np.bitwise_count(state & low_bits[:, None, :]).sum(axis=-1)
    return (lengths[:, None] - ones).T.astype(np.int64)


def rouge_l_matrix(
    hypotheses: Sequence[str],
    references: Sequence[str] | None = None,
    config: RougeLConfig = RougeLConfig(),
) -> np.ndarray:
    """rouge-score's ROUGE-L F-measure ``score(target=references[j], prediction=hypotheses[i])``.

    Args:
        hypotheses: H texts.
        references: R texts; None uses the hypotheses.
        config: ROUGE-L settings.

    Returns:
        (H, R) array with values in [0, 1].

    >>> rouge_l_matrix(["the cat sat on the mat"], ["the cat is on the mat"]).round(4)
    array([[0.8333]])
    """
    tokenize = _rouge_tokenizer(config.use_stemmer).tokenize
    ids, lengths = _token_ids([tokenize(text) for text in _texts(hypotheses, references)])
    padded = _padded(ids, lengths)
    n_hyp = len(hypotheses)
    ref_rows = slice(0, n_hyp) if references is None else slice(n_hyp, None)
    lcs = lcs_length_matrix(padded[:n_hyp], padded[ref_rows]).astype(np.float64)
    hyp_lengths = lengths[:n_hyp, None]
    ref_lengths = lengths[None, ref_rows]
    shape = lcs.shape
    # Same operations as rouge_score._score_lcs and scoring.fmeasure; empty sides score 0.
    precision = np.divide(lcs, hyp_lengths, out=np.zeros(shape), where=hyp_lengths > 0)
    recall = np.divide(lcs, ref_lengths, out=np.zeros(shape), where=ref_lengths > 0)
    total = precision + recall
    return np.divide(2 * precision * recall, total, out=np.zeros(shape), where=total > 0)


@lru_cache(maxsize=4)
def _bleu_preprocessor(tokenize: str, lowercase: bool) -> Callable[[str], str]:
    from sacrebleu.metrics import BLEU

    tokenizer = BLEU(tokenize=tokenize).tokenizer

    # Same steps as BLEU._preprocess_segment: optional lowercasing, then tokenising.
    def preprocess(text: str) -> str:
        return tokenizer((text.lower() if lowercase else text).rstrip())

    return preprocess


def bleu_matrix(
    hypotheses: Sequence[str],
    references: Sequence[str] | None = None,
    config: BleuConfig = BleuConfig(),
) -> np.ndarray:
    """``sacrebleu.sentence_bleu(hypotheses[i], [references[j]]).score`` for all pairs.

    Agrees with sacrebleu to rounding error (~1e-12): numpy's log and exp may differ from the
    math module's in the last bit.

    Args:
        hypotheses: H texts.
        references: R texts; None uses the hypotheses.
        config: BLEU settings.

    Returns:
        (H, R) array with values in [0, 100].

    >>> bleu_matrix(["the cat sat on the mat", "a dog"]).round(2)
    array([[100.,   0.],
           [  0., 100.]])
    """
    preprocess = _bleu_preprocessor(config.tokenize, config.lowercase)
    texts = _texts(hypotheses, references)
    ids, lengths = _token_ids([preprocess(text).split() for text in texts])
    n_hyp = len(hypotheses)
    sys_len = lengths[:n_hyp, None]
    ref_len = lengths[None, :n_hyp] if references is None else lengths[None, n_hyp:]
    shape = (n_hyp, ref_len.shape[1])

    # Mirrors BLEU.compute_bleu with smooth_method="exp" and effective_order=True. Hypothesis
    # n-gram totals shrink with n, so sacrebleu's "break at the first order with no n-grams"
    # means: use the orders with a positive total.
    log_precision_sum = np.zeros(shape)
    effective_order = np.zeros(shape)
    smoothing = np.ones(shape)
    any_match = np.zeros(shape, dtype=bool)
    by_order = _ngrams_by_order(ids, lengths, config.max_ngram_order)
    for n, (owner, gram_ids) in enumerate(by_order, start=1):
        correct = _clipped_matches(owner, gram_ids, len(texts), n_hyp, references is None)
        total = np.broadcast_to(np.maximum(sys_len - n + 1, 0), shape)
        used = total > 0
        unmatched = used & (correct == 0)
        smoothing = np.where(unmatched, smoothing * 2, smoothing)
        safe_total = np.where(used, total, 1.0)
        smoothed = 100.0 / (smoothing * safe_total)
        precision = np.where(unmatched, smoothed, 100.0 * correct / safe_total)
        log_precision_sum += np.where(used, np.log(np.where(used, precision, 1.0)), 0.0)
        effective_order += used
        any_match |= correct > 0
    shortfall = np.exp(1 - ref_len / np.maximum(sys_len, 1.0))
    brevity = np.where(sys_len < ref_len, np.where(sys_len > 0, shortfall, 0.0), 1.0)
    mean_log = np.divide(log_precision_sum, effective_order, out=np.zeros(shape), where=effective_order > 0)
    # sacrebleu returns 0 as soon as no n-gram of any order matches.
    return np.where(any_match, brevity * np.exp(mean_log), 0.0)


def token_f1_matrix(hypotheses: Sequence[str], references: Sequence[str] | None = None) -> np.ndarray:
    """SQuAD token F1 (:func:`workbench.metric_aware.metrics.token_f1`) of every hypothesis against every reference.

    Bag-of-tokens overlap is the clipped unigram match, so it is one sparse product as for chrF.

    Args:
        hypotheses: H texts.
        references: R texts; None uses the hypotheses.

    Returns:
        (H, R) array with values in [0, 1]; a pair with an empty side scores 1 only when both are empty.

    >>> token_f1_matrix(["the cat sat", ""], ["cat sat down", ""]).round(4)
    array([[0.8, 0. ],
           [0. , 1. ]])
    """
    texts = _texts(hypotheses, references)
    ids, lengths = _token_ids([squad_normalize(text).split() for text in texts])
    n_hyp = len(hypotheses)
    hyp_lengths = lengths[:n_hyp, None]
    ref_lengths = lengths[None, :n_hyp] if references is None else lengths[None, n_hyp:]
    shape = (n_hyp, ref_lengths.shape[1])
    owner, gram_ids = next(_ngrams_by_order(ids, lengths, 1))
    overlap = _clipped_matches(owner, gram_ids, len(texts), n_hyp, references is None)
    precision = np.divide(overlap, hyp_lengths, out=np.zeros(shape), where=hyp_lengths > 0)
    recall = np.divide(overlap, ref_lengths, out=np.zeros(shape), where=ref_lengths > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros(shape), where=total > 0)
    # SQuAD 2.0 convention, as in the sentence form: with an empty side, 1 only when both are empty.
    either_empty = (hyp_lengths == 0) | (ref_lengths == 0)
    return np.where(either_empty, ((hyp_lengths == 0) & (ref_lengths == 0)).astype(float), f1)


def cosine_matrix(hypotheses: Sequence[str], references: Sequence[str] | None = None) -> np.ndarray:
    """Cosine similarity of the MiniLM embeddings (:mod:`workbench.metric_aware.embeddings`) of all pairs.

    Args:
        hypotheses: H texts.
        references: R texts; None scores the hypotheses against each other.

    Returns:
        (H, R) array in [-1, 1] (float64; symmetric when ``references`` is None).
    """
    texts = _texts(hypotheses, references)
    vectors = embed(texts).astype(np.float64)
    n = len(hypotheses)
    return np.clip(vectors[:n] @ (vectors[:n] if references is None else vectors[n:]).T, -1.0, 1.0)  # as minilm_cosine
