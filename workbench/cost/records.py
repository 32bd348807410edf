"""Benchmark records (``results/benchmarks.jsonl``) read back: the calibrated roofline a
throughput benchmark fitted, its timed points, and MBR's seconds per utility.

Records are written by :func:`workbench.runs.append_record` (``timestamp``, ``writer``, ``commit``,
``clean`` and one ``machine`` schema); older lines of the file have other shapes (``date`` for
``timestamp``; ``machine`` a string or one of five layouts), and the readers here accept both.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.cost.hardware import Hardware
from workbench.cost.roofline import Efficiency, ModelShape, Roofline
from workbench.cost.timing import validation_table
from workbench.paths import RESULTS_DIR


def read_records(benchmark: str, path: str | Path | None = None) -> list[dict]:
    """Every record of one benchmark in a JSON-lines results file, oldest first ([] if none)."""
    path = Path(path) if path else RESULTS_DIR / "benchmarks.jsonl"
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return sorted((r for r in records if r.get("benchmark") == benchmark), key=record_time)


def record_time(record: dict) -> str:
    """When a record was written, ISO 8601 UTC ("" if unknown); older records call it ``date``."""
    return record.get("timestamp") or record.get("date") or ""


def record_machine(record: dict) -> dict:
    """A record's machine in :func:`workbench.runs.machine`'s schema, from either record shape.

    Returns ``cpu``, ``cpus``, ``torch_threads`` and ``device`` (None where the record lacks them).

    >>> record_machine({"machine": {"cpu_count": 2, "torch_threads": 1, "device": "cpu"}})
    {'cpu': None, 'cpus': 2, 'torch_threads': 1, 'device': 'cpu'}
    >>> record_machine({"machine": "x86_64", "threads": 1})["cpu"]
    'x86_64'
    """
    machine = record.get("machine")
    machine = {"cpu": machine} if isinstance(machine, str) else dict(machine or {})
    return {
        "cpu": machine.get("cpu"),
        "cpus": machine.get("cpus", machine.get("cpu_count")),
        "torch_threads": machine.get("torch_threads", record.get("threads")),
        "device": record.get("device", machine.get("device")),
    }


def latest_record(benchmark: str, path: str | Path | None = None, **where) -> dict | None:
    """The newest record of ``benchmark`` whose top-level fields equal ``where`` (None if none)."""
    matching = [r for r in read_records(benchmark, path) if all(r.get(key) == value for key, value in where.items())]
    return matching[-1] if matching else None


def record_roofline(record: dict, shape: ModelShape, fit: str = "sum") -> Roofline:
    """The roofline a ``throughput_roofline`` record calibrated: its measured CPU peaks, its
    ``kv_passes`` and the efficiencies of its ``fit`` ("sum" or "max" of compute and memory time)."""
    return Roofline(
        shape,
        Hardware(**record["hardware"]),
        Efficiency(**record["models"][fit]["efficiency"]),
        record["kv_passes"],
        overlap=fit == "max",
    )


def record_points(record: dict, roofline: Roofline) -> pd.DataFrame:
    """The record's timed passes (its own per-point statistic) against ``roofline``'s predictions."""
    statistic = np.min if record.get("statistic") == "min" else np.median
    rows = [
        {
            "phase": p["phase"],
            "batch": p["batch"],
            "tokens": p["tokens"],
            "seconds": float(statistic(p["seconds"])),
            "role": "fit" if p["fit"] else "held out",
        }
        for p in record["points"]
    ]
    return validation_table(roofline, pd.DataFrame(rows))


def mbr_seconds_per_utility(record: dict, path: str = "vectorised") -> float:
    """Seconds per utility evaluation (one pair of samples) in an ``mbr_speed`` record."""
    return record["seconds"][path] / (record["items"] * record["n"] ** 2)
