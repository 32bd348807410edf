"""Notebook 06's response generation with more queries decoded together (issue 17's SimCT batching direction).

The study's base reference used to sample at batch size 8 (8 prompts x k samples per decoding step); it now uses
the engine's default of 16 prompts, which also lets its responses share the generation cache with other notebooks.
This script times :func:`workbench.consistency.generate.generate_responses` on the same queries, samples and seeds
at each batch size, interleaved (one call of each per repeat, order alternating), with no disk cache and no
response files, and prints the seconds and the ratios.

    python benchmarks/simct_batching.py --queries 16 --samples 6 --max-new-tokens 32 --repeats 2

The figures are appended to results/benchmarks.jsonl (``--no-save`` to only print them).
"""

from __future__ import annotations

import argparse
import os
import time

from workbench.consistency.generate import Variant, build_queries, generate_responses
from workbench.inference.models import DEFAULT_MODEL
from workbench.runs import append_record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=16)
    parser.add_argument("--samples", type=int, default=6)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    queries = build_queries(args.queries - args.queries // 2, args.queries // 2, seed=0)
    seconds: dict[int, list[float]] = {b: [] for b in args.batch_sizes}
    for repeat in range(args.repeats):
        order = args.batch_sizes if repeat % 2 == 0 else args.batch_sizes[::-1]
        for batch in order:
            variant = Variant("reference", temperature=0.7, max_new_tokens=args.max_new_tokens, batch_size=batch)
            started = time.perf_counter()
            generate_responses(
                [variant], queries, args.samples, device="cpu", queries_per_call=max(order), progress=False
            )
            seconds[batch].append(time.perf_counter() - started)
    best = {b: min(s) for b, s in seconds.items()}
    first = args.batch_sizes[0]
    record = {
        "model": DEFAULT_MODEL,
        "queries": args.queries,
        "samples": args.samples,
        "max_new_tokens": args.max_new_tokens,
        "seconds": seconds,
        "speedup_vs_first": {b: best[first] / best[b] for b in best},
        "load_average": os.getloadavg(),
    }
    for b in args.batch_sizes:
        print(f"batch {b:3d}: best {best[b]:7.1f} s of {seconds[b]}; speed-up vs {first}: {best[first] / best[b]:.2f}x")
    print(f"load average {os.getloadavg()}")
    if not args.no_save:
        append_record("simct_batching", record)


if __name__ == "__main__":
    main()
