"""The exact grid sampler against real decoding: same distribution (chi-square), and how much faster.

Three parts, each printed and recorded as one JSON line in results/benchmarks.jsonl:

* ``check``: for a few SST-5 and STS-B prompts (the default profile's shots), N samples each way
  (``HFEngine.sample_grid`` and ``HFEngine.sample``), a two-sample chi-square test per prompt on
  the answer texts (rare answers pooled), the tests combined, and the smallest effect (Cohen's w)
  each prompt's test detects with power 0.8 at level 0.05.
* ``speed``: what a grid task draws per item, both ways, interleaved rounds on the same prompts:
  real = ``sample`` (K samples) + ``score`` (the exact distribution); fast = ``sample_grid`` (both
  from one tree pass). No disk cache. Seconds per item from each method's fastest round; the
  process's CPU seconds beside them (on a shared machine the fairer figure).
* ``run_task``: :func:`workbench.metric_aware.experiments.run_task` end to end (greedy answers
  included) on the same items, interleaved rounds, with the grid sampler and through
  :class:`~workbench.inference.grid_sampler.RealSampling` (``sample`` and ``score``: what run_task did before).

    python benchmarks/grid_sampling.py                       # 16 items per task, check 4 prompts x 2000
    python benchmarks/grid_sampling.py --items 20 --check-prompts 2 --check-samples 1000 --threads 1
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from decoding_speed import measure  # noqa: E402
from workbench.inference.engine import HFEngine  # noqa: E402
from workbench.inference.grid_sampler import RealSampling  # noqa: E402
from workbench.inference.sample_check import combined, detectable_w, two_sample_chi_square  # noqa: E402
from workbench.inference.types import SamplingConfig  # noqa: E402
from workbench.metric_aware.experiments import RunConfig, run_task  # noqa: E402
from workbench.profiles import load_profile  # noqa: E402
from workbench.runs import append_record, set_threads  # noqa: E402
from workbench.tasks import get_task  # noqa: E402


def task_prompts(engine, name: str, shots: int, items: int, seed: int = 0) -> list[str]:
    task = get_task(name)
    return task.prompts(task.examples("test", limit=items, seed=seed), engine.tokenizer, task.fewshot(shots, seed=seed))


def check(engine, name: str, shots: int, prompts: int, n: int) -> dict:
    task = get_task(name)
    chosen = task_prompts(engine, name, shots, prompts, seed=1)
    config = SamplingConfig(max_new_tokens=task.max_new_tokens, seed=0)
    drawn = engine.sample_grid(chosen, n, task.candidates, config)
    real = engine.sample(chosen, n, config)
    tests = [two_sample_chi_square(a.texts, b.texts) for a, b in zip(drawn.samples, real)]
    for i, test in enumerate(tests):
        print(
            f"  {name} prompt {i}: chi2 {test.statistic:.1f} df {test.df} p {test.p_value:.3f}, "
            f"detectable w {detectable_w(test.n, max(test.df, 1)):.3f}, off-grid mass {drawn.score.outside_mass[i]:.3f}"
        )
    statistic, df, p = combined(tests)
    return {
        "task": name,
        "shots": shots,
        "prompts": prompts,
        "samples_each_way": n,
        "fallbacks": drawn.fallbacks,
        "per_prompt": [{"chi2": t.statistic, "df": t.df, "p": t.p_value} for t in tests],
        "combined": {"chi2": statistic, "df": df, "p": p},
        "detectable_w": [detectable_w(t.n, max(t.df, 1)) for t in tests],
        "outside_mass": drawn.score.outside_mass.tolist(),
    }


def speed(engine, name: str, shots: int, items: int, k: int, repeats: int) -> dict:
    task = get_task(name)
    prompts = task_prompts(engine, name, shots, items)
    config = SamplingConfig(max_new_tokens=task.max_new_tokens, seed=0)
    engine.score(prompts[:2], task.candidates)  # the shared few-shot prefix, prefilled once for both
    runs = {
        "real: sample + score": lambda: (engine.sample(prompts, k, config), engine.score(prompts, task.candidates)),
        "fast: sample_grid": lambda: engine.sample_grid(prompts, k, task.candidates, config),
    }
    stats = measure(runs, repeats)
    real, fast = (stats[name_]["seconds"] for name_ in runs)
    real_cpu, fast_cpu = (min(stats[name_]["cpu_seconds"]) for name_ in runs)
    fallbacks = stats["fast: sample_grid"]["result"].fallbacks
    print(
        f"  {name}: real {real / items:.3f} s/item, fast {fast / items:.3f} s/item, real/fast {real / fast:.2f}x, "
        f"({real_cpu / fast_cpu:.2f}x cpu), {sum(f is not None for f in fallbacks)} of {items} prompts decoded for real"
    )
    return {
        "task": name,
        "shots": shots,
        "items": items,
        "k": k,
        "real_s_per_item": real / items,
        "fast_s_per_item": fast / items,
        "real_over_fast": real / fast,
        "real_over_fast_cpu": real_cpu / fast_cpu,
        "all_seconds": {name_: s["all_seconds"] for name_, s in stats.items()},
        "cpu_seconds": {name_: s["cpu_seconds"] for name_, s in stats.items()},
        "load": {name_: s["load"] for name_, s in stats.items()},
        "fallbacks": sum(f is not None for f in fallbacks),
    }


def end_to_end(engine, name: str, shots: int, items: int, k: int, repeats: int) -> dict:
    config = RunConfig(limit=items, shots=shots, k=k)
    runs = {
        "run_task real": lambda: run_task(RealSampling(engine), get_task(name), config),
        "run_task fast": lambda: run_task(engine, get_task(name), config),
    }
    stats = measure(runs, repeats)
    (real, real_cpu), (fast, fast_cpu) = ((stats[n]["seconds"], min(stats[n]["cpu_seconds"])) for n in runs)
    print(f"  run_task {name} {items} items: real/fast {real / fast:.2f}x wall, {real_cpu / fast_cpu:.2f}x cpu")
    return {
        "task": name,
        "items": items,
        "k": k,
        "real_over_fast": real / fast,
        "real_over_fast_cpu": real_cpu / fast_cpu,
        "all_seconds": {n: s["all_seconds"] for n, s in stats.items()},
        "cpu_seconds": {n: s["cpu_seconds"] for n, s in stats.items()},
        "load": {n: s["load"] for n, s in stats.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=16, help="items per task for the speed parts")
    parser.add_argument("--k", type=int, default=64, help="samples per item (the default profile's K)")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved rounds of the speed part")
    parser.add_argument("--check-prompts", type=int, default=2, help="prompts per task of the chi-square check")
    parser.add_argument("--check-samples", type=int, default=2000, help="samples each way per prompt (0: no check)")
    parser.add_argument("--parts", nargs="+", default=["check", "speed", "run_task"])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: the idle cores)")
    args = parser.parse_args()
    threads = set_threads(args.threads)
    engine = HFEngine.load(disk_cache=False, progress=False)
    shots = {name: load_profile("default")["metric_aware"]["base"][name]["shots"] for name in ("sst5", "stsb")}
    print(f"{threads} torch thread(s), load average {os.getloadavg()}")
    for name in ("sst5", "stsb"):
        if "check" in args.parts and args.check_samples:
            record = check(engine, name, shots[name], args.check_prompts, args.check_samples)
            print(
                f"  {name} combined: chi2 {record['combined']['chi2']:.1f} df {record['combined']['df']} "
                f"p {record['combined']['p']:.3f}"
            )
            append_record("grid_sampling", {"part": "check", "threads": threads, **record})
        if "speed" in args.parts:
            record = speed(engine, name, shots[name], args.items, args.k, args.repeats)
            append_record("grid_sampling", {"part": "speed", "threads": threads, **record})
        if "run_task" in args.parts:
            record = end_to_end(engine, name, shots[name], args.items, args.k, args.repeats)
            append_record("grid_sampling", {"part": "run_task", "threads": threads, **record})


if __name__ == "__main__":
    main()
