"""How close the main job's heaviest kinds of work run to this CPU's matrix-product rate (issue 17's time floor).

On the default model and the default recipe's data, it measures:

* the CPU's GEMM rate at the model's shapes (tokens x 576 x 1536 and back, 576 x 576, the 49,152-word head), in
  bf16 and fp32, with the run's thread count;
* for each workload: its wall time, the FLOPs of its matrix products (``aten::mm``, ``bmm``, ``addmm`` as the torch
  profiler counts them) and their share of the profiled CPU time. The workloads:
  - ``trunk fill``: the 22 frozen layers over ``--steps`` batches of the recipe's seed-0 schedule (prompts and
    answer trees, bf16 autocast, no gradients), in a fresh in-memory trunk each time;
  - ``soft step`` / ``ce step``: a training step of the soft-label / cross-entropy arm on those batches (the top 8
    layers forward and backward from the trunk the fill computed, bf16 autocast, gradient clipping, AdamW);
  - ``generation``: notebook 06's base reference variant (fp32, temperature 0.7), ``--queries`` queries x 6
    samples x up to 32 new tokens, model loading included.

``floor s`` is the matrix products' FLOPs at the measured GEMM rate of their precision: the time the workload would
take if everything else took no time. ``wall / floor`` bounds what speed work on this CPU can gain on it without
computing less.

    python benchmarks/matmul_share.py --steps 8 --queries 16

Appends one record (``matmul_share``) to results/benchmarks.jsonl (``--record`` for another file).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable
from dataclasses import replace

import torch
from torch.profiler import ProfilerActivity, profile

from workbench.consistency.generate import Variant, build_queries, generate_responses
from workbench.inference.models import DEFAULT_MODEL, load_model
from workbench.lifecycle import recipe
from workbench.lifecycle.finetune.batching import batch_schedule, steps_per_epoch
from workbench.lifecycle.finetune.encoding import training_set
from workbench.lifecycle.finetune.loss import ObjectiveLoss
from workbench.lifecycle.finetune.model import make_trainable, precision_autocast
from workbench.lifecycle.finetune.trunk import FrozenTrunk
from workbench.lifecycle.finetune.trunk_store import TensorStore
from workbench.lifecycle.prefix_batch import Rows
from workbench.lifecycle.regression_loss import answer_tree
from workbench.runs import append_record

MATMULS = ("aten::mm", "aten::bmm", "aten::addmm")
SHAPES = [(1400, 576, 1536), (1400, 1536, 576), (1400, 576, 576), (768, 576, 49152)]  # (M, K, N)


def gemm_rate(dtype: torch.dtype, repeats: int = 20) -> dict[str, float]:
    """GFLOP/s of (M, K) @ (K, N) products at the model's shapes, and the best of them."""
    rates = {}
    for m, k, n in SHAPES:
        a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
        for _ in range(3):
            a @ b
        tick = time.perf_counter()
        for _ in range(repeats):
            a @ b
        rates[f"{m}x{k}x{n}"] = 2 * m * k * n * repeats / (time.perf_counter() - tick) / 1e9
    return {**rates, "best": max(rates.values())}


def measured(work: Callable[[], object]) -> dict[str, float]:
    """Wall seconds of one unprofiled call (after one to warm up), then one profiled call: the matrix products'
    FLOPs and their share of the profiled CPU time."""
    work()
    tick = time.perf_counter()
    work()
    wall = time.perf_counter() - tick
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        work()
    events = prof.key_averages()
    products = [e for e in events if e.key in MATMULS]
    return {
        "wall_seconds": wall,
        "matmul_gflop": sum(e.flops for e in products) / 1e9,
        "matmul_share": sum(e.self_cpu_time_total for e in products) / sum(e.self_cpu_time_total for e in events),
    }


def training_workloads(steps: int) -> dict[str, Callable[[], object]]:
    """The trunk fill and the soft-label and cross-entropy steps over ``steps`` batches of the default recipe."""
    splits, _ = recipe.prepared_splits()
    base = replace(recipe.base_config("default", DEFAULT_MODEL, device="cpu"), lr=3e-4)
    lm = load_model(DEFAULT_MODEL, device="cpu")
    model = make_trainable(lm.model, base)
    encoded = training_set(base, lm.tokenizer, {name: parts["train"] for name, parts in splits.items()})
    schedule = batch_schedule(encoded, base.batch_size, steps_per_epoch(encoded, base.batch_size), base.seed)
    batches = [[encoded[i] for i in schedule[step]] for step in range(steps)]
    pad = lm.tokenizer.pad_token_id
    memory_only = TensorStore.Config(disk_bytes=0)

    def new_trunk() -> FrozenTrunk:
        return FrozenTrunk.for_training(model, lm.fingerprint["weights_sha256"], base, memory_only)

    grid_rows = []  # each batch's rows as the grid objectives fill them: prompts, then the answer tree
    tokenised = ObjectiveLoss(model, lm.tokenizer, base)  # each task's candidates, tokenised once
    for batch in batches:
        candidates, _ = tokenised.candidates(batch)
        prompts = [e.input_ids[: e.answer_start] for e in batch]
        grid_rows.append((Rows(prompts, answer_tree(candidates, pad)[1]), min(len(p) for p in prompts) - 1))

    def fill():
        trunk = new_trunk()
        for rows, limit in grid_rows:
            trunk.hidden(rows, limit, True, pad)

    trunk = new_trunk()  # one trunk for both objectives' steps: each fills its rows in its warm-up call
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=base.lr)

    def steps_of(objective: str) -> Callable[[], None]:
        loss_of = ObjectiveLoss(model, lm.tokenizer, replace(base, objective=objective), trunk)

        def run():
            for batch in batches:
                with precision_autocast(lm.device, base.precision):
                    loss, _ = loss_of.loss(batch)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(trainable, base.max_grad_norm)  # as the training loop does
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)

        return run

    return {"trunk fill": fill, "soft step": steps_of("soft"), "ce step": steps_of("ce")}


def generation_workload(queries: int) -> Callable[[], object]:
    """Notebook 06's base reference variant on ``queries`` queries (half closed, half open), 6 samples each."""
    table = build_queries(queries - queries // 2, queries // 2, seed=0)
    variant = Variant("reference", "base-fp32", temperature=0.7, max_new_tokens=32)
    options = dict(seed=0, out_dir=None, device="cpu", disk_cache=False, progress=False)
    return lambda: generate_responses([variant], table, 6, **options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="batches of the training workloads")
    parser.add_argument("--queries", type=int, default=16, help="queries of the generation workload")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--record", default=None, help="JSON-lines file (default results/benchmarks.jsonl)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    rates = {"bf16": gemm_rate(torch.bfloat16), "fp32": gemm_rate(torch.float32)}
    workloads = {name: (work, "bf16") for name, work in training_workloads(args.steps).items()}
    workloads["generation"] = (generation_workload(args.queries), "fp32")
    rows = []
    for name, (work, precision) in workloads.items():
        row = {"workload": name, "precision": precision, **measured(work)}
        row["floor_seconds"] = row["matmul_gflop"] / rates[precision]["best"]
        row["wall_over_floor"] = row["wall_seconds"] / row["floor_seconds"] if row["floor_seconds"] else math.nan
        rows.append(row)
        print(
            f"{name:11s} {precision}: {row['wall_seconds']:6.1f} s wall, {row['matmul_gflop']:7.0f} GFLOP in matrix "
            f"products ({row['matmul_share']:.0%} of the profiled time), floor {row['floor_seconds']:5.1f} s, "
            f"wall/floor {row['wall_over_floor']:.2f}",
            flush=True,
        )
    load_after = os.getloadavg()
    best = {precision: round(rate["best"]) for precision, rate in rates.items()}
    print(f"GEMM rate, best of the model's shapes (GFLOP/s): {best}")
    print(f"threads {args.threads}, load average before {load_before}, after {load_after}")
    append_record(
        "matmul_share",
        {
            "model": DEFAULT_MODEL,
            "steps": args.steps,
            "queries": args.queries,
            "threads": args.threads,
            "gemm_gflops": rates,
            "rows": rows,
            "load_average_before": load_before,
            "load_average_after": load_after,
        },
        path=args.record,
    )


if __name__ == "__main__":
    main()
