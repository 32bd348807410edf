"""The log-probability test's scoring, several ways on the same responses: one forward pass per (response set,
scorer) (``--naive``); one per prompt format with each prompt's responses in one padded batch; the same in
batches of similar length; and top-p's nucleus from a vocabulary sort or from the most likely candidates.

:func:`workbench.consistency.logprob.score_responses` scores every response set that needs one model and prompt
format together: one prompt pass per query, then all those sets' responses to it, with every decoding
(temperature, top-p, length limit) read from the same logits. Its responses run in batches of similar length
(:func:`workbench.inference.prompt_logprobs.length_groups`); ``LogprobConfig(pass_overhead=10**9)`` gives the
former single batch per prompt, padded to its longest response. A top-p scorer finds its nucleus among
:data:`workbench.inference.logits.NUCLEUS_CANDIDATES` tokens; as many candidates as the vocabulary is the former
whole sort. This script times the ways on the same responses (notebook 06's response files), interleaved, and
checks that they agree.

    python benchmarks/logprob_grouping.py --responses ~/.cache/workbench/responses/smollm2-135m-instruct/06_default

It only prints (no record is written).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.consistency.generate import Variant
from workbench.consistency.logprob import LogprobConfig, response_logliks
from workbench.consistency.responses import load_responses
from workbench.inference import logits
from workbench.inference.models import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--responses", type=Path, required=True, help="a folder of notebook 06's response files")
    parser.add_argument("--sets", nargs="+", default=["reference", "aa-new-seeds", "temperature-1.0", "top-p-0.8"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--naive", action="store_true", help="also time one pass per (set, scorer) (slow)")
    parser.add_argument("--queries", type=int, default=None, help="only the first N queries (default: all)")
    args = parser.parse_args()
    table = load_responses([args.responses / f"{name}.jsonl" for name in args.sets])
    if args.queries:
        table = table[table.query_id.isin(list(dict.fromkeys(table.query_id))[: args.queries])]
    first = table.iloc[0]
    scorers = [
        Variant(name, temperature=float(t), top_p=float(p), max_new_tokens=int(m))
        for name, t, p, m in table.groupby("stage")[["temperature", "top_p", "max_new_tokens"]].first().itertuples()
    ]
    lm = load_model(device="cpu")
    print(f"{len(table)} responses in {len(args.sets)} sets, {len(scorers)} scorers; prompt format of {first.stage}")
    ordered = pd.concat([table[table.stage == name] for name in args.sets], ignore_index=True)

    def per_set_and_scorer() -> np.ndarray:
        parts = {
            (scorer.name, name): response_logliks(lm, [scorer], table[table.stage == name])[0]
            for scorer in scorers
            for name in args.sets
        }
        return np.stack([np.concatenate([parts[scorer.name, name] for name in args.sets]) for scorer in scorers])

    def sorting(way):  # the nucleus from a sort of the whole vocabulary, as before the candidates
        def run():
            candidates = logits.NUCLEUS_CANDIDATES
            logits.NUCLEUS_CANDIDATES = len(lm.tokenizer)
            try:
                return way()
            finally:
                logits.NUCLEUS_CANDIDATES = candidates

        return run

    one_batch = LogprobConfig(pass_overhead=10**9)
    ways = {
        "one pass per (set, scorer)": sorting(per_set_and_scorer),
        "one padded batch per prompt, top-p sorts": sorting(lambda: response_logliks(lm, scorers, ordered, one_batch)),
        "batches of similar length, top-p sorts": sorting(lambda: response_logliks(lm, scorers, ordered)),
        "batches of similar length, top-p candidates": lambda: response_logliks(lm, scorers, ordered),
    }
    ways = {name: way for name, way in ways.items() if args.naive or not name.startswith("one pass per (set")}
    seconds, values = {name: [] for name in ways}, {}
    for repeat in range(args.repeats):
        for name in list(ways)[:: 1 if repeat % 2 == 0 else -1]:
            started = time.perf_counter()
            values[name] = ways[name]()
            seconds[name].append(time.perf_counter() - started)
    best = {name: min(s) for name, s in seconds.items()}
    print({name: [round(s, 1) for s in times] for name, times in seconds.items()})
    last = list(ways)[-1]
    for name in list(ways)[:-1]:
        print(
            f"{last} vs {name}: {best[name] / best[last]:.2f}x faster; largest difference "
            f"{np.abs(values[name] - values[last]).max():.2e} nats"
        )
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
