"""What one fine-tuned arm of the ladder costs on this machine: seconds per training example of each
objective (cross-entropy, soft-label ordinal, squared error of the grid mean) on each task.

Each (objective, task) trains the same real batches (zero-shot prompts with their gold answers, length-grouped
as the trainer groups them) with the profile's recipe (bf16 autocast, the top ``--layers`` layers trainable):
forward, backward and the optimizer step. The variants go round-robin ``--repeats`` times and each reports the
median, so load from other processes spreads over all of them alike. From the seconds per example, the
predicted cost of one arm at a budget of ``--examples`` per task follows (predicted, not measured end to end).

    python benchmarks/ladder_cost.py --threads 1 --repeats 3

Appends one JSON line to results/benchmarks.jsonl.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time

import torch

from workbench.inference.models import load_model
from workbench.lifecycle.finetune import FinetuneConfig
from workbench.lifecycle.finetune.encoding import training_set
from workbench.lifecycle.finetune.loss import ObjectiveLoss
from workbench.lifecycle.finetune.model import make_trainable
from workbench.runs import append_record

TASKS = ("sst5", "stsb", "sick")
OBJECTIVES = ("ce", "soft", "mse")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--batches", type=int, default=2, help="batches per task and repeat")
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--examples", type=int, default=2500, help="training examples per task of one arm")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    lm = load_model("smollm2-135m-instruct", device="cpu")
    n = args.batch * args.batches
    encoded = training_set(FinetuneConfig(tasks=TASKS, max_examples=n, seed=0), lm.tokenizer)
    batches = {
        task: [
            chunk[i : i + args.batch]
            for chunk in [sorted((e for e in encoded if e.task == task), key=lambda e: len(e.input_ids))]
            for i in range(0, n, args.batch)
        ]
        for task in TASKS
    }
    base_state = {k: v.clone() for k, v in lm.model.state_dict().items()}
    variants = [(objective, task) for objective in OBJECTIVES for task in TASKS]
    times: dict[tuple[str, str], list[float]] = {v: [] for v in variants}
    for repeat in range(args.repeats):
        order = list(variants)
        random.Random(repeat).shuffle(order)
        for objective, task in order:
            config = FinetuneConfig(method="full", train_layers=args.layers, objective=objective, tasks=TASKS)
            lm.model.load_state_dict(base_state)
            model = make_trainable(lm.model, config)
            model.train()
            optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
            loss_of = ObjectiveLoss(model, lm.tokenizer, config)
            loss_of.candidates(batches[task][0])  # tokenising the candidates is a one-off per run, not per step
            tick = time.perf_counter()
            for batch in batches[task]:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    loss, _ = loss_of.loss(batch)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            times[objective, task].append(time.perf_counter() - tick)
            print(f"  repeat {repeat} {objective:5s} {task:5s}: {times[objective, task][-1]:.1f} s", flush=True)
    rows = [{"objective": o, "task": t, "seconds_per_example": statistics.median(times[o, t]) / n} for o, t in variants]
    print(f"\n{'objective':10s}" + "".join(f"{t:>10s}" for t in TASKS) + f"{'arm (predicted)':>18s}")
    for objective in OBJECTIVES:
        per = {r["task"]: r["seconds_per_example"] for r in rows if r["objective"] == objective}
        arm = sum(per.values()) * args.examples
        print(f"{objective:10s}" + "".join(f"{per[t]:10.3f}" for t in TASKS) + f"{arm / 60:14.1f} min")
    print(f"s/example; arm: {args.examples} examples per task, 1 epoch. load average before {load_before}")
    append_record(
        "ladder_cost",
        {
            "threads": args.threads,
            "batch": args.batch,
            "batches": args.batches,
            "repeats": args.repeats,
            "train_layers": args.layers,
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
