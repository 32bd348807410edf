"""Accelerator specs (peak FLOP/s, memory bandwidth, $/hour) for the roofline model.

Specs of common GPUs come from the packaged table ``workbench/data/hardware.csv``; the row
``"this-cpu"`` is measured instead, by :func:`measure_cpu`, the first time it is asked for.

>>> h100 = get_hardware("h100-sxm")
>>> h100.peak_flops("bf16") / 1e12, h100.bandwidth / 1e9
(989.0, 3350.0)
>>> round(h100.ridge_point("bf16"))   # FLOPs per byte moved at which compute and memory time are equal
295
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, replace
from pathlib import Path

from workbench.cost._table import month_or_day, number, packaged, read_cost_table

HARDWARE_FILE = "hardware.csv"
THIS_CPU = "this-cpu"


@dataclass(frozen=True)
class Hardware:
    """One machine (or one GPU) as the roofline sees it.

    Attributes:
        name: e.g. "h100-sxm".
        bf16_tflops: dense bf16/fp16 peak, 1e12 FLOP/s.
        fp32_tflops: fp32 peak (non-tensor-core on GPUs), 1e12 FLOP/s.
        bandwidth_gb_s: peak memory bandwidth, 1e9 bytes/s.
        memory_gb: memory size, 1e9 bytes (None when unknown, e.g. a measured CPU).
        usd_per_hour: typical on-demand price, or None when the table has none.
        price_source: where the price comes from.
        price_date: when it was published ("YYYY-MM-DD" or "YYYY-MM").
        note: caveats.
    """

    name: str
    bf16_tflops: float
    fp32_tflops: float
    bandwidth_gb_s: float
    memory_gb: float | None = None
    usd_per_hour: float | None = None
    price_source: str | None = None
    price_date: str | None = None
    note: str = ""

    def peak_flops(self, dtype: str) -> float:
        """Peak FLOP/s for matmuls in ``dtype`` ("fp32", "bf16" or "fp16")."""
        if dtype in ("bf16", "fp16"):
            return self.bf16_tflops * 1e12
        if dtype == "fp32":
            return self.fp32_tflops * 1e12
        raise ValueError(f"no peak for dtype {dtype!r}; use fp32, bf16 or fp16")

    @property
    def bandwidth(self) -> float:
        """Peak memory bandwidth in bytes/s."""
        return self.bandwidth_gb_s * 1e9

    def ridge_point(self, dtype: str) -> float:
        """Peak FLOP/s over bandwidth: the arithmetic intensity (FLOP/byte) where a kernel turns compute-bound."""
        return self.peak_flops(dtype) / self.bandwidth


_SPECS = ("bf16_tflops", "fp32_tflops", "bandwidth_gb_s")


def _placeholder(row: dict) -> bool:
    """The "this-cpu" row with no specs, to be measured."""
    return row["name"] == THIS_CPU and all(row[s] is None for s in _SPECS)


def _check_specs(row: dict) -> None:
    if _placeholder(row):
        return
    missing = [s for s in _SPECS if not row[s]]
    if missing:
        raise ValueError(f"hardware {row['name']!r} needs positive {missing}")


def load_hardware(path: str | Path | None = None) -> dict[str, Hardware]:
    """Rows of a hardware table with complete specs, by name. Rows with empty specs (the
    ``this-cpu`` placeholder) are skipped here; :func:`get_hardware` measures that one.

    Args:
        path: a CSV with columns name, bf16_tflops, fp32_tflops, bandwidth_gb_s (and optionally
            memory_gb, usd_per_hour, price_source, price_date, note); None reads the packaged table.

    Raises:
        CostTableError: naming the file and line of a malformed row.
    """
    rows = read_cost_table(
        path or packaged(HARDWARE_FILE),
        required={"name": str},
        optional={
            **{s: number for s in _SPECS},
            "memory_gb": number,
            "usd_per_hour": number,
            "price_source": str,
            "price_date": month_or_day,
            "note": str,
        },
        check=_check_specs,
    )
    return {row["name"]: Hardware(**{**row, "note": row["note"] or ""}) for row in rows if not _placeholder(row)}


def get_hardware(name: str, path: str | Path | None = None, usd_per_hour: float | None = None) -> Hardware:
    """One machine by name; ``"this-cpu"`` is measured (once per process) unless the table gives it.

    Args:
        name: a row of the table, or "this-cpu".
        path: the table; None reads the packaged one.
        usd_per_hour: overrides the table's price (e.g. your negotiated rate).

    Raises:
        KeyError: listing the known names.
    """
    table = load_hardware(path)
    if name in table:
        hardware = table[name]
    elif name == THIS_CPU:
        hardware = measure_cpu()
    else:
        raise KeyError(f"no hardware {name!r}; known: {sorted(table) + [THIS_CPU]}")
    return hardware if usd_per_hour is None else replace(hardware, usd_per_hour=usd_per_hour)


def measure_cpu(matmul_size: int = 2048, copy_mib: int = 1024, repeats: int = 5) -> Hardware:
    """Estimate this CPU's peaks with torch, at the current ``torch.get_num_threads()``.

    Peak FLOP/s is the best of ``repeats`` timings of a square matmul (fp32, and bf16, which CPUs
    with AMX/AVX512-BF16 run much faster); bandwidth is the best of ``repeats`` timings of a tensor
    copy, counting bytes read plus bytes written. "Best" rather than median because these are
    peaks: the efficiency factors of the roofline absorb what real kernels achieve.

    Args:
        matmul_size: side of the square matrices (2048: 17 GFLOP, well above cache blocking).
        copy_mib: size of the copied tensor; it must dwarf the last-level cache to measure DRAM.
        repeats: timings per quantity, after one warm-up.
    """
    import torch

    # Cached per thread count: the peaks scale with it.
    return _measure_cpu(torch.get_num_threads(), matmul_size, copy_mib, repeats)


@functools.cache
def _measure_cpu(threads: int, matmul_size: int, copy_mib: int, repeats: int) -> Hardware:
    import torch

    def best_seconds(function) -> float:
        function()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            function()
            times.append(time.perf_counter() - start)
        return min(times)

    peaks = {}
    for dtype in (torch.float32, torch.bfloat16):
        a, b = torch.randn(matmul_size, matmul_size, dtype=dtype), torch.randn(matmul_size, matmul_size, dtype=dtype)
        peaks[dtype] = 2 * matmul_size**3 / best_seconds(lambda a=a, b=b: a @ b)
    source = torch.ones(copy_mib * 2**20 // 4)
    target = torch.empty_like(source)
    bandwidth = 2 * source.numel() * 4 / best_seconds(lambda: target.copy_(source))
    return Hardware(
        name=THIS_CPU,
        bf16_tflops=peaks[torch.bfloat16] / 1e12,
        fp32_tflops=peaks[torch.float32] / 1e12,
        bandwidth_gb_s=bandwidth / 1e9,
        note=f"measured with {threads} torch threads",
    )
