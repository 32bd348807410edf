"""Side-by-side timings for the benchmark scripts: ways of doing one job, timed round-robin in one run.

A speed claim is a ratio measured side by side, never two numbers from two runs: load from other
processes drifts, so the ways alternate within every repeat and the first way (the baseline) runs
first in even repeats and last in odd ones. The other ways keep their order, since a later way may
read what an earlier one left (``cold`` fills a cache, ``warm`` reads it).

>>> timings = SideBySide(("whole", "cold", "warm"))
>>> timings.order(0), timings.order(1)
(('whole', 'cold', 'warm'), ('cold', 'warm', 'whole'))
>>> for way, seconds in (("whole", 4.0), ("cold", 5.0), ("warm", 1.0)):
...     timings.add(way, seconds)
>>> timings.ratios()
{'whole_over_cold': 0.8, 'whole_over_warm': 4.0}
>>> print(timings.summary())
whole 4.0 s, cold 5.0 s, warm 1.0 s
whole / cold 0.80x, whole / warm 4.00x
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class SideBySide:
    """Seconds of each way over the repeats, and the baseline's ratios to the others.

    Attributes:
        ways: the ways' names, the baseline first.
        seconds: way -> seconds of each repeat, in order.
        load_before: the 1, 5 and 15-minute load averages when the timings began.
    """

    ways: tuple[str, ...]
    seconds: dict[str, list[float]] = field(default_factory=dict)
    load_before: tuple[float, ...] = field(default_factory=os.getloadavg)

    def __post_init__(self):
        self.ways = tuple(self.ways)
        if len(self.ways) < 2:
            raise ValueError(f"a side-by-side timing needs two ways or more, got {self.ways}")
        self.seconds = {way: list(self.seconds.get(way, [])) for way in self.ways}

    def order(self, repeat: int) -> tuple[str, ...]:
        """The ways in the order repeat ``repeat`` runs them: the baseline first when even, last when odd."""
        return self.ways if repeat % 2 == 0 else (*self.ways[1:], self.ways[0])

    def add(self, way: str, seconds: float) -> None:
        """Record one repeat of ``way`` (for a time the job measures itself, such as a training loop's)."""
        if way not in self.seconds:
            raise KeyError(f"unknown way {way!r}; the ways are {self.ways}")
        self.seconds[way].append(float(seconds))

    @contextmanager
    def timed(self, way: str, label: str = "") -> Iterator[None]:
        """Time the block as one repeat of ``way`` (wall clock) and print it with the load average."""
        tick = time.perf_counter()
        yield
        self.add(way, time.perf_counter() - tick)
        print(f"  {label}{way}: {self.seconds[way][-1]:.1f} s, load {os.getloadavg()[0]:.1f}", flush=True)

    def medians(self) -> dict[str, float]:
        """Way -> median seconds over its repeats."""
        return {way: statistics.median(values) for way, values in self.seconds.items()}

    def ratios(self) -> dict[str, float]:
        """``<baseline>_over_<way>`` -> the baseline's median over the way's (above 1: the way is faster)."""
        median = self.medians()
        base = self.ways[0]
        return {f"{base}_over_{way}": median[base] / median[way] for way in self.ways[1:]}

    def ratio_fields(self, prefix: str = "") -> dict[str, float]:
        """:meth:`ratios` as a record's fields, ``<prefix>ratio_<baseline>_over_<way>``.

        >>> timings = SideBySide(("off", "on"), {"off": [2.0], "on": [1.0]})
        >>> timings.ratio_fields("cpu_")
        {'cpu_ratio_off_over_on': 2.0}
        """
        return {f"{prefix}ratio_{name}": value for name, value in self.ratios().items()}

    def summary(self) -> str:
        """Two printed lines: each way's median seconds, then the ratios."""
        median, base = self.medians(), self.ways[0]
        times = ", ".join(f"{way} {median[way]:.1f} s" for way in self.ways)
        ratios = ", ".join(f"{base} / {way} {median[base] / median[way]:.2f}x" for way in self.ways[1:])
        return f"{times}\n{ratios}"

    def record(self) -> dict:
        """The fields a benchmark record keeps: median and all seconds, each ``ratio_*``, and the load averages."""
        return {
            "seconds": self.medians(),
            "all_seconds": self.seconds,
            **self.ratio_fields(),
            "load_average_before": self.load_before,
            "load_average_after": os.getloadavg(),
        }
