"""Each (stage, task, item, settings) is decoded once and shared through the generation cache.

Notebooks 02, 03, 04 and 07 draw item subsets of different sizes with one seed; the subsets are
nested, so the smaller runs find every item in the cache, and the audit log
(``WORKBENCH_DECODE_LOG``) counts what was computed and what came from the cache.
"""

import random
from dataclasses import replace

import pytest

from workbench.inference import decode_log
from workbench.inference.engine import HFEngine
from workbench.inference.gencache import DECODE_LABEL_ENV, DECODE_LOG_ENV, GenerationCache
from workbench.metric_aware.experiments import RunConfig, point_estimates, run_task, synthetic_run, temperature_sweep
from workbench.profiles import load_profile
from workbench.tasks.base import nested_sample

TEST_ITEMS = {"sst5": 2210, "stsb": 1379}  # test split sizes


def notebook_limits(profile: str) -> dict[str, set[int]]:
    """The test-item limits a profile's notebooks 02, 03, 04 and 07 draw, per task (seed 0 everywhere)."""
    sizes = load_profile(profile)
    limits = {task: set() for task in TEST_ITEMS}
    for stage in sizes["metric_aware"].values():
        for task in TEST_ITEMS:
            limits[task].add(stage[task]["limit"])
    for task in TEST_ITEMS:
        limits[task] |= {
            sizes["03_metric_aware_sweeps"]["temperature_plan"]["limit"],
            sizes["04_finetune_and_evaluate"]["test"],
            sizes["07_cost_generalization_evaluation"]["gen_items"],
        }
        exact = sizes["02_metric_aware_inference"]["exact"][task]
        limits[task] |= {exact} if exact else set()
    limits["sst5"].add(sizes["07_cost_generalization_evaluation"]["items"])
    return {task: {n for n in found if n is not None and n < TEST_ITEMS[task]} for task, found in limits.items()}


@pytest.mark.parametrize("profile", ["smoke", "default", "full"])
def test_the_item_subsets_of_every_profile_are_nested(profile):
    for task, limits in notebook_limits(profile).items():
        items = list(range(TEST_ITEMS[task]))
        largest = nested_sample(items, max(limits), seed=0)
        for limit in limits:
            assert nested_sample(items, limit, seed=0) == largest[:limit], (profile, task, limit)


@pytest.mark.parametrize("profile", ["smoke", "default"])
def test_the_subsets_are_those_drawn_before_so_cached_decodes_stay_valid(profile):
    for task, limits in notebook_limits(profile).items():
        items = list(range(TEST_ITEMS[task]))
        for limit in limits:
            assert nested_sample(items, limit, seed=0) == random.Random(0).sample(items, limit), (profile, task, limit)


def test_a_smaller_run_is_served_from_a_larger_runs_decodes(lm, sst5, tmp_path, monkeypatch):
    log = tmp_path / "decodes.jsonl"
    monkeypatch.setenv(DECODE_LOG_ENV, str(log))
    engine = HFEngine(lm, cache=GenerationCache(tmp_path / "generations", lm.fingerprint), progress=False)
    config = RunConfig(limit=4, shots=0, k=2, max_new_tokens=2)
    monkeypatch.setenv(DECODE_LABEL_ENV, "small")
    small = run_task(engine, sst5, RunConfig(limit=2, shots=0, k=2, max_new_tokens=2))
    monkeypatch.setenv(DECODE_LABEL_ENV, "large")
    large = run_task(engine, sst5, config)
    monkeypatch.setenv(DECODE_LABEL_ENV, "again")
    again = run_task(engine, sst5, RunConfig(limit=3, shots=0, k=2, max_new_tokens=2))

    assert large.ids[:2] == small.ids and again.ids == large.ids[:3]
    assert again.samples == large.samples[:3] and (again.exact_probs == large.exact_probs[:3]).all()
    rows = decode_log.read(log)
    counts = decode_log.computed_by_label(rows)
    # greedy, and samples with scores from one grid pass: one entry per item and kind; the large run
    # computes its 2 new items only
    assert counts == {
        "small": {"computed": 4, "hit": 0},
        "large": {"computed": 4, "hit": 4},
        "again": {"computed": 0, "hit": 6},
    }
    assert decode_log.recomputed(rows) == {}
    # the grid pass's key holds no batching detail, so no item is computed under two settings
    assert decode_log.near_misses(rows) == {}


class NoEngine:
    """An engine that must not be asked: every decode it would do is already in hand."""

    def __getattr__(self, name):
        raise AssertionError(f"the engine was asked for {name}")


def test_the_temperature_sweep_takes_the_plans_temperature_from_the_plans_run():
    decoded = synthetic_run(items=50, k=64, seed=0)  # notebook 02's run: 50 items, K=64, temperature 1
    wanted = replace(decoded.config, limit=20, k=16)  # notebook 03's plan: fewer items and samples
    swept = temperature_sweep(NoEngine(), None, wanted, [1.0], decoded=decoded)
    head = decoded.head(20, 16)
    assert head.ids == decoded.ids[:20] and head.samples == [row[:16] for row in decoded.samples[:20]]
    assert swept.drop(columns="temperature").equals(point_estimates(head))
    with pytest.raises(AssertionError, match="the engine was asked"):  # another temperature is decoded
        temperature_sweep(NoEngine(), None, wanted, [0.5], decoded=decoded)
    with pytest.raises(AssertionError, match="the engine was asked"):  # more samples than decoded
        temperature_sweep(NoEngine(), None, replace(wanted, k=128), [1.0], decoded=decoded)
    with pytest.raises(ValueError, match=r"has no head \(60, 16\)"):
        decoded.head(60, 16)
