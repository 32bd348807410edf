r"""Which fine-tuning settings teach the embedded model STS-B: short runs side by side on one budget.

Every arm fine-tunes SmolLM2-135M-Instruct from the same start on the same cleaned training subset
(``recipe.prepared_splits``), for the same number of steps, and is scored every ``--eval-every``
steps on the same dev items as the final run (``recipe.dev_subsets``, 200 per task): STS-B
Spearman / RMSE of the exact mean, SST-5 accuracy of the exact mode. Arms differ in one thing
each (objective, soft-target sd, coarse targets, learning rate, trained layers):

    python benchmarks/stsb_experiments.py --arms ce soft --tasks stsb --steps 120 --eval-every 40
    # one epoch, model kept:
    python benchmarks/stsb_experiments.py --arms soft --tasks stsb --steps 356 --eval-every 89 --save
    python benchmarks/stsb_experiments.py --arms soft --tasks stsb sst5 --examples sst5=2500 \
        --steps 512 --eval-every 128 --save

One JSON line per arm goes to ``results/stsb_experiments.jsonl``, with its dev history, wall and
process CPU seconds (user + system: what the steps would cost on an idle machine with one thread)
and the load average around it, since the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from dataclasses import asdict, replace

import torch

from workbench.lifecycle import recipe
from workbench.lifecycle.finetune import FinetuneConfig, finetune, run_dir
from workbench.paths import RESULTS_DIR, model_name
from workbench.runs import append_record

BASE = FinetuneConfig(
    method="full", train_layers=8, batch_size=16, lr=3e-4, warmup_fraction=0.05, device="cpu", save_every=0
)
COARSE = {"task": "stsb", "answer_step": 0.5}
ARMS = {  # name: what differs from BASE (cross-entropy, top 8 layers, lr 3e-4)
    "ce": {},
    "ce_coarse": {"coarse": True},
    "ce_lr1e-3": {"lr": 1e-3},
    "ce_lr1e-4": {"lr": 1e-4},
    "mse_mix": {"objective": "mix"},
    "soft": {"objective": "soft", "soft_sd": 0.4},
    "soft_sd0.25": {"objective": "soft", "soft_sd": 0.25},
    "soft_sd0.7": {"objective": "soft", "soft_sd": 0.7},
    "soft_mix": {"objective": "soft_mix", "soft_sd": 0.4},
    "soft_lr1e-3": {"objective": "soft", "soft_sd": 0.4, "lr": 1e-3},
    "soft_lr1e-4": {"objective": "soft", "soft_sd": 0.4, "lr": 1e-4},
    "soft_top4_lr1e-3": {"objective": "soft", "soft_sd": 0.4, "lr": 1e-3, "train_layers": 4},
    "soft_top12": {"objective": "soft", "soft_sd": 0.4, "train_layers": 12},
    "soft_top12_lr1e-3": {"objective": "soft", "soft_sd": 0.4, "lr": 1e-3, "train_layers": 12},
    "ce_top12_lr1e-3": {"lr": 1e-3, "train_layers": 12},
}


def arm_config(
    name: str, tasks: list[str], steps: int, examples: int | dict[str, int] | None, eval_every: int
) -> FinetuneConfig:
    changes = dict(ARMS[name])
    coarse = changes.pop("coarse", False)
    specs = tuple(COARSE if (coarse and t == "stsb") else t for t in tasks)
    return replace(BASE, tasks=specs, max_steps=steps, max_examples=examples, eval_every=eval_every, **changes)


def example_limits(values: list[str] | None) -> int | dict[str, int] | None:
    """``--examples`` as FinetuneConfig.max_examples.

    >>> example_limits(None), example_limits(["400"]), example_limits(["sst5=2500"])
    (None, 400, {'sst5': 2500})
    """
    if not values:
        return None
    if len(values) == 1 and "=" not in values[0]:
        return int(values[0])
    return {task: int(number) for task, number in (value.split("=", 1) for value in values)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arms", nargs="+", required=True, choices=sorted(ARMS))
    parser.add_argument("--tasks", nargs="+", default=["stsb"])
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument(
        "--examples",
        nargs="+",
        default=None,
        help="training examples per task: one number for every task, or task=number pairs, "
        "e.g. sst5=2500 (default: all)",
    )
    parser.add_argument("--eval-every", type=int, default=40)
    parser.add_argument("--dev", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(RESULTS_DIR / "stsb_experiments.jsonl"))
    parser.add_argument(
        "--save",
        action="store_true",
        help="keep each arm's model under <cache>/finetuned/<key>/model (cached and resumable), "
        "to score it on the test sets with benchmarks/finetune_targets.py",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    splits, _ = recipe.prepared_splits(args.tasks)
    train = {name: parts["train"] for name, parts in splits.items()}
    dev = recipe.dev_subsets(splits, args.dev, seed=0)
    for name in args.arms:
        config = arm_config(name, args.tasks, args.steps, example_limits(args.examples), args.eval_every)
        if args.save:
            config = replace(config, output_dir=str(run_dir(config, train, dev=dev)), save_every=20)
        load_before, wall, cpu = os.getloadavg(), time.time(), resource.getrusage(resource.RUSAGE_SELF)
        result = finetune(config, examples=train, dev=dev, progress=False)
        after = resource.getrusage(resource.RUSAGE_SELF)
        record = {
            "arm": name,
            "config": {k: v for k, v in asdict(config).items() if k not in ("output_dir",)},
            "threads": args.threads,
            "steps": result.steps,
            "examples": result.examples,
            "wall_seconds": time.time() - wall,
            "cpu_seconds": (after.ru_utime + after.ru_stime) - (cpu.ru_utime + cpu.ru_stime),
            "throughput": result.throughput,
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            "dev_history": result.dev_history,
            "losses": result.losses,
            "model_dir": model_name(str(result.model_dir)) if result.model_dir else None,
        }
        append_record("stsb_experiments", record, args.out)
        last = result.dev_history[-1]["scores"]
        print(
            name,
            {
                t: {k: round(v, 3) for k, v in s.items() if k in ("accuracy", "rmse", "spearman", "outside_mass")}
                for t, s in last.items()
            },
            f"train cpu {result.throughput['train_cpu_seconds']:.0f} s, wall {record['wall_seconds']:.0f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
