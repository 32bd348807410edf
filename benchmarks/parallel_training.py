"""The default recipe's fine-tuned arms trained one after another at all threads, and side by side in child
processes at one thread each (:func:`workbench.lifecycle.finetune.parallel.train_all`), on the same machine in one run.

Each way trains the profile's objectives (``ce``, ``soft``, ``mix``: notebook 02's arms) for ``--steps`` steps each
(learning rate fixed, no dev evaluations) from an empty trunk cache of its own (a fresh machine), ``--repeats``
times, alternating which way goes first. Printed: wall seconds of each way and the ratio sequential / side by side
(above 1: side by side is faster), and whether the two ways' final weights agree (they differ by rounding only:
one thread sums in another order than two).

    python benchmarks/parallel_training.py --steps 24 --repeats 1

Appends one record (``parallel_training``) to results/benchmarks.jsonl (``--record`` for another file).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import load_file

from workbench.inference.models import DEFAULT_MODEL, embedded_model_folder
from workbench.lifecycle import recipe
from workbench.lifecycle.finetune.parallel import Job, train_all
from workbench.runs import append_record

WAYS = ("sequential", "side by side")


def run(way: str, configs: dict, train: dict, folder: Path) -> float:
    """Train every config one way into ``folder`` (its own cache, trunk included); returns the wall seconds."""
    os.environ["WORKBENCH_CACHE_DIR"] = str(folder / "cache")  # the children inherit it
    embedded_model_folder(DEFAULT_MODEL)  # the model's one-time conversion into the new cache, outside the timing
    jobs = {name: Job(replace(c, output_dir=str(folder / way / name)), train) for name, c in configs.items()}
    tick = time.perf_counter()
    train_all(jobs, progress=False, workers=1 if way == "sequential" else 2)
    return time.perf_counter() - tick


def largest_weight_gap(a: Path, b: Path) -> float:
    """The largest relative difference between two saved models' trained weights."""
    first, second = load_file(a / "model" / "model.safetensors"), load_file(b / "model" / "model.safetensors")
    gaps = [float((first[k] - second[k]).abs().max() / first[k].abs().max().clamp_min(1e-12)) for k in first]
    return max(gaps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads of this process")
    parser.add_argument("--lr", type=float, default=3e-4, help="a fixed learning rate (the search's grid value)")
    parser.add_argument("--record", default=None, help="JSON-lines file (default results/benchmarks.jsonl)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    splits, _ = recipe.prepared_splits()
    train = {name: parts["train"] for name, parts in splits.items()}
    base = recipe.base_config("default", DEFAULT_MODEL, device="cpu")
    base = replace(base, max_steps=args.steps, lr=args.lr, eval_every=0, patience=None, save_every=0)
    objectives = recipe.profile_sizes("default").objectives
    configs = {objective: replace(base, objective=objective) for objective in objectives}
    print(f"{', '.join(objectives)}: {args.steps} steps each, {args.threads} threads here, {os.cpu_count()} cores")

    seconds: dict[str, list[float]] = {way: [] for way in WAYS}
    gaps = []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="parallel-bench-") as folder:
            for way in WAYS if repeat % 2 == 0 else WAYS[::-1]:
                seconds[way].append(run(way, configs, train, Path(folder) / way.replace(" ", "-")))
                print(f"  repeat {repeat} {way}: {seconds[way][-1]:.1f} s, load {os.getloadavg()[0]:.1f}", flush=True)
            gaps.append(
                max(
                    largest_weight_gap(
                        Path(folder) / "sequential" / "sequential" / name,
                        Path(folder) / "side-by-side" / "side by side" / name,
                    )
                    for name in objectives
                )
            )
    median = {way: statistics.median(values) for way, values in seconds.items()}
    ratio = median["sequential"] / median["side by side"]
    print(f"\nsequential {median['sequential']:.1f} s, side by side {median['side by side']:.1f} s: {ratio:.2f}x")
    print(f"largest relative gap of a trained weight between the ways: {max(gaps):.1e}")
    append_record(
        "parallel_training",
        {
            "objectives": list(objectives),
            "steps": args.steps,
            "threads": args.threads,
            "seconds": median,
            "all_seconds": seconds,
            "ratio_sequential_over_side_by_side": ratio,
            "largest_relative_weight_gap": max(gaps),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
        },
        path=args.record,
    )


if __name__ == "__main__":
    main()
