"""Every method on the same responses: three-way rows in the 06_decisions.csv schema, power and A/A grids."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workbench.consistency.logprob import RatioCube
from workbench.consistency.methods import (
    DECISION_COLUMNS,
    METHODS,
    Comparison,
    best_methods,
    decision_columns,
    mmd_rows,
    pair_score_method,
    paired_grid,
    paired_rows,
    ratio_method,
    stage_b_pair_score_aa,
    stage_b_ratio_aa,
)
from workbench.consistency.mmd_baseline import MMDConfig
from workbench.consistency.power import score_cube
from workbench.consistency.responses import synthetic_responses
from workbench.consistency.study import pool_stages


def jaccard(pairs: pd.DataFrame) -> np.ndarray:
    """A pair score with no model: word-set overlap."""
    return np.array(
        [
            len(set(a.split()) & set(b.split())) / max(1, len(set(a.split()) | set(b.split())))
            for a, b in zip(pairs.response1, pairs.response2)
        ]
    )


@pytest.fixture(scope="module")
def table():
    return synthetic_responses(n_queries=30, stage_shifts={"A": 0.0, "A2": 0.0, "B": 0.6, "C": 0.0}, n_seeds=6)


def _method(table, stage_b):
    pooled = pool_stages(table, ["A", "A2"], "pooled")
    return pair_score_method(score_cube(table, "A", stage_b, jaccard, 6), score_cube(pooled, "pooled", None, jaccard))


def test_rows_follow_the_schema_and_decide_three_ways(table):
    change = Comparison("B", "A", "B", "A2", "a real change")
    same = Comparison("C", "A", "C", "A2", "same distribution", control=True)
    rows = [
        paired_rows(change, "cosine", _method(table, "B"), 6, 0.5, 200, 400, seed=0),
        paired_rows(same, "cosine", _method(table, "C"), 6, 0.5, 200, 400, seed=0),
    ]
    details = pd.DataFrame(rows)
    table_out = decision_columns(details)
    assert tuple(table_out.columns) == DECISION_COLUMNS
    real, control = details.iloc[0], details.iloc[1]
    assert real.decision == "different" and real.power > 0.9
    assert control.decision in ("equivalent", "inconclusive") and control.p_value > 0.05
    assert 0.0 <= control.false_alarm <= 0.12 and control.false_alarm_low <= control.false_alarm
    assert best_methods(details).change.tolist() == ["B"]


def test_every_compared_stage_gets_its_own_a_a_run_at_half_its_samples(table):
    own_b = stage_b_pair_score_aa(score_cube(table, "B", None, jaccard, 6))
    row = paired_rows(Comparison("B", "A", "B", "A2"), "cosine", _method(table, "B"), 6, 0.5, 200, 400, 0.05, 0, own_b)
    assert row["stage_b_aa_samples"] == 3  # six responses: halves of three
    assert 0.0 <= row["stage_b_false_alarm"] <= 0.12  # B against itself: a real change for A, none for B
    assert row["stage_b_false_alarm_low"] <= row["stage_b_false_alarm"] <= row["stage_b_false_alarm_high"]
    assert row["power"] > 0.9
    rng = np.random.default_rng(0)
    shifted = RatioCube(tuple(range(40)), rng.normal(1, 1, (40, 6)), rng.normal(0, 1, (40, 6)), "A", "B")
    ratio_row = paired_rows(
        Comparison("B", "A", "B", "A2"),
        "logprob",
        ratio_method(shifted),
        6,
        0.5,
        200,
        400,
        0.05,
        0,
        stage_b_ratio_aa(shifted),
    )
    assert ratio_row["stage_b_aa_samples"] == 3 and ratio_row["stage_b_false_alarm"] <= 0.12
    assert ratio_row["power"] > 0.9  # the ratios of A's and B's responses differ; B's halves do not
    no_own = paired_rows(Comparison("B", "A", "B", "A2"), "cosine", _method(table, "B"), 6, 0.5, 50, 50)
    assert np.isnan(no_own["stage_b_false_alarm"]) and np.isnan(no_own["stage_b_aa_samples"])


def test_grid_covers_queries_and_samples_each_method_allows(table):
    grid = paired_grid(_method(table, "B"), [10, 20], [1, 2, 3, 7], 100, 100, 0.05)
    assert set(grid.samples_per_query) == {2, 3}  # pair scores need k >= 2, and 6 responses per stage hold no 7
    assert set(grid.kind) == {"power", "false alarm"}
    power = grid[grid.kind == "power"].set_index(["samples_per_query", "n_queries"]).rate
    assert power[(3, 20)] >= power[(2, 10)]  # more budget, more power
    rng = np.random.default_rng(0)
    cube = RatioCube(tuple(range(20)), rng.normal(1, 1, (20, 4)), rng.normal(0, 1, (20, 4)), "A", "B")
    ratios = paired_grid(ratio_method(cube), [10], [1, 2, 3], 50, 50, 0.05)
    assert set(ratios[ratios.kind == "power"].samples_per_query) == {1, 2, 3}
    assert set(ratios[ratios.kind == "false alarm"].samples_per_query) == {1, 2}  # 4 responses: halves of 2


def test_mmd_decides_two_ways_on_the_same_responses(table):
    config = MMDConfig(max_length=8, n_permutations=50)
    row, grid = mmd_rows(Comparison("B", "A", "B", "A2"), table, config, 6, [10, 30], [6], 20)
    assert row["method"] == "mmd" and row["decision"] in ("different", "inconclusive")
    assert row["decision"] == "different"
    assert row["stage_b_aa_samples"] == 3 and 0.0 <= row["stage_b_false_alarm"] <= 0.2  # B's own halves
    assert set(grid.kind) == {"power", "false alarm"} and set(grid.n_queries) == {10, 30}
    assert METHODS.index("mmd") == 3
    cache = {}
    first, _ = mmd_rows(Comparison("B", "A", "B", "A2"), table, config, 6, [10], [6], 20, aa_cache=cache)
    other, grid = mmd_rows(Comparison("C", "A", "C", "A2"), table, config, 6, [10], [6], 20, aa_cache=cache)
    assert list(cache) == [("A", "A2")] and other["false_alarm"] == first["false_alarm"]  # one A/A per reference
    assert set(grid.kind) == {"power", "false alarm"}
