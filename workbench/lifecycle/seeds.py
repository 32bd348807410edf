"""Fine-tuning seeds beside the main job: the ladder's fine-tuned arms (the default model's recipe among them)
trained and scored again with seeds 1..n-1, and their mean and spread across seeds.

The main job trains and scores seed 0 (notebook 02 writes its rows to ``results/ladder.csv``); this step runs
outside it (``bash scripts/main.sh --seeds 3``, or ``python -m workbench seeds --seeds 3``) and writes:

* ``seeds.csv``: the ladder rows (``task, arm, seed, metric, value, ci_low, ci_high``) of the fine-tuned arms at
  every seed, seed 0's read from ``ladder.csv`` when it is there (else computed here), and seed 0's dev winner
  from ``04_objectives.csv`` beside it: on a fresh machine the seeds command trains seeds 1..n-1 only;
* ``seeds_summary.csv``: per task, arm and metric the mean, sd, min and max across seeds, and whether the arm
  is the default model's recipe (the objective that won on dev at seed 0);
* ``seeds_run.json``: the seeds, wall seconds and load average of this run, and ``cache_at_start`` (files and GiB
  in the cache folder when it started: a run that found earlier runs' arms there did not train them, so its wall
  time is not a from-scratch figure);
* their entries in ``provenance.json`` (writer ``python -m workbench seeds``, commit, clean flag, profile, the
  fine-tuned stages of seeds 1..n-1 and those of ``ladder.csv``'s entry for seed 0), as the main job records its
  files.

A seed changes the training subset, the batch order and the dev subset of model selection; the test items and
the few-shot arms (no training) stay those of seed 0.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pandas as pd

from workbench import provenance
from workbench.inference.engine import HFEngine
from workbench.lifecycle import recipe
from workbench.metric_aware import ladder
from workbench.paths import cache_contents

WRITER = "python -m workbench seeds"
OUTPUTS = ("seeds.csv", "seeds_summary.csv", "seeds_run.json")
# objective -> the ladder's row of its model read with RAIL
RAIL_ARM = {arm.stage: arm.name for arm in ladder.ARMS if arm.rule == "rail" and arm.stage != "base"}


def seed_rows(
    profile: str, model: str, seed: int, device: str = "auto", dtype: str = "bf16", n_resamples: int = 1000
) -> tuple[pd.DataFrame, str, list[dict]]:
    """The ladder rows of the fine-tuned arms at one fine-tuning seed (training them when not cached), the
    objective that wins on dev at that seed, and the fingerprints of its fine-tuned models."""
    results = recipe.arm_results(profile, model, device, seed)
    engines = {
        objective: HFEngine.load(str(r.model_dir), device=device, dtype=dtype) for objective, r in results.items()
    }
    runs = ladder.decode(engines, ladder.plans(profile))
    table = ladder.ladder_table(runs, seed, n_resamples=n_resamples, published=False)
    return table, recipe.best_objective(results), [engine.fingerprint for engine in engines.values()]


def seed0_winner(out: Path, profile: str, model: str, device: str = "auto") -> str:
    """The dev winner at seed 0: read from the main job's ``04_objectives.csv`` in ``out`` when it is there (a fresh
    machine has no cached runs to read it from), else from seed 0's runs (trained when not cached)."""
    table = out / "04_objectives.csv"
    if table.exists():
        return recipe.winner(pd.read_csv(table))
    return recipe.best_objective(recipe.arm_results(profile, model, device, 0, progress=False))


def run_seeds(
    profile: str,
    model: str,
    seeds: int,
    out: Path,
    device: str = "auto",
    n_resamples: int = 1000,
    main_results: Path | None = None,
) -> pd.DataFrame:
    """Seeds 0..``seeds``-1 of the fine-tuned arms into ``out`` (see the module docstring); returns the summary.

    Seed 0 and its dev winner are read from the main job's tables in ``main_results`` (default ``out``) when
    they are there.
    """
    started, load_before, cache_at_start = time.time(), os.getloadavg(), cache_contents()
    main_results = Path(main_results or out)
    previous = main_results / "ladder.csv"
    frames, chosen, fingerprints, seed0_models = [], None, [], []
    for seed in range(seeds):
        if seed == 0 and previous.exists():
            table = pd.read_csv(previous)
            frames.append(table[(table.seed == 0) & table.arm.isin(ladder.FINE_TUNED)])
            seed0_models = provenance.read(main_results).get(previous.name, {}).get("models", [])
            continue
        rows, winner, models = seed_rows(profile, model, seed, device, n_resamples=n_resamples)
        chosen = winner if seed == 0 else chosen
        frames.append(rows)
        fingerprints += models
    if chosen is None:  # seed 0 came from the main job: so does its winner, without training its arms again
        chosen = seed0_winner(main_results, profile, model, device)
    table = pd.concat(frames, ignore_index=True)
    summary = ladder.seed_summary(table).reset_index()
    summary["default model"] = summary.arm == RAIL_ARM[chosen]
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "seeds.csv", index=False)
    summary.round(4).to_csv(out / "seeds_summary.csv", index=False)
    record = {
        "profile": profile,
        "model": model,
        "seeds": list(range(seeds)),
        "default objective (seed 0)": chosen,
        "wall_seconds": time.time() - started,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "cache_at_start": cache_at_start,
    }
    (out / "seeds_run.json").write_text(json.dumps(record, indent=1))
    written = provenance.entry(WRITER, profile, fingerprints)
    written["models"] += [m for m in seed0_models if m["stage"] not in {n["stage"] for n in written["models"]}]
    provenance.update(out, {name: written for name in OUTPUTS})
    return summary
