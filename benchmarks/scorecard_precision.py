"""Notebook 07's stage scoring in bf16 against fp32: one arm's weights scored both ways, side by side.

Notebook 07 scores every scorecard stage on its four item sets (SST-5, STS-B, product reviews, SICK) with the
exact grid distribution (:func:`workbench.cost.generalization.rule_predictions`). This loads one weight set that
is registered in both precisions (default: the cross-entropy arm, ``<prefix>-arm-ce-fp32`` and ``-bf16``, which
the profile registers in both), scores the sets without the generation cache, sets and precisions interleaved
(order rotated per round, ``decoding_speed.measure``), and prints per set the best seconds of each precision and
the bf16 speed-up, then what the precision changes in the answers: the largest difference of the exact means, and
each precision's Spearman.

    python benchmarks/scorecard_precision.py --repeats 2

Run notebook 07 (or its arms) first, so the stages are registered. It only prints (no record is written).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).parent))
from decoding_speed import measure  # noqa: E402
from workbench.cost.generalization import rule_predictions  # noqa: E402
from workbench.cost.generalization_study import generalization_sets  # noqa: E402
from workbench.inference.engine import HFEngine  # noqa: E402
from workbench.lifecycle.stages import finetuned_prefix, load_stage  # noqa: E402
from workbench.profiles import load_profile  # noqa: E402
from workbench.runs import set_threads  # noqa: E402

PRECISIONS = ("fp32", "bf16")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--arm", default="ce", help="an arm registered in fp32 and bf16 (the profile's arm_variants)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: the idle cores)")
    args = parser.parse_args()
    set_threads(args.threads)
    sizes = load_profile(args.profile)["07_cost_generalization_evaluation"]
    sets = generalization_sets(sizes["gen_items"], seed=0)
    prefix = f"{finetuned_prefix(args.profile)}-arm-{args.arm}"
    stages = {dtype: load_stage(f"{prefix}-{dtype}", device="cpu", base_model=args.model) for dtype in PRECISIONS}
    engines = {dtype: HFEngine(lm, cache=None, progress=False) for dtype, lm in stages.items()}
    load_before = os.getloadavg()
    runs = {
        f"{name} {dtype}": lambda engine=engines[dtype], task=task, examples=examples: rule_predictions(
            engine, task, examples
        )
        for dtype in PRECISIONS
        for name, (task, examples) in sets.sets.items()
    }
    stats = measure(runs, args.repeats)
    seconds = {(name, dtype): stats[f"{name} {dtype}"]["seconds"] for name in sets.sets for dtype in PRECISIONS}
    gold = {name: stats[f"{name} fp32"]["result"][0] for name in sets.sets}
    means = {
        (name, dtype): stats[f"{name} {dtype}"]["result"][1]["exact mean"] for name in sets.sets for dtype in PRECISIONS
    }
    print(f"stage {prefix}-<precision>, {sizes['gen_items']} items per set, zero-shot; best of {args.repeats}")
    for name in sets.sets:
        fp32, bf16 = seconds[name, "fp32"], seconds[name, "bf16"]
        gap = float(np.max(np.abs(means[name, "fp32"] - means[name, "bf16"])))
        rho = {d: spearmanr(gold[name], means[name, d]).statistic for d in PRECISIONS}
        print(
            f"{name:16s} fp32 {fp32:6.1f} s  bf16 {bf16:6.1f} s  bf16 {fp32 / bf16:.2f}x faster;"
            f"  largest exact-mean difference {gap:.3f}, Spearman fp32 {rho['fp32']:.3f} bf16 {rho['bf16']:.3f}"
        )
    total = {d: sum(seconds[name, d] for name in sets.sets) for d in PRECISIONS}
    print(
        f"{'all sets':16s} fp32 {total['fp32']:6.1f} s  bf16 {total['bf16']:6.1f} s  "
        f"bf16 {total['fp32'] / total['bf16']:.2f}x faster"
    )
    print(f"load average before {load_before}, after {os.getloadavg()}")


if __name__ == "__main__":
    main()
