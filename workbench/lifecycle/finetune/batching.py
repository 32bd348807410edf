"""The order of training batches: per epoch, each task shuffled and cut into length-grouped
batches of one task, the batches shuffled. A function of the seed and the step only, so a resumed
run trains on the same batches as an uninterrupted one.
"""

from __future__ import annotations

import math
import random

from workbench.lifecycle.finetune.encoding import Encoded


def steps_per_epoch(encoded: list[Encoded], batch_size: int) -> int:
    """Batches in one pass (batches never mix tasks, so each task rounds up on its own)."""
    counts: dict[str, int] = {}
    for e in encoded:
        counts[e.task] = counts.get(e.task, 0) + 1
    return sum(math.ceil(n / batch_size) for n in counts.values())


def batch_schedule(
    encoded: list[Encoded], batch_size: int, steps: int, seed: int, group_by_length: bool = True
) -> list[list[int]]:
    """The example indices of every step: per epoch, each task shuffled into batches, batches shuffled.

    With ``group_by_length``, each task's shuffled examples are cut into chunks of 50 batches that
    are sorted by length before being split into batches: rows of a batch have similar lengths, so
    little padding is computed, while the order stays random at the scale of an epoch.
    It depends only on its arguments, so a resumed run picks up the same batches.

    >>> data = [Encoded([1, 2], 1, t) for t in "aaab"]
    >>> schedule = batch_schedule(data, batch_size=2, steps=4, seed=0)
    >>> len(schedule), all(len({data[i].task for i in batch}) == 1 for batch in schedule)
    (4, True)
    """
    schedule: list[list[int]] = []
    epoch = 0
    while len(schedule) < steps:
        rng = random.Random(f"{seed}:{epoch}")
        batches = []
        for task in sorted({e.task for e in encoded}):
            indices = [i for i, e in enumerate(encoded) if e.task == task]
            rng.shuffle(indices)
            if group_by_length:
                chunk = 50 * batch_size
                indices = [
                    i
                    for s in range(0, len(indices), chunk)
                    for i in sorted(indices[s : s + chunk], key=lambda i: len(encoded[i].input_ids))
                ]
            batches += [indices[s : s + batch_size] for s in range(0, len(indices), batch_size)]
        rng.shuffle(batches)
        schedule += batches
        epoch += 1
    return schedule[:steps]
