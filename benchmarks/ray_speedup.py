"""Speed-up of ``RayEngine`` with 2 workers over 1 worker, measured side by side in one run.

Same prompts (SST-5 few-shot), model, settings and seeds for every configuration; each engine gets
one warm-up call on other prompts first, and no disk cache, so every call computes:

* (a) one process, ``Engine`` with 1 torch thread;
* (b) ``RayEngine``, 1 worker of 1 CPU;
* (c) ``RayEngine``, 2 workers of 1 CPU each;
* (d) one process, ``Engine`` with 2 torch threads (what the machine gives without Ray).

It checks that (b) and (c) return exactly the samples of (a), then appends one JSON line to
results/benchmarks.jsonl. The ratio that answers "what does a second worker buy" is (c)/(b); on a
machine with 2 cores, shared with other jobs, it is bounded by 2 and by the load.

    python benchmarks/ray_speedup.py                      # 16 prompts, N=16
    python benchmarks/ray_speedup.py --items 4 --n 4      # quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import datetime, timezone

import numpy as np
import torch

from workbench.inference.engine import Engine, SamplingConfig
from workbench.inference.models import load_model
from workbench.inference.ray_engine import EngineSpec, RayEngine
from workbench.paths import RESULTS_DIR
from workbench.tasks import get_task


def timed(function) -> tuple[float, object]:
    start = time.perf_counter()
    value = function()
    return time.perf_counter() - start, value


def measure(engine, prompts, warmup, candidates, n, config) -> dict:
    engine.sample(warmup, n, config)
    engine.score(warmup, candidates)
    sample_s, samples = timed(lambda: engine.sample(prompts, n, config))
    score_s, scores = timed(lambda: engine.score(prompts, candidates))
    return {"sample_s": sample_s, "score_s": score_s, "samples": samples, "scores": scores.logprobs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=16)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=4)
    args = parser.parse_args()

    import ray

    task = get_task("sst5")
    lm = load_model(device="cpu")
    examples = task.examples("test", limit=args.items + 2, seed=0)
    prompts = task.prompts(examples[2:], lm.tokenizer, task.fewshot(args.shots, seed=0))
    warmup = task.prompts(examples[:2], lm.tokenizer, task.fewshot(args.shots, seed=0))
    config = SamplingConfig(max_new_tokens=args.max_new_tokens, seed=0)
    load_before = os.getloadavg()

    figures = {}
    torch.set_num_threads(1)
    figures["single_1_thread"] = measure(Engine(lm, cache=None, progress=False), prompts, warmup, task.candidates, args.n, config)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    spec = EngineSpec(device="cpu")
    for workers in (1, 2):
        with RayEngine(spec, workers=workers, cpus_per_worker=1, disk_cache=False) as engine:
            figures[f"ray_{workers}_worker"] = measure(engine, prompts, warmup, task.candidates, args.n, config)
    ray.shutdown()
    torch.set_num_threads(2)
    figures["single_2_threads"] = measure(Engine(lm, cache=None, progress=False), prompts, warmup, task.candidates, args.n, config)

    reference = figures["single_1_thread"]
    for name, figure in figures.items():
        same = [(a.texts, a.token_ids) == (b.texts, b.token_ids) for a, b in zip(figure["samples"], reference["samples"])]
        figure["identical_samples"] = bool(all(same))
        figure["max_score_diff"] = float(np.abs(figure["scores"] - reference["scores"]).max())
    one, two = figures["ray_1_worker"], figures["ray_2_worker"]
    record = {
        "benchmark": "ray_speedup",
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "ray": ray.__version__,
            "load_average_before": list(load_before),
            "load_average_after": list(os.getloadavg()),
            "note": "2-core machine shared with other jobs; timings measured under that load",
        },
        "fingerprint": lm.fingerprint,
        "items": args.items,
        "n": args.n,
        "shots": args.shots,
        "max_new_tokens": args.max_new_tokens,
        "seconds": {name: {"sample": f["sample_s"], "score": f["score_s"]} for name, f in figures.items()},
        "items_per_s": {name: {"sample": args.items / f["sample_s"], "score": args.items / f["score_s"]} for name, f in figures.items()},
        "speedup_2_over_1_worker": {"sample": one["sample_s"] / two["sample_s"], "score": one["score_s"] / two["score_s"]},
        "identical_samples": {name: f["identical_samples"] for name, f in figures.items()},
        "max_score_diff": {name: f["max_score_diff"] for name, f in figures.items()},
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    with open(RESULTS_DIR / "benchmarks.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
    print(f"{'configuration':<18} {'sample items/s':>15} {'score items/s':>14} {'identical samples':>18}")
    for name, rates in record["items_per_s"].items():
        print(f"{name:<18} {rates['sample']:>15.2f} {rates['score']:>14.2f} {str(record['identical_samples'][name]):>18}")
    speedup = record["speedup_2_over_1_worker"]
    print(f"2 workers over 1: sample {speedup['sample']:.2f}x, score {speedup['score']:.2f}x (load {load_before[0]:.1f} before)")


if __name__ == "__main__":
    main()
