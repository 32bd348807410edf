"""Baseline: the MMD two-sample test of "Model Equality Testing" (Gao, Liang, Guestrin, ICLR 2025).

The ``model-equality-testing`` package compares two samples of prompt-completion pairs, where a
completion is a fixed-length sequence of token ids: ``CompletionSample(prompts, completions,
m)`` holds them and ``model_equality_testing.tests.IMPLEMENTED_TESTS[stat_type](s1, s2)``
computes the statistic. The default, ``"mmd_hamming"``, is the test the paper recommends: the MMD
with the Hamming kernel ``k(x, y) = sum_l 1[x_l == y_l]`` between completions of the *same*
prompt (0 across prompts), normalised to a unit diagonal.

How responses become completions here (:class:`MMDConfig`):

* ``tokenizer="char"`` (default): Unicode code points, as the package's ``tokenize_unicode``;
  ``"whitespace"``: whitespace-separated words, numbered by first appearance in the table; or any
  callable ``str -> list[int]`` (e.g. a Hugging Face tokenizer's ``encode``).
* Each completion is truncated to ``max_length`` tokens and right-padded with ``pad_token_id``
  (-1, as in the package), so two short responses also agree on their padding positions.

The p-value comes from a permutation null with ``n_permutations`` permutations of the
statistic, ``(1 + #{null >= observed}) / (1 + n_permutations)``. For ``"mmd_hamming"`` the
statistic is evaluated from per-query Gram matrices (:func:`hamming_gram`): the kernel is 0
across queries, so the package's (n x n) matrices are block diagonal, and one (2k x 2k) block per
query, computed once, serves every permutation. It equals the package's value (a test checks
this) at a fraction of the cost: at 120 queries x 6 samples the package takes about 0.2 s per
statistic on this CPU. Other statistics call the package for every permutation. Unlike the
package's ``two_sample_permutation_pvalue``, which shuffles all rows (prompt included) between
the samples, responses are permuted *within each query*: every query contributes exactly k
responses per stage by design, and within-query shuffling keeps that, which makes the test
exact under H0. This loop also takes a seeded generator and prints no progress bar.

The budget matches SimCT's: n queries with k responses per stage and query.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from model_equality_testing.distribution import CompletionSample
from model_equality_testing.tests import IMPLEMENTED_TESTS

from workbench.consistency.power import rejection_rate

TWO_SAMPLE_STATISTICS = (
    "mmd_hamming",
    "mmd_kspectrum",
    "mmd_all_subsequences",
    "two_sample_L1",
    "two_sample_L2",
    "two_sample_chi_squared",
    "mmd_hamming_package",
)  # the last: mmd_hamming computed by the package (slow; for checks)


@dataclasses.dataclass
class MMDConfig:
    """Settings of the MMD baseline.

    Attributes:
        stat_type: a two-sample statistic of ``model_equality_testing.tests.IMPLEMENTED_TESTS``.
        tokenizer: ``"char"``, ``"whitespace"`` or a callable ``str -> Sequence[int]``.
        max_length: completion length L (truncate / pad).
        n_permutations: permutations of the null distribution.
        pad_token_id: padding id (must not be a real token id).
    """

    stat_type: str = "mmd_hamming"
    tokenizer: str | Callable[[str], Sequence[int]] = "char"
    max_length: int = 50
    n_permutations: int = 1000
    pad_token_id: int = -1


@dataclasses.dataclass(frozen=True)
class MMDResult:
    """One MMD two-sample test.

    Attributes:
        p_value: permutation p-value (small: the stages differ).
        statistic: the observed statistic.
        n_queries, samples_per_query: the budget used.
        n_permutations: size of the permutation null.
    """

    p_value: float
    statistic: float
    n_queries: int
    samples_per_query: int
    n_permutations: int


@dataclasses.dataclass(frozen=True)
class TokenCube:
    """Tokenised responses of two stages.

    Attributes:
        query_ids: (Q,) query ids.
        tokens_a: (Q, n_a, L) token ids of stage A's responses.
        tokens_b: (Q, n_b, L) token ids of stage B's responses.
    """

    query_ids: tuple[str, ...]
    tokens_a: np.ndarray
    tokens_b: np.ndarray


def _tokenizer(config: MMDConfig, texts: Sequence[str]) -> Callable[[str], Sequence[int]]:
    if callable(config.tokenizer):
        return config.tokenizer
    if config.tokenizer == "char":
        return lambda text: [ord(c) for c in text]
    if config.tokenizer == "whitespace":
        vocabulary: dict[str, int] = {}
        for text in texts:
            for word in text.split():
                vocabulary.setdefault(word, len(vocabulary))
        return lambda text: [vocabulary[word] for word in text.split()]
    raise ValueError(f"tokenizer must be 'char', 'whitespace' or a callable, got {config.tokenizer!r}")


def encode_responses(texts: Sequence[str], config: MMDConfig) -> np.ndarray:
    """Token ids of each text, truncated and padded to ``config.max_length``.

    Args:
        texts: n texts (for ``"whitespace"`` they also define the vocabulary).
        config: tokenizer, length and padding settings.

    Returns:
        (n, max_length) int64 array.

    >>> encode_responses(["ab", "abcd"], MMDConfig(max_length=3)).tolist()
    [[97, 98, -1], [97, 98, 99]]
    """
    return _encode(texts, _tokenizer(config, texts), config)


def _encode(texts: Sequence[str], tokenize: Callable[[str], Sequence[int]], config: MMDConfig) -> np.ndarray:
    out = np.full((len(texts), config.max_length), config.pad_token_id, dtype=np.int64)
    for row, text in enumerate(texts):
        ids = list(tokenize(text))[: config.max_length]
        out[row, : len(ids)] = ids
    return out


def token_cube(
    table: pd.DataFrame, stage_a: str, stage_b: str, config: MMDConfig | None = None, n_samples: int | None = None
) -> TokenCube:
    """Tokenises the first ``n_samples`` responses per query of both stages (queries in both).

    Args:
        table: a response table.
        stage_a, stage_b: the stages.
        config: tokenisation settings.
        n_samples: responses per query and stage (default: the fewest available).
    """
    config = config or MMDConfig()
    rows = table[table.stage.isin([stage_a, stage_b])]
    counts = rows.groupby(["stage", "query_id"]).size().unstack("stage").dropna()
    if counts.empty or counts.shape[1] < 2:
        raise ValueError(f"no query has responses from both {stage_a!r} and {stage_b!r}")
    available = int(counts.values.min())
    n_samples = n_samples or available
    if n_samples > available:
        raise ValueError(f"n_samples={n_samples} exceeds the fewest responses of a query ({available})")
    query_ids = tuple(query for query in dict.fromkeys(table.query_id) if query in counts.index)
    tokenize = _tokenizer(config, rows.response.tolist())  # one vocabulary for both stages
    cubes = []
    for stage in (stage_a, stage_b):
        first = (
            rows[rows.stage == stage]
            .groupby("query_id", sort=False)
            .head(n_samples)
            .set_index("query_id")
            .loc[list(query_ids)]
        )
        tokens = _encode(first.response.tolist(), tokenize, config)
        cubes.append(tokens.reshape(len(query_ids), n_samples, config.max_length))
    return TokenCube(query_ids, cubes[0], cubes[1])


def _completion_sample(tokens: np.ndarray) -> CompletionSample:
    """A package sample from (n_queries, k, L) tokens: query q is prompt index q."""
    n_queries, k, length = tokens.shape
    return CompletionSample(
        prompts=np.repeat(np.arange(n_queries), k), completions=tokens.reshape(n_queries * k, length), m=n_queries
    )


def mmd_permutation_test(
    tokens_a: np.ndarray, tokens_b: np.ndarray, config: MMDConfig | None = None, seed: int = 0
) -> MMDResult:
    """The package's two-sample statistic with a within-query permutation null.

    Args:
        tokens_a: (n_queries, k, L) token ids from stage A.
        tokens_b: (n_queries, k, L) token ids from stage B (same queries, same order).
        config: statistic and permutation settings.
        seed: seeds the permutations.

    Returns:
        The :class:`MMDResult`.
    """
    config = config or MMDConfig()
    if config.stat_type not in TWO_SAMPLE_STATISTICS:
        raise ValueError(f"stat_type must be one of {TWO_SAMPLE_STATISTICS}, got {config.stat_type!r}")
    if tokens_a.shape != tokens_b.shape or tokens_a.ndim != 3:
        raise ValueError(
            f"tokens_a and tokens_b must both be (n_queries, k, L), got {tokens_a.shape} and {tokens_b.shape}"
        )
    n_queries, k, _ = tokens_a.shape
    rng = np.random.default_rng(seed)
    # The permutations: per query, which k of the 2k pooled responses form the first sample.
    # (one draw of every permutation's uniforms: the same numbers, in the same order, as one draw per permutation)
    orders = np.argsort(rng.random((config.n_permutations, n_queries, 2 * k)), axis=-1)
    if config.stat_type == "mmd_hamming":
        gram = hamming_gram(tokens_a, tokens_b)
        first = np.zeros((1 + config.n_permutations, n_queries, 2 * k), dtype=bool)
        first[0, :, :k] = True  # the observed split
        np.put_along_axis(first[1:], orders[..., :k], True, axis=-1)
        statistics = hamming_mmd_from_gram(gram, first)
        observed, null = float(statistics[0]), statistics[1:]
    else:
        observed, null = _package_null(
            tokens_a, tokens_b, orders, IMPLEMENTED_TESTS[config.stat_type.removesuffix("_package")]
        )
    p_value = (1 + np.sum(null >= observed - 1e-12 * abs(observed))) / (1 + config.n_permutations)
    return MMDResult(float(p_value), observed, n_queries, k, config.n_permutations)


def _package_null(
    tokens_a: np.ndarray, tokens_b: np.ndarray, orders: list[np.ndarray], statistic
) -> tuple[float, np.ndarray]:
    """The package's statistic on the observed split and on each permutation ``orders[b]``."""
    k = tokens_a.shape[1]
    pooled = np.concatenate([tokens_a, tokens_b], axis=1)  # (n_queries, 2k, L)
    try:
        observed = float(statistic(_completion_sample(tokens_a), _completion_sample(tokens_b)))
        null = np.empty(len(orders))
        for b, order in enumerate(orders):
            shuffled = np.take_along_axis(pooled, order[:, :, None], axis=1)
            null[b] = statistic(_completion_sample(shuffled[:, :k]), _completion_sample(shuffled[:, k:]))
    finally:
        # CompletionSample.sequences is a property over functools.cache keyed by the instance, so
        # every sample ever built stays alive; thousands of permutations would pile up otherwise.
        for cached in (
            CompletionSample.sequences.fget,
            CompletionSample.sample.fget,
            CompletionSample._prompt_completion_to_sample,
        ):
            cached.cache_clear()
    return observed, null


def hamming_gram(tokens_a: np.ndarray, tokens_b: np.ndarray) -> np.ndarray:
    """Per-query normalised Hamming kernel of the pooled responses.

    Args:
        tokens_a, tokens_b: (n_queries, k, L) token ids.

    Returns:
        (n_queries, 2k, 2k) matrices ``K[q, i, j] = #{l: x_il == x_jl} / L`` over the
        concatenation of A's and B's responses to query q (the package's kernel, normalised to a
        unit diagonal as the package does).
    """
    pooled = np.concatenate([tokens_a, tokens_b], axis=1)
    return (pooled[:, :, None, :] == pooled[:, None, :, :]).mean(axis=-1)


def hamming_mmd_from_gram(gram: np.ndarray, first: np.ndarray) -> np.ndarray:
    """The package's ``mmd_hamming`` statistic for splits of the pooled responses.

    Args:
        gram: (Q, 2k, 2k) from :func:`hamming_gram`.
        first: (S, Q, 2k) booleans, k True per query: the responses of the first sample.

    Returns:
        (S,) statistics: mean kernel within the first sample (pairs of distinct responses to the
        same query) - 2 x mean across samples + mean within the second sample.
    """
    x = first.astype(float)
    q_count, k = gram.shape[0], gram.shape[1] // 2
    # One batched product G x per query serves all three sums: with y = 1 - x, x'Gy = x'G1 - x'Gx and
    # y'Gy = 1'G1 - 2 x'G1 + x'Gx (G symmetric); three three-operand einsums took 9 ms per test.
    gx = np.matmul(x.transpose(1, 0, 2), gram).transpose(1, 0, 2)  # (S, Q, 2k)
    x_gx = (x * gx).sum(axis=(1, 2))
    x_g1 = (x * gram.sum(axis=2)[None]).sum(axis=(1, 2))
    xx = x_gx - q_count * k  # minus the unit diagonal
    xy = x_g1 - x_gx
    yy = gram.sum() - 2 * x_g1 + x_gx - q_count * k
    within = q_count * k * (k - 1)
    return xx / within - 2 * xy / (q_count * k * k) + yy / within


def mmd_test(
    table: pd.DataFrame,
    stage_a: str,
    stage_b: str,
    config: MMDConfig | None = None,
    n_samples: int | None = None,
    seed: int = 0,
) -> MMDResult:
    """MMD baseline on all queries of a response table (first ``n_samples`` responses each)."""
    cube = token_cube(table, stage_a, stage_b, config, n_samples)
    return mmd_permutation_test(cube.tokens_a, cube.tokens_b, config, seed)


def mmd_power_curve(
    cube: TokenCube,
    n_queries: Sequence[int],
    samples_per_query: Sequence[int] | int | None = None,
    n_runs: int = 100,
    alpha: float = 0.05,
    config: MMDConfig | None = None,
    seed: int = 0,
    replace: bool = True,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Rejection rate of the MMD baseline, resampled like :func:`~workbench.consistency.power.power_curve`.

    Each run draws ``n`` queries (with replacement by default) and, per drawn query, ``k``
    random responses of each stage, then runs :func:`mmd_permutation_test`. The columns match
    SimCT's power curve so the two can be plotted side by side. (With a cube of A against a
    rerun A', the rate is the false alarm rate.)

    Args:
        cube: tokenised responses (:func:`token_cube`).
        n_queries: numbers of queries to simulate.
        samples_per_query: responses per stage and query (default: all).
        n_runs: runs per grid point (each runs a permutation test: keep this modest).
        alpha: significance level.
        config: MMD settings (``n_permutations`` per run).
        seed: seeds the draws.
        replace: draw queries with replacement.
        confidence: level of the Clopper-Pearson intervals.

    Returns:
        One row per (n_queries, samples_per_query) with the
        :class:`~workbench.consistency.power.RejectionRate` columns.
    """
    q_count, n_a, _ = cube.tokens_a.shape
    n_b = cube.tokens_b.shape[1]
    if samples_per_query is None:
        samples_per_query = min(n_a, n_b)
    ks = [samples_per_query] if isinstance(samples_per_query, int) else list(samples_per_query)
    rows = []
    for point, (k, n) in enumerate((k, n) for k in ks for n in n_queries):
        if k > min(n_a, n_b):
            raise ValueError(f"samples_per_query={k} exceeds the responses per stage ({min(n_a, n_b)})")
        if not replace and n > q_count:
            raise ValueError(f"cannot draw {n} of {q_count} queries without replacement")
        rng = np.random.default_rng([seed, point])
        p_values = np.empty(n_runs)
        for run in range(n_runs):
            queries = rng.choice(q_count, size=n, replace=replace)
            pick_a = np.argsort(rng.random((n, n_a)), axis=1)[:, :k]
            pick_b = np.argsort(rng.random((n, n_b)), axis=1)[:, :k]
            tokens_a = cube.tokens_a[queries[:, None], pick_a]
            tokens_b = cube.tokens_b[queries[:, None], pick_b]
            p_values[run] = mmd_permutation_test(tokens_a, tokens_b, config, seed=int(rng.integers(2**32))).p_value
        rows.append(dataclasses.asdict(rejection_rate(p_values, alpha, n, k, confidence)))
    return pd.DataFrame(rows)


def stage_tokens(table: pd.DataFrame, stage: str, config: MMDConfig) -> np.ndarray:
    """(Q, n, L) token ids of one stage's responses (n: the fewest per query), for :func:`mmd_aa_false_alarm_rate`."""
    rows = table[table.stage == stage]
    n = int(rows.groupby("query_id").size().min())
    ordered = pd.concat([group.head(n) for _, group in rows.groupby("query_id", sort=False)])
    return encode_responses(ordered.response.tolist(), config).reshape(-1, n, config.max_length)


def mmd_aa_false_alarm_rate(
    tokens: np.ndarray,
    n_queries: int,
    samples_per_query: int,
    n_runs: int = 100,
    alpha: float = 0.05,
    config: MMDConfig | None = None,
    seed: int = 0,
):
    """Rejection rate of the MMD baseline between random halves of one stage's responses.

    The counterpart of :func:`~workbench.consistency.power.aa_false_alarm_rate`: each run
    draws ``n_queries`` queries with replacement and splits each one's responses at random into
    two disjoint sets of ``samples_per_query``.

    Args:
        tokens: (Q, n, L) token ids of one (pooled) stage, ``n >= 2 * samples_per_query``.
        n_queries, samples_per_query, n_runs, alpha, config, seed: as for the SimCT version.

    Returns:
        A :class:`~workbench.consistency.power.RejectionRate`.
    """
    q_count, n, _ = tokens.shape
    if 2 * samples_per_query > n:
        raise ValueError(f"A/A runs need 2 * samples_per_query <= {n} responses per query")
    rng = np.random.default_rng(seed)
    p_values = np.empty(n_runs)
    for run in range(n_runs):
        queries = rng.choice(q_count, size=n_queries, replace=True)
        order = np.argsort(rng.random((n_queries, n)), axis=1)
        first, second = order[:, :samples_per_query], order[:, samples_per_query : 2 * samples_per_query]
        p_values[run] = mmd_permutation_test(
            tokens[queries[:, None], first], tokens[queries[:, None], second], config, seed=int(rng.integers(2**32))
        ).p_value
    return rejection_rate(p_values, alpha, n_queries, samples_per_query)
