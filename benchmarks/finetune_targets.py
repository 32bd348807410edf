"""Issue 9's targets for a fine-tuned model, on the full test sets: SST-5 accuracy of the exact mode
and STS-B Spearman of the exact mean, with 95% bootstrap intervals.

The exact distribution over each task's answer grid comes from ``HFEngine.score`` on the zero-shot
prompts (as notebook 02 scores the fine-tuned stage, in bf16; scores are cached on disk by the
model's fingerprint, so notebook 02 reuses them):

    python benchmarks/finetune_targets.py --model ~/.cache/workbench/finetuned/<run>/model
    python benchmarks/finetune_targets.py --model <run A>/model --against <run B>/model   # + paired tests A - B
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from workbench.inference.engine import HFEngine
from workbench.metric_aware.bootstrap import paired_bootstrap
from workbench.metric_aware.experiments import RunConfig, comparison_table, run_task, strategy_predictions
from workbench.runs import append_record
from workbench.tasks import get_task

TARGETS = {"sst5": ("exact mode", "exact_match"), "stsb": ("exact mean", "spearman")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True, help="a fine-tuned model folder")
    parser.add_argument("--dtype", default="bf16")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit", type=int, default=None, help="test items per task (default: all)")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument(
        "--tasks", nargs="+", default=list(TARGETS), choices=list(TARGETS), help="the tasks the model was trained on"
    )
    parser.add_argument(
        "--against", default=None, help="a second model: paired bootstrap of each target, --model minus --against"
    )
    parser.add_argument(
        "--record",
        default=None,
        help="a JSON-lines file the report is appended to (e.g. results/stsb_experiments.jsonl)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    engine = HFEngine.load(args.model, dtype=args.dtype, progress=False)
    other = HFEngine.load(args.against, dtype=args.dtype, progress=False) if args.against else None
    report = {"model": args.model, "fingerprint": engine.lm.fingerprint_id, "dtype": args.dtype}
    if other is not None:
        report.update(against=args.against, against_fingerprint=other.lm.fingerprint_id)
    for name in args.tasks:
        strategy, metric = TARGETS[name]
        started = time.time()
        config = RunConfig(split="test", limit=args.limit, shots=0, k=0, greedy=False)
        run = run_task(engine, get_task(name), config)
        table = comparison_table(run, ("exact_match", "rmse", "mae", "spearman"), n_resamples=args.resamples)
        rows = table.loc[["exact mean", "exact median", "exact mode"]]
        report[name] = {
            "n": len(run.gold),
            "target": f"{metric} of the {strategy}",
            "value": float(rows.loc[strategy, metric]),
            "ci95": rows.loc[strategy, f"{metric} CI"],
            "outside_mass": float(run.outside_mass.mean()),
            "seconds": time.time() - started,
            "table": rows.round(4).to_dict(orient="index"),
        }
        if other is not None:  # the same items, the same rule, the other model: a paired test
            base = run_task(other, get_task(name), config)
            assert base.ids == run.ids
            ours, theirs = (
                strategy_predictions(run)[strategy].predictions,
                strategy_predictions(base)[strategy].predictions,
            )
            paired = paired_bootstrap(metric, ours, theirs, run.gold, n_resamples=args.resamples)
            report[name]["against"] = {
                "difference": paired.difference.estimate,
                "ci95": [paired.difference.low, paired.difference.high],
                "p_value": paired.p_value,
            }
        print(name, json.dumps(report[name], indent=1), flush=True)
    print(json.dumps(report, default=str))
    if args.record:
        append_record("finetune_targets", report, args.record)


if __name__ == "__main__":
    main()
