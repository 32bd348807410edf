"""Prefill and decode speed of the embedded model on this machine, and a roofline that predicts it.

1. Estimates this CPU's peaks: a large fp32 matmul (FLOP/s) and a large tensor copy (bytes/s).
2. Times, for several batch sizes and lengths, a prefill pass (``logits_to_keep=1``) and one
   decode step on a KV cache of that length (a transformers ``DynamicCache`` filled with random
   keys and values: the time does not depend on their values, and it spares a long prefill).
   Each point is the median of ``--repeats`` timings after one warm-up pass; the repeats go
   round-robin over the points, so that load from other processes does not spoil one point.
3. Fits the roofline's efficiencies and per-pass overhead on a checkerboard half of the points
   (alternating over batch x length, per phase), predicts the other half, and prints predicted
   vs measured times with relative errors and their mean absolute percentage error (MAPE).
4. Appends the figures as one JSON line to results/benchmarks.jsonl.

    python benchmarks/throughput.py             # batches 1,4,16,64 x lengths 64,256,512
    python benchmarks/throughput.py --quick     # batches 1,8 x lengths 64,256, 3 repeats

Timings on a shared machine vary with what else runs: the JSON line records the load average
before and after the run next to the thread count.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import asdict

import numpy as np
import torch
from transformers import DynamicCache

from workbench.cost import Measurement, ModelShape, Roofline, calibrate, measure_cpu
from workbench.inference.models import load_model
from workbench.runs import append_record, cpu_name

# transformers' DynamicCache concatenates: each step copies the cache (read + write) before
# attention reads it, so the past KV cache crosses memory three times per decode step.
DYNAMIC_CACHE_KV_PASSES = 3.0


def prefill_runner(model, shape: ModelShape, batch: int, length: int, generator: torch.Generator):
    """(setup, run) for a prefill pass; ``shape`` is unused (same signature as decode_runner)."""
    ids = torch.randint(0, model.config.vocab_size, (batch, length), generator=generator)
    return (lambda: None), (lambda _: model(ids, use_cache=True, logits_to_keep=1))


def decode_runner(model, shape: ModelShape, batch: int, kv_tokens: int, generator: torch.Generator):
    """(setup, run) for one decode step on a cache of random keys and values."""
    dtype = next(model.parameters()).dtype
    kv_shape = (batch, shape.n_kv_heads, kv_tokens, shape.head_dim)
    layers = [
        (
            torch.randn(kv_shape, generator=generator, dtype=dtype),
            torch.randn(kv_shape, generator=generator, dtype=dtype),
        )
        for _ in range(shape.n_layers)
    ]
    ids = torch.randint(0, model.config.vocab_size, (batch, 1), generator=generator)
    # A fresh cache over the same tensors for every step, so that each timed step sees kv_tokens.
    # Building it copies the tensors, which is why it happens in the untimed setup.
    return (lambda: DynamicCache(ddp_cache_data=layers)), (
        lambda cache: model(ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
    )


def time_round_robin(runners: list, repeats: int) -> np.ndarray:
    """Seconds of ``run(setup())`` per runner and repeat, shape (runners, repeats).

    Each runner is warmed up once; then the repeats go round-robin over the runners, so that a
    burst of load from other processes spreads over all points instead of spoiling every repeat
    of one point. Setup is not timed.
    """
    for setup, run in runners:
        run(setup())
    seconds = np.zeros((len(runners), repeats))
    for repeat in range(repeats):
        for index, (setup, run) in enumerate(runners):
            state = setup()
            start = time.perf_counter()
            run(state)
            seconds[index, repeat] = time.perf_counter() - start
        print(f"  round {repeat + 1}/{repeats} done", flush=True)
    return seconds


def checkerboard(points: list[tuple[str, int, int]], batches: list[int], lengths: list[int]) -> list[bool]:
    """True for the points used to fit: alternate cells of the batch x length grid, per phase."""
    return [(batches.index(b) + lengths.index(n)) % 2 == 0 for _, b, n in points]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 256, 512], help="prompt / KV-cache lengths")
    parser.add_argument(
        "--max-prefill-tokens", type=int, default=2048, help="skip prefills of more tokens (batch x length)"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--statistic",
        default="median",
        choices=["median", "min"],
        help="per-point summary of the timings; min resists a busy machine",
    )
    parser.add_argument("--quick", action="store_true", help="batches 1,8, lengths 64,256, 3 repeats")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.quick:
        args.batches, args.lengths, args.repeats, args.max_prefill_tokens = [1, 8], [64, 256], 3, 2048
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    load_before = os.getloadavg()

    hardware = measure_cpu()
    lm = load_model(args.model, device="cpu", dtype=args.dtype)
    shape = ModelShape.from_model(lm.model)
    generator = torch.Generator().manual_seed(args.seed)
    print(
        f"{cpu_name()} ({os.cpu_count()} cores), {torch.get_num_threads()} torch threads, "
        f"load average {load_before[0]:.1f}"
    )
    print(
        f"measured peaks: fp32 {hardware.fp32_tflops * 1e3:.0f} GFLOP/s, "
        f"bf16 {hardware.bf16_tflops * 1e3:.0f} GFLOP/s, copy {hardware.bandwidth_gb_s:.1f} GB/s"
    )
    print(
        f"model {args.model} {args.dtype}: {shape.params / 1e6:.1f}M params, "
        f"{shape.weight_bytes / 1e6:.0f} MB read per pass, {shape.kv_bytes_per_token / 1e3:.1f} kB KV per token"
    )

    grid = [("prefill", b, n) for b in args.batches for n in args.lengths if b * n <= args.max_prefill_tokens]
    grid += [("decode", b, n) for b in args.batches for n in args.lengths]
    runners = [
        (prefill_runner if phase == "prefill" else decode_runner)(lm.model, shape, batch, tokens, generator)
        for phase, batch, tokens in grid
    ]
    raw = time_round_robin(runners, args.repeats)
    del runners  # frees the KV caches
    medians, minima = np.median(raw, axis=1), raw.min(axis=1)
    for (phase, batch, tokens), median, best in zip(grid, medians, minima, strict=True):
        print(
            f"  measured {phase:<7} batch {batch:>3} tokens {tokens:>4}: {median * 1e3:9.1f} ms (min {best * 1e3:.1f})"
        )
    seconds = medians if args.statistic == "median" else minima
    points = [
        (Measurement.prefill if phase == "prefill" else Measurement.decode)(batch, tokens, float(s))
        for (phase, batch, tokens), s in zip(grid, seconds, strict=True)
    ]
    fit_mask = np.array(checkerboard(grid, args.batches, args.lengths))

    models = {}
    for name, overlap in (("max", True), ("sum", False)):
        start = Roofline(shape, hardware, kv_passes=DYNAMIC_CACHE_KV_PASSES, overlap=overlap)
        fitted = calibrate(start, [p for p, f in zip(points, fit_mask, strict=True) if f])
        predicted = fitted.predict(points)
        errors = (predicted - seconds) / seconds
        models[name] = {
            "efficiency": asdict(fitted.efficiency),
            "predicted_s": predicted.tolist(),
            "rel_error": errors.tolist(),
            "mape_heldout": float(np.mean(np.abs(errors[~fit_mask]))),
            "mape_fit": float(np.mean(np.abs(errors[fit_mask]))),
        }
        eff = fitted.efficiency
        print(
            f"{name} of compute and memory time: compute efficiency {eff.compute:.3f}, "
            f"memory efficiency {eff.memory:.3f}, overhead {eff.overhead_s * 1e3:.1f} ms per pass; "
            f"MAPE held out {models[name]['mape_heldout']:.1%} ({(~fit_mask).sum()} points), "
            f"fitted {models[name]['mape_fit']:.1%} ({fit_mask.sum()} points)   target <= 25%"
        )
        if overlap:
            roofline = fitted
    print(f"roofline (max): predicted decode crossover batch at 64 cached tokens {roofline.crossover_batch(64):.1f}")
    print(
        f"  {'phase':<7} {'batch':>5} {'tokens':>6} {'measured ms':>12} "
        f"{'max ms':>8} {'error':>7} {'sum ms':>8} {'error':>7}  role"
    )
    for i, (phase, batch, tokens) in enumerate(grid):
        by_model = "".join(
            f" {models[m]['predicted_s'][i] * 1e3:8.1f} {models[m]['rel_error'][i]:+7.1%}" for m in ("max", "sum")
        )
        print(
            f"  {phase:<7} {batch:>5} {tokens:>6} {seconds[i] * 1e3:12.1f}{by_model}  "
            f"{'fit' if fit_mask[i] else 'held out'}"
        )
    load_after = os.getloadavg()

    record = {
        "threads": torch.get_num_threads(),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "fingerprint": lm.fingerprint,
        "hardware": asdict(hardware),
        "kv_passes": DYNAMIC_CACHE_KV_PASSES,
        "repeats": args.repeats,
        "statistic": args.statistic,
        "points": [
            {"phase": phase, "batch": batch, "tokens": tokens, "seconds": times.tolist(), "fit": bool(f)}
            for (phase, batch, tokens), times, f in zip(grid, raw, fit_mask, strict=True)
        ],
        "models": models,
    }
    append_record("throughput_roofline", record)


if __name__ == "__main__":
    main()
