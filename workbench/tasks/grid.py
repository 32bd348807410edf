"""Answer grids: putting values onto the grid of answers a task's model answers in.

A grid task (SST-5's ratings 1..5, STS-B's 0.0..5.0 in steps of 0.1) has a finite set of answers.
Gold values need not lie on it (STS-B's gold 3.75 is an average of annotators), so exact match,
the gold class of a grid distribution and the constant "prior mode" all compare on the grid: each
value is replaced by its nearest grid point. This module is the one place that rule is written.

Ties (a value exactly halfway between two grid points) go to the grid point that comes first in
``grid``, i.e. the lower neighbour for an ascending grid: 2.5 on the grid 1..5 becomes 2.

>>> snap_to_grid([1.04, 2.5, 2.51, 7.0], [1.0, 2.0, 3.0, 4.0, 5.0])
array([1., 2., 3., 5.])
>>> nearest_grid_index([1.04, 2.5], [1.0, 2.0, 3.0])
array([0, 1])
>>> snap_to_grid([3.75], None)   # an open-answer task has no grid: values stay as they are
array([3.75])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def nearest_grid_index(values: Sequence[float] | np.ndarray, grid: Sequence[float] | np.ndarray) -> np.ndarray:
    """Index of the grid point nearest to each value; ties go to the one first in ``grid``.

    Args:
        values: Array of any shape (...,) of finite values.
        grid: (K,) grid points, K >= 1.

    Returns:
        Integer array of shape (...,) with entries in 0..K-1.

    Raises:
        ValueError: If the grid is empty or not one-dimensional, or a value or grid point is not
            finite (NaN would silently snap to the first grid point).
    """
    values = np.asarray(values, dtype=float)
    grid = np.asarray(grid, dtype=float)
    if grid.ndim != 1 or grid.size == 0:
        raise ValueError(f"grid must be a non-empty 1-d sequence, got shape {grid.shape}")
    if not np.all(np.isfinite(grid)):
        raise ValueError("grid points must be finite")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"cannot snap non-finite values to a grid: {values[~np.isfinite(values)][:5].tolist()}")
    # argmin returns the first minimum, which is what makes ties go to the earlier grid point.
    return np.abs(values[..., None] - grid).argmin(axis=-1)


def snap_to_grid(values: Sequence[float] | np.ndarray, grid: Sequence[float] | np.ndarray | None) -> np.ndarray:
    """The grid point nearest to each value (see :func:`nearest_grid_index` for ties).

    Args:
        values: Array of any shape (...,) of finite values.
        grid: (K,) grid points, or None for open answers (no grid): then the values come back
            unchanged, as a float array.

    Returns:
        Float array of shape (...,).
    """
    if grid is None:
        return np.asarray(values, dtype=float)
    grid = np.asarray(grid, dtype=float)
    return grid[nearest_grid_index(values, grid)]
