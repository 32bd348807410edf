"""The MMD baseline's statistic over a permutation null: one batched product per query against three einsums.

:func:`workbench.consistency.mmd_baseline.hamming_mmd_from_gram` evaluates the Hamming MMD of every split (the
observed one and each permutation) from the per-query Gram matrices. It used three three-operand einsums
(x'Gx, y'Gy, x'Gy); it now computes G x once per query as a batched matrix product and derives the three sums
from it (y = 1 - x). This script times both on notebook 06's default sizes (random tokens: the cost does not
depend on them), interleaved, checks that they agree, and times the whole permutation test.

    python benchmarks/mmd_statistic.py --queries 100 --samples 6 --length 32 --permutations 200

It only prints (no record is written).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from workbench.consistency.mmd_baseline import MMDConfig, hamming_gram, hamming_mmd_from_gram, mmd_permutation_test


def three_einsums(gram: np.ndarray, first: np.ndarray) -> np.ndarray:
    """The former evaluation, kept here as the reference."""
    x = first.astype(float)
    y = 1.0 - x
    q_count, k = gram.shape[0], gram.shape[1] // 2
    xx = np.einsum("sqi,qij,sqj->s", x, gram, x) - q_count * k
    yy = np.einsum("sqi,qij,sqj->s", y, gram, y) - q_count * k
    xy = np.einsum("sqi,qij,sqj->s", x, gram, y)
    within = q_count * k * (k - 1)
    return xx / within - 2 * xy / (q_count * k * k) + yy / within


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--samples", type=int, default=6)
    parser.add_argument("--length", type=int, default=32)
    parser.add_argument("--permutations", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    shape = (args.queries, args.samples, args.length)
    tokens_a, tokens_b = rng.integers(0, 8, shape), rng.integers(0, 8, shape)
    gram = hamming_gram(tokens_a, tokens_b)
    orders = np.argsort(rng.random((args.permutations + 1, args.queries, 2 * args.samples)), axis=-1)
    first = np.zeros(orders.shape, dtype=bool)
    np.put_along_axis(first, orders[..., : args.samples], True, axis=-1)
    ways = {"three einsums": three_einsums, "one batched product": hamming_mmd_from_gram}
    seconds = {name: [] for name in ways}
    values = {}
    for repeat in range(args.repeats):
        for name in list(ways)[:: 1 if repeat % 2 == 0 else -1]:
            started = time.perf_counter()
            values[name] = ways[name](gram, first)
            seconds[name].append(time.perf_counter() - started)
    best = {name: min(times) for name, times in seconds.items()}
    config = MMDConfig(n_permutations=args.permutations)
    started = time.perf_counter()
    for _ in range(args.repeats):
        mmd_permutation_test(tokens_a, tokens_b, config)
    test_seconds = (time.perf_counter() - started) / args.repeats
    print(f"{args.queries} queries x {args.samples} samples, {args.permutations} permutations")
    print({name: f"{1000 * value:.2f} ms" for name, value in best.items()})
    print(
        f"one batched product: {best['three einsums'] / best['one batched product']:.2f}x faster; largest "
        f"difference {np.abs(values['three einsums'] - values['one batched product']).max():.1e}; whole test "
        f"{1000 * test_seconds:.1f} ms; load average {os.getloadavg()}"
    )


if __name__ == "__main__":
    main()
