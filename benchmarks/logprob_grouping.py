"""The log-probability test's scoring: one forward pass per (response set, scorer) against one per prompt format.

:func:`workbench.consistency.logprob.score_responses` scores every response set that needs one model and prompt
format together: one prompt pass per query, then all those sets' responses to it in one batch, with every decoding
(temperature, top-p, length limit) read from the same logits. The naive way runs one pass per (set, scorer). This
script times both on the same responses (notebook 06's response files), interleaved, and checks they agree.

    python benchmarks/logprob_grouping.py --responses ~/.cache/workbench/responses/smollm2-135m-instruct/06_smoke

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
from workbench.consistency.logprob import response_logliks
from workbench.consistency.responses import load_responses
from workbench.inference.models import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--responses", type=Path, required=True, help="a folder of notebook 06's response files")
    parser.add_argument("--sets", nargs="+", default=["reference", "aa-new-seeds", "temperature-1.0", "top-p-0.8"])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    table = load_responses([args.responses / f"{name}.jsonl" for name in args.sets])
    first = table.iloc[0]
    scorers = [
        Variant(name, temperature=float(t), top_p=float(p), max_new_tokens=int(m))
        for name, t, p, m in table.groupby("stage")[["temperature", "top_p", "max_new_tokens"]].first().itertuples()
    ]
    lm = load_model(device="cpu")
    print(f"{len(table)} responses in {len(args.sets)} sets, {len(scorers)} scorers; prompt format of {first.stage}")
    seconds = {"one pass per (set, scorer)": [], "one pass per prompt format": []}
    for repeat in range(args.repeats):
        for way in list(seconds)[:: 1 if repeat % 2 == 0 else -1]:
            started = time.perf_counter()
            if way.startswith("one pass per (set"):
                parts = [
                    response_logliks(lm, [scorer], table[table.stage == name])[0]
                    for scorer in scorers
                    for name in args.sets
                ]
                naive = np.stack(
                    [np.concatenate(parts[i : i + len(args.sets)]) for i in range(0, len(parts), len(args.sets))]
                )
            else:
                ordered = pd.concat([table[table.stage == name] for name in args.sets], ignore_index=True)
                grouped = response_logliks(lm, scorers, ordered)
            seconds[way].append(time.perf_counter() - started)
    best = {way: min(s) for way, s in seconds.items()}
    print({way: [round(s, 1) for s in values] for way, values in seconds.items()})
    naive_way, grouped_way = list(best)
    print(
        f"speed-up of grouping: {best[naive_way] / best[grouped_way]:.2f}x; largest difference "
        f"{np.abs(naive - grouped).max():.2e} nats; load average {os.getloadavg()}"
    )


if __name__ == "__main__":
    main()
