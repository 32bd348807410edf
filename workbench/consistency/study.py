"""The changes of a lifecycle study and the pooled reference of its A/A runs.

A :class:`Change` is one stage compared with the reference (a real change or a control); its fold says which
cross-fitted classifier trains on it (:mod:`~workbench.consistency.crossfit`). :func:`pool_stages` joins a reference
with its rerun under new seeds, so that A/A runs can split the pooled responses into two halves
(:mod:`~workbench.consistency.methods`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pandas as pd


@dataclasses.dataclass(frozen=True)
class Change:
    """One comparison against the reference.

    Attributes:
        stage: the stage (variant name) under test.
        description: what changed, for tables and plots.
        fold: the cross-fitting fold whose classifier trains on this change; None for controls,
            which no classifier trains on.
        control: no real change (A/A, served vs local): its rejection rate is a false alarm rate.
    """

    stage: str
    description: str
    fold: int | None = None
    control: bool = False


def pool_stages(table: pd.DataFrame, stages: Sequence[str], name: str) -> pd.DataFrame:
    """The responses of several stages as one stage ``name`` (seeds become ``"<stage>:<seed>"``).

    Pooling the reference with a rerun under new seeds gives a stage with twice the samples,
    which :func:`~workbench.consistency.power.aa_false_alarm_rate` splits at random.
    """
    rows = table[table.stage.isin(stages)]
    pooled = rows.assign(stage=name, seed=rows.stage + ":" + rows.seed.astype(str))
    return pooled.sort_values("query_id", kind="stable").reset_index(drop=True)
