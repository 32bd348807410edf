"""Fine-tuning throughput of the embedded model on this machine: which recipe fits a CPU budget.

Every variant trains on the same real batches (zero-shot SST-5 and STS-B prompts with their gold
answers, batches of one task). The variants go round-robin, ``--repeats`` times, and each reports
the median time of its passes, so load from other processes spreads over all of them alike:

* naive fp32: every weight trains, logits over the whole vocabulary at every position, rows in
  random order (right-padded, no shared prefix);
* fp32 / bf16 answer-only: logits at the answer positions only, the system prompt pushed through
  once per batch, rows grouped by length (:func:`workbench.lifecycle.finetune.loss.answer_nll`);
* top-N layers: only the top N layers (and the final norm) train; the lower ones run without
  gradients;
* LoRA on the top 8 layers;
* the grid objective ("mse") on the top 8 layers (one tree pass over all answer candidates);
* frozen-trunk forward: a no-gradient pass through the lower 22 layers, i.e. the one-off cost of
  caching their outputs, to set against the per-epoch cost of the top layers.

    python benchmarks/finetune_throughput.py --threads 1 --repeats 3

Prints examples/s and tokens/s per variant and appends one JSON line to results/benchmarks.jsonl.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from dataclasses import replace

import torch
import torch.nn.functional as F

from workbench.inference.models import load_model
from workbench.lifecycle.finetune import FinetuneConfig
from workbench.lifecycle.finetune.encoding import training_set
from workbench.lifecycle.finetune.loss import ObjectiveLoss, answer_nll
from workbench.lifecycle.finetune.model import make_trainable
from workbench.runs import append_record


def naive_loss(model, batch, pad_id):
    """Right-padded rows, logits at every position: what a plain causal-LM training loop does."""
    rows = [e.input_ids for e in batch]
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad_id)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row)], mask[i, : len(row)] = torch.tensor(row), 1
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    targets = ids[:, 1:].clone()
    for i, e in enumerate(batch):
        targets[i, : e.answer_start - 1] = -100
        targets[i, len(e.input_ids) - 1 :] = -100
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()

    lm = load_model("smollm2-135m-instruct", device="cpu")
    pad = lm.tokenizer.pad_token_id
    encoded = training_set(FinetuneConfig(tasks=("sst5", "stsb"), max_examples=4 * args.batch, seed=0), lm.tokenizer)
    by_task: dict[str, list] = {}
    for e in encoded:
        by_task.setdefault(e.task, []).append(e)
    random_batches = [by_task[t][: args.batch] for t in ("sst5", "stsb")]
    grouped = {t: sorted(by_task[t], key=lambda e: len(e.input_ids)) for t in by_task}
    grouped_batches = [grouped[t][args.batch : 2 * args.batch] for t in ("sst5", "stsb")]  # similar lengths
    base_state = {k: v.clone() for k, v in lm.model.state_dict().items()}

    def trainer_step(config):
        def run(model, batches):
            objective_loss = ObjectiveLoss(model, lm.tokenizer, config)
            for batch in batches:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.precision == "bf16"):
                    loss, _ = objective_loss.loss(batch)
                loss.backward()

        return run

    def naive(bf16):
        def run(model, batches):
            for batch in batches:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    loss = naive_loss(model, batch, pad)
                loss.backward()

        return run

    def trunk_forward(model, batches):
        layers = model.model.layers
        model.model.layers = layers[:22]
        try:
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                for batch in batches:
                    answer_nll(model, batch, pad)
        finally:
            model.model.layers = layers

    full = FinetuneConfig(method="full")
    variants = {  # name -> (config for make_trainable, step function, batches)
        "naive fp32, all weights, all-position logits": (full, naive(False), random_batches),
        "naive bf16, all weights, all-position logits": (full, naive(True), random_batches),
        "fp32, all weights, answer-only logits": (
            replace(full, precision="fp32"),
            trainer_step(replace(full, precision="fp32")),
            grouped_batches,
        ),
        "bf16, all weights, answer-only logits": (full, trainer_step(full), grouped_batches),
        "bf16, top-8 layers, answer-only": (replace(full, train_layers=8), trainer_step(full), grouped_batches),
        "bf16, top-4 layers, answer-only": (replace(full, train_layers=4), trainer_step(full), grouped_batches),
        "bf16, top-8 layers, random order (more padding)": (
            replace(full, train_layers=8),
            trainer_step(full),
            random_batches,
        ),
        "bf16, LoRA r=8 on top-8 layers": (
            FinetuneConfig(method="lora", lora_layers=8),
            trainer_step(full),
            grouped_batches,
        ),
        "bf16, top-8 layers, grid objective (mse)": (
            replace(full, train_layers=8),
            trainer_step(replace(full, objective="mse")),
            grouped_batches,
        ),
        "bf16 forward only through 22 frozen layers (trunk cache cost)": (
            replace(full, train_layers=8),
            trunk_forward,
            grouped_batches,
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants)
    for repeat in range(args.repeats):
        random.Random(repeat).shuffle(order)
        for name in order:
            config, step, batches = variants[name]
            lm.model.load_state_dict(base_state)
            model = make_trainable(lm.model, config)
            model.train()
            tick = time.perf_counter()
            step(model, batches)
            times[name].append(time.perf_counter() - tick)
            model.zero_grad(set_to_none=True)
            if config.method == "lora":
                lm.model = model.unload()
            print(f"  repeat {repeat} {name}: {time.perf_counter() - tick:.1f} s", flush=True)
    rows = []
    for name, (_config, _step, batches) in variants.items():
        seconds = statistics.median(times[name])
        examples = sum(len(b) for b in batches)
        tokens = sum(len(e.input_ids) for b in batches for e in b)
        rows.append(
            {
                "variant": name,
                "examples_per_s": examples / seconds,
                "tokens_per_s": tokens / seconds,
                "seconds": seconds,
            }
        )
    reference = rows[0]["examples_per_s"]
    print(f"\n{'variant':66s} {'ex/s':>7s} {'tok/s':>8s} {'vs naive fp32':>14s}")
    for row in rows:
        print(
            f"{row['variant']:66s} {row['examples_per_s']:7.2f} {row['tokens_per_s']:8.0f} "
            f"{row['examples_per_s'] / reference:13.1f}x"
        )
    append_record(
        "finetune_throughput",
        {
            "threads": args.threads,
            "batch": args.batch,
            "repeats": args.repeats,
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
