"""Tables and plots that turn the cost models into a report: what notebook 07 shows, as functions.

* benchmark records: read ``results/benchmarks.jsonl`` and rebuild the calibrated roofline;
* fresh timings: forward passes (roofline validation) and the decoding methods of an
  :class:`~workbench.inference.engine.Engine` (greedy, N samples, exact grid scoring);
* tables: API cost per request, self-hosting options, break-even volumes, the extra cost of
  metric-aware inference, quality against cost with its Pareto front, labelled-set sizes;
* plots: each takes an Axes (or returns a Figure) so a notebook can call it once directly, which a
  headless run checks, and again from a widget.

>>> option = HostingOption("box", usd_per_hour=3.6, seconds_per_request={1: 0.5, 4: 1.0})
>>> option.usd_per_request(4), round(option.usd_per_request(2), 6)   # N=2 interpolates on log N
(0.001, 0.00075)
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from workbench.metric_aware.bootstrap import bootstrap_ci
from workbench.cost.deployment import (
    HOURS_PER_MONTH,
    BreakEven,
    break_even,
    greedy_cost,
    grid_cost,
    mbr_cost,
    pareto_mask,
    sampling_cost,
    self_hosted_usd_per_request,
)
from workbench.cost.evaluation import BootstrapScaling, fit_bootstrap_scaling
from workbench.cost.hardware import Hardware, load_hardware
from workbench.cost.prices import ApiPrice, load_api_prices
from workbench.cost.roofline import Efficiency, Measurement, ModelShape, Roofline
from workbench.paths import RESULTS_DIR

# ------------------------------------------------------------------------------------ records


def read_records(benchmark: str, path: str | Path | None = None) -> list[dict]:
    """Every record of one benchmark in a JSON-lines results file, oldest first ([] if none)."""
    path = Path(path) if path else RESULTS_DIR / "benchmarks.jsonl"
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return sorted((r for r in records if r.get("benchmark") == benchmark), key=lambda r: r.get("timestamp", ""))


def latest_record(benchmark: str, path: str | Path | None = None, **where) -> dict | None:
    """The newest record of ``benchmark`` whose top-level fields equal ``where`` (None if none)."""
    matching = [r for r in read_records(benchmark, path) if all(r.get(key) == value for key, value in where.items())]
    return matching[-1] if matching else None


def record_roofline(record: dict, shape: ModelShape, fit: str = "sum") -> Roofline:
    """The roofline a ``throughput_roofline`` record calibrated: its measured CPU peaks, its
    ``kv_passes`` and the efficiencies of its ``fit`` ("sum" or "max" of compute and memory time)."""
    return Roofline(shape, Hardware(**record["hardware"]), Efficiency(**record["models"][fit]["efficiency"]), record["kv_passes"], overlap=fit == "max")


def record_points(record: dict, roofline: Roofline) -> pd.DataFrame:
    """The record's timed passes (its own per-point statistic) against ``roofline``'s predictions."""
    statistic = np.min if record.get("statistic") == "min" else np.median
    rows = [
        {"phase": p["phase"], "batch": p["batch"], "tokens": p["tokens"], "seconds": float(statistic(p["seconds"])), "role": "fit" if p["fit"] else "held out"}
        for p in record["points"]
    ]
    return validation_table(roofline, pd.DataFrame(rows))


def mbr_seconds_per_utility(record: dict, path: str = "vectorised") -> float:
    """Seconds per utility evaluation (one pair of samples) in an ``mbr_speed`` record."""
    return record["seconds"][path] / (record["items"] * record["n"] ** 2)


# ------------------------------------------------------------------------------------ timing


def time_passes(model, shape: ModelShape, passes: Sequence[tuple[str, int, int]], repeats: int = 3, seed: int = 0) -> pd.DataFrame:
    """Time prefill passes and single decode steps of ``model``, as ``benchmarks/throughput.py`` does.

    A decode step runs on a transformers ``DynamicCache`` of random keys and values (its time does
    not depend on their values). Repeats go round-robin over the passes, so that a burst of load
    from other processes spreads over all of them rather than spoiling one.

    Args:
        model: a transformers causal LM on CPU.
        shape: its :class:`ModelShape`.
        passes: ("prefill" | "decode", batch, tokens) triples; tokens is the prompt length of a
            prefill and the cached length of a decode step.
        repeats: timings per pass, after one untimed warm-up.
        seed: seeds the random token ids and cache contents.

    Returns:
        One row per pass: phase, batch, tokens, seconds (median) and best (minimum).
    """
    # torch is imported here only: the rest of the cost package works without it.
    import torch
    from transformers import DynamicCache

    generator = torch.Generator().manual_seed(seed)
    dtype = next(model.parameters()).dtype
    runs = []
    for phase, batch, tokens in passes:
        if phase == "prefill":
            ids = torch.randint(0, model.config.vocab_size, (batch, tokens), generator=generator)
            runs.append((lambda: None, lambda _, ids=ids: model(ids, use_cache=True, logits_to_keep=1)))
        else:
            kv_shape = (batch, shape.n_kv_heads, tokens, shape.head_dim)
            layers = [(torch.randn(kv_shape, generator=generator, dtype=dtype), torch.randn(kv_shape, generator=generator, dtype=dtype)) for _ in range(shape.n_layers)]
            ids = torch.randint(0, model.config.vocab_size, (batch, 1), generator=generator)
            # Building the cache copies the tensors, so it happens outside the timed call.
            runs.append((lambda layers=layers: DynamicCache(ddp_cache_data=layers), lambda cache, ids=ids: model(ids, past_key_values=cache, use_cache=True, logits_to_keep=1)))
    seconds = np.zeros((len(runs), repeats))
    with torch.inference_mode():
        for setup, run in runs:
            run(setup())
        for repeat in range(repeats):
            for index, (setup, run) in enumerate(runs):
                state = setup()
                start = time.perf_counter()
                run(state)
                seconds[index, repeat] = time.perf_counter() - start
    return pd.DataFrame([{"phase": p, "batch": b, "tokens": t} for p, b, t in passes]).assign(seconds=np.median(seconds, axis=1), best=seconds.min(axis=1))


def validation_table(roofline: Roofline, timed: pd.DataFrame, column: str = "seconds") -> pd.DataFrame:
    """``timed`` (phase, batch, tokens and a seconds column) with the roofline's prediction and
    the relative error (predicted - measured) / measured."""
    points = [(Measurement.prefill if row.phase == "prefill" else Measurement.decode)(int(row.batch), int(row.tokens), float(row[column])) for _, row in timed.iterrows()]
    predicted = roofline.predict(points)
    measured = timed[column].to_numpy(dtype=float)
    return timed.assign(measured_s=measured, predicted_s=predicted, rel_error=(predicted - measured) / measured)


def time_methods(engine, prompts: list[str], candidates: list[str], ns: Sequence[int], max_new_tokens: int, repeats: int = 3, warmup: list[str] | None = None) -> pd.DataFrame:
    """Machine seconds per prompt of greedy decoding, N samples and exact grid scoring.

    Use an engine without a disk cache (``Engine(lm, cache=None)``), or every repeat after the
    first would read the cache instead of decoding. The shared few-shot prefix is prefilled
    during the warm-up, so the timings are those of a server that keeps it cached.

    Args:
        engine: the :class:`~workbench.inference.engine.Engine` to time.
        prompts: formatted prompts, timed as one call per method.
        candidates: the answer grid for :meth:`Engine.score`.
        ns: sample counts.
        max_new_tokens: generation budget of greedy and sampled answers.
        repeats: timings per method; the minimum is kept, as the least disturbed by other load.
        warmup: prompts for an untimed warm-up call of each method (default: ``prompts``).

    Returns:
        One row per method: method ("greedy", "sample" or "exact"), n (samples, or candidates
        for "exact"), seconds_per_item.
    """
    from workbench.inference.engine import SamplingConfig  # here, not at the top: it imports torch

    config = SamplingConfig(max_new_tokens=max_new_tokens)
    methods = [("greedy", 1, lambda p: engine.greedy(p, max_new_tokens=max_new_tokens))]
    methods += [("sample", n, lambda p, n=n: engine.sample(p, n, config)) for n in ns]
    methods.append(("exact", len(candidates), lambda p: engine.score(p, candidates)))
    for _, _, run in methods:
        run(warmup or prompts)
    best = np.full(len(methods), np.inf)
    for _ in range(repeats):
        for index, (_, _, run) in enumerate(methods):
            start = time.perf_counter()
            run(prompts)
            best[index] = min(best[index], (time.perf_counter() - start) / len(prompts))
    return pd.DataFrame({"method": [m for m, _, _ in methods], "n": [n for _, n, _ in methods], "seconds_per_item": best})


# ------------------------------------------------------------------------------------ costs


def api_cost_table(input_tokens: float, output_tokens: float, n: int = 1, prices: Sequence[ApiPrice] | None = None) -> pd.DataFrame:
    """Cost per request and per 1,000 requests of every API in a price table.

    Args:
        input_tokens: prompt tokens per request.
        output_tokens: tokens per answer.
        n: answers per request; the prompt is billed once and every answer's tokens (as with
            OpenAI's ``n`` parameter).
        prices: the price rows; None reads the packaged, dated table.
    """
    rows = [
        {
            "api": f"{p.provider}/{p.model}",
            "price_date": p.price_date,
            "input_usd_per_1m": p.input_usd_per_1m,
            "output_usd_per_1m": p.output_usd_per_1m,
            "usd_per_request": p.cost(input_tokens, n * output_tokens),
        }
        for p in (prices if prices is not None else load_api_prices())
    ]
    table = pd.DataFrame(rows)
    table["usd_per_1000"] = 1000 * table["usd_per_request"]
    return table.sort_values("usd_per_request", ignore_index=True)


@dataclass(frozen=True)
class HostingOption:
    """A machine that serves the model, and how long a request takes on it.

    Attributes:
        name: e.g. "this-cpu (measured)" or "h100-sxm (roofline)".
        usd_per_hour: its price.
        seconds_per_request: samples per request N -> machine seconds per request (N = 1: one
            answer). Between listed N it is interpolated linearly on log N.
        source: where the seconds come from.
    """

    name: str
    usd_per_hour: float
    seconds_per_request: dict[int, float]
    source: str = ""

    def seconds(self, n: int = 1) -> float:
        """Machine seconds per request with ``n`` samples."""
        ns = sorted(self.seconds_per_request)
        if not ns[0] <= n <= ns[-1]:
            raise ValueError(f"{self.name}: N={n} outside the timed range {ns[0]}..{ns[-1]}")
        return float(np.interp(np.log(n), np.log(ns), [self.seconds_per_request[k] for k in ns]))

    def requests_per_s(self, n: int = 1) -> float:
        return 1.0 / self.seconds(n)

    def usd_per_request(self, n: int = 1, utilisation: float = 1.0) -> float:
        return self_hosted_usd_per_request(self.usd_per_hour, self.requests_per_s(n), utilisation)


def roofline_seconds_per_request(roofline: Roofline, prompt_tokens: int, new_tokens: int, n: int = 1, rows: int = 64) -> float:
    """Predicted machine seconds per request with N samples each, batching requests statically.

    ``max(1, rows // n)`` requests share a batch: each prompt is prefilled once and its KV cache
    copied into N rows (shared prefill), and all rows decode together.
    """
    prompts = max(1, rows // n)
    return roofline.generate_time(prompt_tokens, new_tokens, batch=prompts * n, prefill_batch=prompts) / prompts


def roofline_options(
    shape: ModelShape,
    efficiency: Efficiency,
    prompt_tokens: int,
    new_tokens: int,
    ns: Sequence[int],
    rows: int = 64,
    hardware: dict[str, Hardware] | None = None,
) -> list[HostingOption]:
    """One :class:`HostingOption` per priced machine of the hardware table, timed by the roofline.

    Args:
        shape: the model (its dtype picks the peak used).
        efficiency: achieved fractions of the peaks and overhead per pass; for hardware that was
            never measured this is an assumption, to be replaced by :func:`~workbench.cost.calibrate`
            on timings from that machine.
        prompt_tokens: prompt length.
        new_tokens: tokens per answer.
        ns: sample counts to tabulate.
        rows: sequences decoded together.
        hardware: name -> specs; None reads the packaged table. Machines without a price are skipped.
    """
    options = []
    for name, machine in (hardware if hardware is not None else load_hardware()).items():
        if machine.usd_per_hour is None:
            continue
        roofline = Roofline(shape, machine, efficiency)
        seconds = {n: roofline_seconds_per_request(roofline, prompt_tokens, new_tokens, n, rows) for n in ns}
        options.append(HostingOption(f"{name} (roofline)", machine.usd_per_hour, seconds, f"roofline, {shape.dtype}, {rows} rows, assumed efficiency"))
    return options


def hosting_table(options: Sequence[HostingOption], n: int = 1, utilisation: float = 1.0) -> pd.DataFrame:
    """Throughput and cost per 1,000 requests of each hosting option at ``n`` samples per request."""
    return pd.DataFrame(
        [
            {
                "hosting": o.name,
                "source": o.source,
                "usd_per_hour": o.usd_per_hour,
                "requests_per_s": o.requests_per_s(n),
                "usd_per_1000": 1000 * o.usd_per_request(n, utilisation),
            }
            for o in options
        ]
    )


def break_even_table(apis: pd.DataFrame, options: Sequence[HostingOption], n: int = 1, utilisation: float = 1.0) -> pd.DataFrame:
    """Monthly volume at which each hosting option becomes cheaper than each API.

    Args:
        apis: from :func:`api_cost_table` (columns api, usd_per_request), priced for the same N.
        options: hosting options.
        n: samples per request.
        utilisation: average share of a machine's throughput the traffic fills.

    Returns:
        One row per (API, hosting): both costs per 1,000 requests, the break-even volume in
        requests per month (inf where the API stays cheaper) and the monthly capacity of one
        machine.
    """
    rows = []
    for _, api in apis.iterrows():
        for option in options:
            result = break_even(api.usd_per_request, option.usd_per_hour, option.requests_per_s(n), utilisation)
            rows.append(
                {
                    "api": api.api,
                    "hosting": option.name,
                    "n": n,
                    "api_usd_per_1000": 1000 * api.usd_per_request,
                    "self_hosted_usd_per_1000_at_capacity": 1000 * option.usd_per_request(n, utilisation),
                    "machine_usd_per_month": option.usd_per_hour * HOURS_PER_MONTH,
                    "break_even_requests_per_month": result.volume,
                    "capacity_requests_per_month": option.requests_per_s(n) * utilisation * 3600 * HOURS_PER_MONTH,
                }
            )
    return pd.DataFrame(rows)


def overhead_table(roofline: Roofline, prompt_tokens: int, new_tokens: int, ns: Sequence[int], candidates: int, seconds_per_utility: float | None = None) -> pd.DataFrame:
    """Predicted machine seconds per prompt of metric-aware inference, against greedy decoding.

    Rows: greedy; N samples with one shared prefill; N samples from N prompt copies (what
    ``generate(num_return_sequences=N)`` does); exact scoring of the ``candidates`` grid answers;
    and, when ``seconds_per_utility`` is given, MBR on N samples (N x N utilities on top).
    All requests run one at a time (batch 1), the worst case for the extra rows.
    """
    entries = [("greedy", 1, greedy_cost(roofline, prompt_tokens, new_tokens)), ("exact grid scoring", candidates, grid_cost(roofline, prompt_tokens, candidates))]
    for n in ns:
        entries.append(("sample, shared prefill", n, sampling_cost(roofline, prompt_tokens, new_tokens, n)))
        entries.append(("sample, N prompt copies", n, sampling_cost(roofline, prompt_tokens, new_tokens, n, shared_prefill=False)))
        if seconds_per_utility is not None:
            entries.append(("MBR (+ N^2 utilities)", n, mbr_cost(roofline, prompt_tokens, new_tokens, n, seconds_per_utility)))
    greedy_s = entries[0][2].total_s
    return pd.DataFrame(
        [{"method": m, "n": n, "model_s": c.model_s, "utility_s": c.utility_s, "total_s": c.total_s, "x_greedy": c.total_s / greedy_s} for m, n, c in entries]
    )


# ------------------------------------------------------------------------------------ quality


def quality_cost_points(run, timing: pd.DataFrame, ns: Sequence[int], metric: str = "rmse") -> pd.DataFrame:
    """Quality and measured cost of greedy, the sampled mean at each N and the exact mean.

    Args:
        run: a :class:`~workbench.metric_aware.experiments.TaskRun` with at least ``max(ns)`` samples.
        timing: from :func:`time_methods` on the same model.
        ns: sample counts (first-N prefixes of the run's samples).
        metric: the quality metric.

    Returns:
        One row per point: strategy, method, n, metric value, seconds_per_item.
    """
    from workbench.metric_aware.experiments import k_sweep  # here, not at the top: it imports torch

    sweep = k_sweep(run, list(ns), (metric,)).set_index(["k", "strategy"])["value"]
    seconds = timing.set_index(["method", "n"])["seconds_per_item"]
    k_max = max(ns)
    rows = [{"strategy": "greedy", "method": "greedy", "n": 1, metric: sweep[(k_max, "greedy")], "seconds_per_item": seconds[("greedy", 1)]}]
    rows += [{"strategy": "sampled mean", "method": "sample", "n": n, metric: sweep[(n, "mean")], "seconds_per_item": seconds[("sample", n)]} for n in ns]
    if run.exact_probs is not None:
        k = len(run.grid)
        rows.append({"strategy": "exact mean", "method": "exact", "n": k, metric: sweep[(k_max, "exact mean")], "seconds_per_item": seconds[("exact", k)]})
    return pd.DataFrame(rows)


def with_pareto(table: pd.DataFrame, quality: str, cost: str, lower_is_better: bool = True) -> pd.DataFrame:
    """``table`` with a boolean column ``pareto``: no other row is at least as cheap and as good."""
    values = table[quality].to_numpy(dtype=float)
    return table.assign(pareto=pareto_mask(-values if lower_is_better else values, table[cost].to_numpy(dtype=float)))


def bootstrap_scaling(metric: str, predictions, gold, sizes: Sequence[int], n_resamples: int = 500, seed: int = 0) -> tuple[BootstrapScaling, pd.DataFrame]:
    """Bootstrap half-widths on seeded random subsets of several sizes, and the 1/sqrt(n) fit.

    Returns:
        (the fitted :class:`BootstrapScaling`, one row per size with its half-width).
    """
    predictions, gold = np.asarray(predictions, dtype=float), np.asarray(gold, dtype=float)
    rng = np.random.default_rng(seed)
    rows = []
    for size in sizes:
        subset = rng.choice(len(gold), size=size, replace=False)
        result = bootstrap_ci(metric, predictions[subset], gold[subset], n_resamples=n_resamples, seed=seed)
        rows.append({"items": size, "estimate": result.estimate, "half_width": (result.high - result.low) / 2})
    table = pd.DataFrame(rows)
    return fit_bootstrap_scaling(table["items"], table["half_width"]), table


# ------------------------------------------------------------------------------------ plots


def plot_validation(ax: plt.Axes, table: pd.DataFrame, target: float = 0.25, title: str = "") -> plt.Axes:
    """Predicted against measured seconds (log-log) with the +-target band.

    ``table`` comes from :func:`validation_table` with a ``role`` column ("fit", "held out", ...);
    prefills are circles, decode steps squares, points used for fitting hollow.
    """
    for index, ((phase, role), part) in enumerate(table.groupby(["phase", "role"])):
        color = f"C{index}"
        ax.scatter(part.measured_s, part.predicted_s, marker="o" if phase == "prefill" else "s", edgecolors=color, facecolors="none" if role == "fit" else color, label=f"{phase}, {role}")
    low, high = table[["measured_s", "predicted_s"]].min().min() / 1.5, table[["measured_s", "predicted_s"]].max().max() * 1.5
    line = np.array([low, high])
    ax.plot(line, line, "k-", lw=1)
    ax.fill_between(line, line * (1 - target), line * (1 + target), color="0.85", label=f"within {target:.0%}")
    ax.set(xscale="log", yscale="log", xlabel="measured s", ylabel="roofline s", title=title)
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7)
    return ax


def plot_break_even(ax: plt.Axes, result: BreakEven, api_label: str, hosting_label: str, volume: float | None = None) -> plt.Axes:
    """Monthly cost against monthly requests: the API line, the self-hosting steps, the crossing."""
    ax.plot(result.volumes, result.api_usd, label=api_label)
    ax.step(result.volumes, result.self_hosted_usd, where="post", label=hosting_label)
    if np.isfinite(result.volume):
        ax.axvline(result.volume, color="k", ls=":", lw=1)
        ax.annotate(f"break-even\n{result.volume:,.0f}/month", (result.volume, ax.get_ylim()[1] * 0.85), fontsize=7, ha="left")
    if volume is not None:
        ax.axvline(volume, color="C3", lw=1, label=f"your volume {volume:,.0f}")
    ax.set(xlabel="requests per month", ylabel="US$ per month")
    ax.legend(fontsize=7)
    return ax


def plot_pareto(ax: plt.Axes, table: pd.DataFrame, quality: str, cost: str, group: str = "stage", label: str = "label") -> plt.Axes:
    """Quality against cost, one colour per ``group``; the Pareto front (column ``pareto``) joined."""
    for index, (name, part) in enumerate(table.groupby(group, sort=False)):
        ax.scatter(part[cost], part[quality], color=f"C{index}", label=name, s=18)
    front = table[table.pareto].sort_values(cost)
    ax.plot(front[cost], front[quality], "k--", lw=1, label="Pareto front")
    for _, row in front.iterrows():
        ax.annotate(row[label], (row[cost], row[quality]), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set(xscale="log", xlabel=cost, ylabel=quality)
    ax.legend(fontsize=7)
    return ax


def cost_view(api: ApiPrice, input_tokens: float, output_tokens: float, option: HostingOption, n: int, volume: float, utilisation: float = 1.0, ns: Sequence[int] | None = None) -> Figure:
    """The break-even plot and the cost per 1,000 requests against N, for one API and one machine.

    Args:
        api: the API price.
        input_tokens: prompt tokens per request.
        output_tokens: tokens per answer.
        option: the self-hosting option.
        n: samples per request (the API bills N answers, the prompt once).
        volume: requests per month, marked on the break-even plot.
        utilisation: average share of the machine's throughput the traffic fills.
        ns: N values for the right panel; default the option's timed ones.
    """
    api_usd = api.cost(input_tokens, n * output_tokens)
    result = break_even(api_usd, option.usd_per_hour, option.requests_per_s(n), utilisation, volumes=np.linspace(0, 3 * max(volume, 1.0), 200))
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 3.8))
    plot_break_even(left, result, f"{api.provider}/{api.model} ({api.price_date})", option.name, volume)
    # Escaped dollar signs: a bare pair of them would start matplotlib's math mode.
    left.set_title(f"N={n}: API \\${1000 * api_usd:.4f} vs self-hosted \\${1000 * option.usd_per_request(n, utilisation):.4f} per 1,000 requests", fontsize=9)
    ns = sorted(ns or option.seconds_per_request)
    right.plot(ns, [1000 * api.cost(input_tokens, k * output_tokens) for k in ns], "o-", label=f"{api.model}")
    right.plot(ns, [1000 * option.usd_per_request(k, utilisation) for k in ns], "s-", label=option.name)
    right.axvline(n, color="C3", lw=1)
    right.set(yscale="log", xlabel="samples per request N", ylabel="US$ per 1,000 requests")
    right.set_xscale("log", base=2)
    right.set_title(f"utilisation {utilisation:.0%}", fontsize=9)
    right.legend(fontsize=7)
    figure.tight_layout()
    return figure
