"""Speed-up of ``RayEngine`` with 2 workers over 1 worker, measured side by side in one run.

Same prompts (SST-5 few-shot), model, settings and seeds for every configuration; each engine gets
one warm-up call on other prompts first, and no disk cache, so every call computes. All engines
live side by side and are timed in rounds of rotating order (the median is reported), so that a
change in the machine's load hits every configuration alike:

* (a) one process, ``HFEngine`` with 1 torch thread;
* (b) ``RayEngine``, 1 worker of 1 CPU;
* (c) ``RayEngine``, 2 workers of 1 CPU each;
* (d) one process, ``HFEngine`` with 2 torch threads (what the machine gives without Ray).

It checks that (b) and (c) return exactly the samples of (a), then appends one JSON line to
results/benchmarks.jsonl. The ratio that answers "what does a second worker buy" is (c)/(b); on a
machine with 2 cores, shared with other jobs, it is bounded by 2 and by the CPU share the machine
gives this session, which :func:`parallel_ceiling` measures alongside (two processes running a
plain matmul loop, no Ray engine involved).

    python benchmarks/ray_speedup.py                      # 16 prompts, N=16, 3 rounds
    python benchmarks/ray_speedup.py --items 4 --n 4      # quick look
"""

from __future__ import annotations

import argparse
import os
import time
from functools import partial

import numpy as np
import torch

from workbench.inference.engine import HFEngine
from workbench.inference.models import load_model
from workbench.inference.ray_engine import EngineSpec, RayEngine
from workbench.inference.types import SamplingConfig
from workbench.runs import append_record
from workbench.tasks import get_task


def timed(function) -> tuple[float, object]:
    start = time.perf_counter()
    value = function()
    return time.perf_counter() - start, value


def parallel_ceiling(rounds: int, steps: int = 400) -> list[float]:
    """What this machine gives two processes right now: one actor doing ``steps`` matmul steps vs
    two actors doing half each, in parallel (ratio of wall times; 2 on two idle cores).

    On a shared machine this, not Ray, bounds the speed-up: Linux's autogroup scheduler shares CPU
    time between sessions, so a second process of the same session may get no extra CPU at all.
    """
    import ray

    @ray.remote(num_cpus=1)
    class Burner:
        def burn(self, steps: int) -> None:
            torch.set_num_threads(1)
            x = torch.randn(400, 400)
            for _ in range(steps):
                x = (x @ x).tanh()

    burners = [Burner.remote() for _ in range(2)]
    ray.get([b.burn.remote(1) for b in burners])
    ratios = []
    for _ in range(rounds):
        one, _ = timed(lambda: ray.get(burners[0].burn.remote(steps)))
        two, _ = timed(lambda: ray.get([b.burn.remote(steps // 2) for b in burners]))
        ratios.append(one / two)
    for burner in burners:
        ray.kill(burner)
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=16)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of all configurations, in rotating order")
    args = parser.parse_args()

    import ray

    task = get_task("sst5")
    lm = load_model(device="cpu")
    examples = task.examples("test", limit=args.items + 2, seed=0)
    prompts = task.prompts(examples[2:], lm.tokenizer, task.fewshot(args.shots, seed=0))
    warmup = task.prompts(examples[:2], lm.tokenizer, task.fewshot(args.shots, seed=0))
    config = SamplingConfig(max_new_tokens=args.max_new_tokens, seed=0)
    load_before = os.getloadavg()

    # 3 logical CPUs: both Ray engines (1 + 2 actors) live side by side; only one computes at a time.
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    single = HFEngine(lm, cache=None, progress=False)
    spec = EngineSpec(device="cpu")
    engines = {
        "single_1_thread": (single, 1),
        "ray_1_worker": (RayEngine(spec, workers=1, cpus_per_worker=1, disk_cache=False), 1),
        "ray_2_worker": (RayEngine(spec, workers=2, cpus_per_worker=1, disk_cache=False), 1),
        "single_2_threads": (single, 2),
    }
    for engine, threads in engines.values():
        torch.set_num_threads(threads)
        engine.sample(warmup, args.n, config)
        engine.score(warmup, task.candidates)
    seconds = {name: {"sample": [], "score": []} for name in engines}
    outputs = {}
    names = list(engines)
    for round_ in range(args.rounds):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:  # rotate the order
            engine, threads = engines[name]
            torch.set_num_threads(threads)
            sample_s, samples = timed(partial(engine.sample, prompts, args.n, config))
            score_s, scores = timed(partial(engine.score, prompts, task.candidates))
            seconds[name]["sample"].append(sample_s)
            seconds[name]["score"].append(score_s)
            outputs[name] = (samples, scores.logprobs)
    for name in ("ray_1_worker", "ray_2_worker"):
        engines[name][0].close()
    ceiling = parallel_ceiling(args.rounds)
    ray.shutdown()

    reference_samples, reference_scores = outputs["single_1_thread"]
    identical = {
        name: all(
            (a.texts, a.token_ids) == (b.texts, b.token_ids) for a, b in zip(samples, reference_samples, strict=True)
        )
        for name, (samples, _) in outputs.items()
    }
    score_diff = {name: float(np.abs(scores - reference_scores).max()) for name, (_, scores) in outputs.items()}
    median = {
        name: {kind: float(np.median(values)) for kind, values in kinds.items()} for name, kinds in seconds.items()
    }
    per_round = {
        kind: [one / two for one, two in zip(seconds["ray_1_worker"][kind], seconds["ray_2_worker"][kind], strict=True)]
        for kind in ("sample", "score")
    }
    record = {
        "versions": {"torch": torch.__version__, "ray": ray.__version__},
        "load_average_before": list(load_before),
        "load_average_after": list(os.getloadavg()),
        "fingerprint": lm.fingerprint,
        "items": args.items,
        "n": args.n,
        "shots": args.shots,
        "max_new_tokens": args.max_new_tokens,
        "rounds": args.rounds,
        "seconds": seconds,
        "median_items_per_s": {
            name: {kind: args.items / value for kind, value in kinds.items()} for name, kinds in median.items()
        },
        "speedup_2_over_1_worker": {
            kind: median["ray_1_worker"][kind] / median["ray_2_worker"][kind] for kind in ("sample", "score")
        },
        "speedup_2_over_1_worker_per_round": per_round,
        "parallel_ceiling_2_over_1_process": ceiling,
        "identical_samples": identical,
        "max_score_diff": score_diff,
    }
    append_record("ray_speedup", record)
    print(
        f"{'configuration':<18} {'sample items/s':>15} {'score items/s':>14} {'identical samples':>18}   "
        f"(medians of {args.rounds} rounds)"
    )
    for name, rates in record["median_items_per_s"].items():
        print(f"{name:<18} {rates['sample']:>15.2f} {rates['score']:>14.2f} {str(identical[name]):>18}")
    speedup = record["speedup_2_over_1_worker"]
    print(
        f"2 workers over 1: sample {speedup['sample']:.2f}x, score {speedup['score']:.2f}x; per round: "
        + ", ".join(f"{kind} {[round(r, 2) for r in rounds]}" for kind, rounds in per_round.items())
        + f" (load {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after)"
    )
    print(f"ceiling: 2 processes over 1 on a pure matmul loop, per round: {[round(r, 2) for r in ceiling]}")


if __name__ == "__main__":
    main()
