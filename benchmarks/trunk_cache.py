"""The default recipe's training steps with and without the frozen-trunk cache, side by side.

The real default configuration (``recipe.base_config("default", ...)``: the embedded model, full
fine-tuning of the top 8 of 30 layers, bf16 autocast, batches of 16, cleaned SST-5 and STS-B
training examples) trains ``--steps`` steps through :func:`workbench.lifecycle.finetune.finetune`
three ways, round-robin, ``--repeats`` times:

* ``off``: ``trunk_cache=False``, the whole model runs every step;
* ``cold``: the trunk cache on, empty (a fresh folder): every example's lower-layer outputs are
  computed in the step that first needs them, in that step's layout (what a first epoch costs);
* ``warm``: the trunk cache on, read from the folder ``cold`` filled, in a new run (what every later
  epoch, seed, objective and search trial over the same examples costs).

The time is the loop's own ``train_seconds`` (forward, backward, optimizer; model loading and
dev evaluations excluded), and its process CPU time (less sensitive to other processes' load).
Ratios are ``off / variant`` (above 1: faster than off). The losses of the runs are compared step
by step: the cached trunk gives the same numbers up to rounding.

    python benchmarks/trunk_cache.py --steps 8 --repeats 2 --objectives ce soft
    python benchmarks/trunk_cache.py --steps 8 --repeats 2 --method lora   # notebook 06's LoRA sibling

Appends one record (``trunk_cache``) to results/benchmarks.jsonl (``--record`` for another file).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from dataclasses import replace

import torch

from workbench.inference.models import DEFAULT_MODEL
from workbench.lifecycle import recipe
from workbench.lifecycle.finetune import finetune
from workbench.lifecycle.finetune.trunk import FORMAT
from workbench.lifecycle.finetune.trunk_store import TensorStore
from workbench.runs import append_record
from workbench.sidebyside import SideBySide

VARIANTS = ("off", "cold", "warm")


def run(config, train, variant: str, folder: str) -> dict:
    """One training run of ``variant``; the trunk's files go to ``folder``."""
    store = TensorStore.Config(folder=folder)
    result = finetune(replace(config, trunk_cache=variant != "off"), examples=train, progress=False, trunk_store=store)
    return {"seconds": result.throughput["train_seconds"], "losses": result.losses, **result.throughput}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--objectives", nargs="+", default=["ce"])
    parser.add_argument("--lr", type=float, default=3e-4, help="a fixed learning rate (the search's grid value)")
    parser.add_argument(
        "--method", choices=("full", "lora"), default="full", help="lora: adapters on the same top layers instead"
    )
    parser.add_argument("--record", default=None, help="JSON-lines file (default results/benchmarks.jsonl)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    splits, _ = recipe.prepared_splits()
    train = {name: parts["train"] for name, parts in splits.items()}
    base = recipe.base_config("default", DEFAULT_MODEL, device="cpu")
    base = replace(base, max_steps=args.steps, lr=args.lr, eval_every=0, patience=None, output_dir=None)
    if args.method == "lora":  # as notebook 06's LoRA sibling (workbench.lifecycle.siblings)
        base = replace(base, method="lora", lora_layers=base.train_layers)
    print(f"default recipe: {base.method}, train_layers={base.train_layers}, {base.precision}, batch {base.batch_size}")

    rows = []
    for objective in args.objectives:
        config = replace(base, objective=objective)
        runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
        wall, cpu = SideBySide(VARIANTS), SideBySide(VARIANTS)
        for repeat in range(args.repeats):
            with tempfile.TemporaryDirectory(prefix="trunk-bench-") as folder:
                for variant in wall.order(repeat):
                    runs[variant].append(run(config, train, variant, folder))
                    last = runs[variant][-1]
                    wall.add(variant, last["seconds"])
                    cpu.add(variant, last["train_cpu_seconds"])
                    print(
                        f"  {objective} repeat {repeat} {variant}: {last['seconds']:.1f} s wall, "
                        f"{last['train_cpu_seconds']:.1f} s CPU, load {os.getloadavg()[0]:.1f}",
                        flush=True,
                    )
        reference = runs["off"][0]["losses"]
        gap = max(
            abs(a - b) / abs(a) for v in ("cold", "warm") for r in runs[v] for a, b in zip(reference, r["losses"])
        )
        row = {
            "objective": objective,
            "steps": args.steps,
            "seconds": wall.medians(),
            "all_seconds": wall.seconds,
            "cpu_seconds": cpu.medians(),
            **cpu.ratio_fields("cpu_"),
            **wall.ratio_fields(),
            "trunk_fill_seconds_cold": statistics.median(r["trunk_fill_seconds"] for r in runs["cold"]),
            "trunk_layers": runs["cold"][0]["trunk_layers"],
            "max_relative_loss_gap": gap,
        }
        rows.append(row)
    header = ("objective", "steps", "off s", "cold s", "warm s", "off/cold", "off/warm")
    print("\n{:9s} {:>5s} {:>7s} {:>7s} {:>7s} {:>8s} {:>8s}".format(*header))
    for row in rows:
        s = row["seconds"]
        print(
            f"{row['objective']:9s} {row['steps']:5d} {s['off']:7.1f} {s['cold']:7.1f} {s['warm']:7.1f} "
            f"{row['ratio_off_over_cold']:7.2f}x {row['ratio_off_over_warm']:7.2f}x   "
            f"(largest relative loss gap to off: {row['max_relative_loss_gap']:.1e})"
        )
        c = row["cpu_seconds"]
        print(
            f"{'  CPU s':9s} {'':5s} {c['off']:7.1f} {c['cold']:7.1f} {c['warm']:7.1f} "
            f"{row['cpu_ratio_off_over_cold']:7.2f}x {row['cpu_ratio_off_over_warm']:7.2f}x"
        )
    load_after = os.getloadavg()
    print(f"threads {args.threads}, load average before {load_before}, after {load_after}")
    append_record(
        "trunk_cache",
        {
            "model": DEFAULT_MODEL,
            "config": {k: v for k, v in base.training_key().items() if k not in ("tasks",)},
            "variants": {
                "off": "trunk_cache=False",
                "cold": "trunk cache on, empty",
                "warm": "trunk cache on, filled by cold",
            },
            "threads": args.threads,
            "repeats": args.repeats,
            "trunk_format": FORMAT,
            "load_average_before": load_before,
            "load_average_after": load_after,
            "rows": rows,
        },
        path=args.record,
    )


if __name__ == "__main__":
    main()
