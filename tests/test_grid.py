"""The one snap-to-grid rule: nearest grid point, ties to the earlier grid point, None passes through."""

import numpy as np
import pytest

from workbench.tasks.grid import nearest_grid_index, snap_to_grid

STSB_GRID = np.round(np.arange(0.0, 5.01, 0.1), 1)


def test_snaps_to_the_nearest_grid_point_of_any_shape():
    values = np.array([[1.04, 2.6], [-3.0, 9.0]])
    np.testing.assert_array_equal(snap_to_grid(values, np.arange(1.0, 6.0)), [[1.0, 3.0], [1.0, 5.0]])
    np.testing.assert_array_equal(nearest_grid_index(values, np.arange(1.0, 6.0)), [[0, 2], [0, 4]])


def test_ties_go_to_the_grid_point_listed_first():
    # 2.5 is halfway between 2 and 3: the lower one on an ascending grid, the upper on a descending one.
    assert snap_to_grid([2.5], [1.0, 2.0, 3.0])[0] == 2.0
    assert snap_to_grid([2.5], [3.0, 2.0, 1.0])[0] == 3.0


def test_matches_the_brute_force_rule_on_stsb_gold_values():
    gold = np.random.default_rng(0).uniform(0, 5, size=500).round(2)  # averages of annotators
    expected = [min(STSB_GRID, key=lambda point: (abs(value - point), point)) for value in gold]
    np.testing.assert_allclose(snap_to_grid(gold, STSB_GRID), expected)


def test_no_grid_means_open_answers_unchanged():
    np.testing.assert_array_equal(snap_to_grid([3.75, 1], None), [3.75, 1.0])


@pytest.mark.parametrize(
    ("values", "grid", "message"),
    [
        ([1.0, np.nan], [1.0, 2.0], "non-finite"),
        ([1.0], [], "non-empty"),
        ([1.0], [[1.0, 2.0]], "non-empty 1-d"),
        ([1.0], [1.0, np.inf], "finite"),
    ],
)
def test_bad_input_is_refused_with_a_clear_error(values, grid, message):
    with pytest.raises(ValueError, match=message):
        snap_to_grid(values, grid)
