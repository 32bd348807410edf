"""The steps of the cost study of notebook 07 (its sections 1-4), one function each.

The workload, timing the stages, the CPU roofline from its benchmark record, the extra cost of
metric-aware inference, the roofline checked on this CPU, break-even volumes, the quality/cost
front, what evaluation costs. :class:`workbench.cost.study.CostStudy` runs them in order on one
model. Seconds are **measured** on this machine unless a column or label says **predicted** (roofline).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from workbench.cost.evaluation_cost import (
    MetricCost,
    bootstrap_scaling,
    human_rating_budget,
    items_for_half_width,
)
from workbench.cost.hosting import (
    HostingOption,
    api_cost_table,
    break_even_table,
    overhead_table,
)
from workbench.cost.records import (
    latest_record,
    mbr_seconds_per_utility,
    read_records,
    record_machine,
    record_points,
    record_roofline,
    record_time,
)
from workbench.cost.roofline import ModelShape, Roofline
from workbench.cost.timing import time_methods, validate_threads
from workbench.cost.tradeoffs import quality_cost_points, with_pareto
from workbench.inference.engine import HFEngine
from workbench.inference.gencache import GenerationCache
from workbench.lifecycle.stages import load_stage
from workbench.metric_aware.experiments import RunConfig, TaskRun, run_task
from workbench.paths import cache_dir
from workbench.progress import tqdm
from workbench.tasks import Task

# The engine's timed methods (time_methods), under the roofline's method names (overhead_table).
ENGINE_METHOD = {"greedy": "greedy", "exact grid scoring": "exact", "sample, shared prefill": "sample"}


def usd_per_1000(seconds_per_item, usd_per_hour: float):
    """US$ per 1,000 items at ``usd_per_hour`` of machine time, fully used.

    >>> float(usd_per_1000(3.6, 1.0))
    1.0
    """
    return 1000 * np.asarray(seconds_per_item) * usd_per_hour / 3600


def request_tokens(tokenizer, prompts: Sequence[str], candidates: Sequence[str]) -> tuple[int, int]:
    """(mean prompt tokens, answer tokens) of a request: the longest candidate answer plus the end-of-turn token."""
    prompt_tokens = round(
        np.mean([len(ids) for ids in tokenizer(list(prompts), add_special_tokens=False)["input_ids"]])
    )
    answer_tokens = max(len(tokenizer(c, add_special_tokens=False)["input_ids"]) for c in candidates) + 1
    return int(prompt_tokens), answer_tokens


def time_and_decode_stages(
    stages: Sequence[str],
    model: str,
    device: str,
    task: Task,
    prompts: Sequence[str],
    config: RunConfig,
    ns: Sequence[int],
    time_prompts: int,
    repeats: int,
    on_model: Callable[[dict], None] = lambda fingerprint: None,
) -> tuple[dict, dict]:
    """Time every stage's decoding methods (no cache) and decode the task with it (generation cache).

    The timing uses ``prompts[:time_prompts]`` and warms up on the next two (the shared few-shot
    prefix is prefilled then, as a server that caches it would).

    Returns:
        ({stage: :func:`time_methods` table}, {stage: :class:`TaskRun` of ``config``}).
    """
    timings, runs = {}, {}
    for stage in tqdm(stages, desc="stages"):
        lm = load_stage(stage, device=device, base_model=model)
        on_model(lm.fingerprint)
        timed, warmup = list(prompts[:time_prompts]), list(prompts[time_prompts : time_prompts + 2])
        timings[stage] = time_methods(
            HFEngine(lm, cache=None, progress=False),
            timed,
            task.candidates,
            ns,
            task.max_new_tokens,
            repeats=repeats,
            warmup=warmup or timed,
        )
        runs[stage] = run_task(
            HFEngine(lm, cache=GenerationCache(cache_dir() / "generations", lm.fingerprint)), task, config
        )
        del lm
    return timings, runs


def cpu_roofline_from_record(shape: ModelShape, threads: int) -> tuple[dict | None, Roofline | None, str]:
    """This CPU's roofline from the latest ``throughput_roofline`` benchmark record (at ``threads`` if any).

    Returns:
        (the record, the roofline of its best-fitting model on held-out passes, a sentence saying
        which), or (None, None, a sentence) when no record exists.
    """
    record = latest_record("throughput_roofline", threads=threads) or latest_record("throughput_roofline")
    if record is None:
        return (
            None,
            None,
            "no throughput_roofline record: section 2 calibrates the CPU roofline on fresh timings instead",
        )
    fit = min(record["models"], key=lambda name: record["models"][name]["mape_heldout"])
    roofline = record_roofline(record, shape, fit)
    return (
        record,
        roofline,
        (
            f"throughput record {record['timestamp']}, {record['threads']} thread(s), "
            f"{record['machine']['cpu']}: {fit} of compute and memory time fits best; "
            f"efficiencies {roofline.efficiency}"
        ),
    )


def mbr_utility_seconds(metric: str = "chrf") -> tuple[float | None, str]:
    """Seconds per MBR utility (vectorised) from the largest ``mbr_speed`` record of ``metric``, and a sentence."""
    records = [r for r in read_records("mbr_speed") if r["metric"] == metric]
    if not records:
        return None, "no mbr_speed record"
    record = max(records, key=lambda r: (r["items"] * r["n"] ** 2, r["timestamp"]))
    seconds = mbr_seconds_per_utility(record)
    return seconds, (
        f"MBR {metric}: {seconds * 1e6:.1f} us per utility (vectorised; the pair-by-pair loop takes "
        f"{mbr_seconds_per_utility(record, 'loop') * 1e6:.0f} us)"
    )


def measured_multiples(timing: pd.DataFrame) -> pd.DataFrame:
    """One stage's timing with ``x_greedy``: seconds per item as a multiple of greedy decoding."""
    greedy = timing.query("method == 'greedy'").seconds_per_item.iloc[0]
    return timing.assign(x_greedy=timing.seconds_per_item / greedy)


def overhead_side_by_side(
    measured: pd.DataFrame,
    rooflines: dict[str, Roofline],
    prompt_tokens: int,
    answer_tokens: int,
    ns: Sequence[int],
    candidates: int,
    utility_s: float | None,
) -> pd.DataFrame:
    """Metric-aware inference as a multiple of greedy: measured here (first column), predicted per roofline.

    Args:
        measured: :func:`measured_multiples` of the reference stage.
        rooflines: {machine label: roofline} to predict with.
        prompt_tokens, answer_tokens: the request (see :func:`request_tokens`).
        ns: sample counts.
        candidates: answers on the grid (exact scoring scores each).
        utility_s: seconds per MBR utility (None: no MBR rows).

    Returns:
        Index (method, n), one column per machine, values ``x_greedy``.
    """
    overhead = pd.concat(
        {
            name: overhead_table(roof, prompt_tokens, answer_tokens, ns, candidates, utility_s)
            for name, roof in rooflines.items()
        },
        names=["machine"],
    ).reset_index(level=0)
    side_by_side = overhead.pivot_table(index=["method", "n"], columns="machine", values="x_greedy", sort=False)
    by_method = measured.set_index(["method", "n"]).x_greedy
    side_by_side.insert(
        0,
        "this CPU (measured, HFEngine)",
        [by_method.get((ENGINE_METHOD.get(m, ""), n), np.nan) for m, n in side_by_side.index],
    )
    return side_by_side


def roofline_validation(
    model,
    shape: ModelShape,
    passes: Sequence,
    threads: Sequence[int],
    repeats: int,
    seed: int,
    record: dict | None,
    cpu_roofline: Roofline | None,
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """The roofline against passes timed here at each thread count, side by side, and the benchmark record's own test.

    Returns:
        (validation rows with ``source`` and ``role``, the timed passes, a summary: speed-up, held-out
        points with their mean and max error against the goals (mean 10%, max 25%), the machine's load while
        timing).
    """
    load_before = os.getloadavg()[0]
    by_threads = validate_threads(model, shape, [tuple(p) for p in passes], threads, repeats=repeats, seed=seed)
    load_after = os.getloadavg()[0]
    validation = by_threads.assign(source=lambda t: t.threads.map(lambda n: f"this notebook, {n} thread(s)"))
    if record is not None:
        from_record = record_points(record, cpu_roofline).assign(
            source=f"benchmark record of {record['timestamp'][:10]}, {record['threads']} thread(s)",
            threads=record["threads"],
        )
        validation = pd.concat([from_record, validation], ignore_index=True)
    lines = []
    if len(threads) > 1:
        speed = by_threads.pivot_table(index=["phase", "batch", "tokens"], columns="threads", values="measured_s")
        lines.append(
            f"measured speed-up {threads[-1]} vs {threads[0]} thread(s), median over passes: "
            f"{np.median(speed[threads[0]] / speed[threads[-1]]):.2f}x"
        )
    for source, row in held_out_summary(validation).iterrows():
        lines.append(
            f"{source}: {int(row.points)} untrained-on passes, mean absolute error {row['mean']:.1%} "
            f"(goal 10%: {'met' if row['mean'] <= 0.10 else 'NOT met'}), max {row['max']:.1%} "
            f"(goal 25%: {'met' if row['max'] <= 0.25 else 'NOT met'})"
        )
    cores = os.cpu_count()
    busy = max(load_before, load_after) > cores
    lines.append(
        f"load average {load_before:.1f} -> {load_after:.1f} on {cores} cores while timing"
        + (
            ": the machine was oversubscribed, so timings (and errors) include waiting for other processes"
            if busy
            else ""
        )
    )
    return validation, by_threads, "\n".join(lines)


def held_out_errors(validation: pd.DataFrame) -> pd.Series:
    """Mean absolute relative error of the passes the roofline was not fitted on, per ``source``."""
    return held_out_summary(validation)["mean"]


def held_out_summary(validation: pd.DataFrame) -> pd.DataFrame:
    """Per ``source``: how many passes the roofline was not fitted on, their mean and max absolute relative error.

    >>> v = pd.DataFrame({"source": ["a"] * 3, "role": ["fit", "held out", "held out"], "rel_error": [5, -0.1, 0.3]})
    >>> held_out_summary(v).round(3).to_dict("index")
    {'a': {'points': 2, 'mean': 0.2, 'max': 0.3}}
    """
    errors = validation[validation.role != "fit"].assign(abs_error=lambda t: t.rel_error.abs())
    grouped = errors.groupby("source").abs_error
    return pd.DataFrame({"points": grouped.size().astype(int), "mean": grouped.mean(), "max": grouped.max()})


def break_even_volumes(
    prompt_tokens: int, answer_tokens: int, options: Sequence[HostingOption], ns: Sequence[int], utilisation: float
) -> pd.DataFrame:
    """Break-even monthly volumes of every API against every hosting option, at each N of ``ns``."""
    breaks = pd.concat(
        [break_even_table(api_cost_table(prompt_tokens, answer_tokens, n=n), options, n, utilisation) for n in ns],
        ignore_index=True,
    )
    return breaks.assign(break_even_millions_per_month=breaks.break_even_requests_per_month / 1e6)


def quality_cost_front(
    runs: dict[str, TaskRun], timings: dict[str, pd.DataFrame], ns: Sequence[int], usd_per_hour: float
) -> pd.DataFrame:
    """RMSE against measured cost of greedy, the sampled mean at each N and the exact mean, per stage, with the Pareto
    set."""
    points = pd.concat(
        [quality_cost_points(runs[stage], timings[stage], ns).assign(stage=stage) for stage in runs], ignore_index=True
    )
    points["usd_per_1000"] = usd_per_1000(points.seconds_per_item, usd_per_hour)
    sampled = np.where(points.strategy == "sampled mean", " N=" + points.n.astype(str), "")
    points["label"] = points.stage.str.replace("base-", "") + " " + points.strategy + sampled
    return with_pareto(points, "rmse", "usd_per_1000")


def rmse_seconds_per_item(predictions, gold, repeats: int = 100) -> float:
    """Measured seconds to compute an RMSE, per item (the compute of a reference-based metric)."""
    predictions, gold = np.asarray(predictions, dtype=float), np.asarray(gold, dtype=float)
    start = time.perf_counter()
    for _ in range(repeats):
        np.sqrt(np.mean((predictions - gold) ** 2))
    return (time.perf_counter() - start) / repeats / len(gold)


def evaluation_metrics(
    rmse_s: float,
    utility_s: float | None,
    judge_s: float,
    n: int,
    rating_usd_per_item: float,
    reference_usd_per_item: float,
) -> list[MetricCost]:
    """The evaluation options of section 4: two reference-based metrics and two reference-free checks.

    Args:
        rmse_s: seconds per item of an RMSE (:func:`rmse_seconds_per_item`).
        utility_s: seconds per chrF utility (None: unknown, counted as 0).
        judge_s: seconds per item of the model as a judge (exact grid scoring).
        n: samples whose pairwise agreement is the sample-agreement check.
        rating_usd_per_item: human ratings of one item (price per rating x ratings per item).
        reference_usd_per_item: one human-written reference answer.
    """
    pair_s = utility_s or 0.0
    return [
        MetricCost("RMSE vs human ratings (reference-based)", rmse_s, True, rating_usd_per_item),
        MetricCost("chrF vs a written reference (reference-based)", pair_s, True, reference_usd_per_item),
        MetricCost("135M model as judge, exact grid score (reference-free)", judge_s, False),
        MetricCost(f"sample agreement, chrF over N={n} samples (reference-free)", pair_s * n**2, False),
    ]


def label_budget(
    predictions,
    gold,
    accuracy: float,
    half_widths: Sequence[float],
    usd_per_rating: float,
    ratings_per_item: int,
    n_resamples: int,
    seed: int = 0,
) -> tuple[pd.DataFrame, object, pd.DataFrame]:
    """Labelled items (and their human-rating price) that 95% intervals of each half-width need.

    RMSE from bootstrap intervals on subsets of 1/8, 1/4, 1/2 and all items, fitted as
    ``scale / sqrt(n)``; accuracy from the normal approximation at the observed ``accuracy``.

    Returns:
        (one row per metric and half-width, the fitted scaling, the bootstrap half-widths per subset size).
    """
    n_items = len(gold)
    sizes = sorted({max(3, n_items // 8), max(3, n_items // 4), max(3, n_items // 2), n_items})
    scaling, by_size = bootstrap_scaling("rmse", predictions, gold, sizes, n_resamples=n_resamples, seed=seed)
    rows = []
    for half in half_widths:
        for metric, items in (
            ("RMSE (bootstrap fit)", scaling.items_for(half)),
            ("accuracy (normal approx.)", items_for_half_width(np.sqrt(accuracy * (1 - accuracy)), half)),
        ):
            rows.append(
                {
                    "metric": metric,
                    "half_width": half,
                    "items": items,
                    "human_budget_usd": human_rating_budget(usd_per_rating, ratings_per_item, items),
                }
            )
    return pd.DataFrame(rows), scaling, by_size


# The batched timings decoding_speed_summary reads; records of other workloads or modes may lack them.
_SUMMARY_TIMINGS = {"sampling": ("hf_generate", "prefill_once_sampler", "engine"), "scoring": ("engine_score",)}


def _has_summary_timings(record: dict) -> bool:
    batched = {part: record.get(part, {}).get("batched", {}) for part in _SUMMARY_TIMINGS}
    return all(name in batched[part] for part, names in _SUMMARY_TIMINGS.items() for name in names)


def decoding_speed_summary(record: dict | None = None) -> str:
    """A sentence on what N prompt copies cost against the engine, from a ``decoding_speed`` benchmark record
    (default: the latest in ``results/benchmarks.jsonl`` that timed the batched baselines).

    >>> decoding_speed_summary({"benchmark": "decoding_speed", "sampling": {"batched": {}}})[:29]
    'no decoding_speed record with'
    """
    if record is None:
        record = next((r for r in reversed(read_records("decoding_speed")) if _has_summary_timings(r)), None)
    if record is None or not _has_summary_timings(record):
        return (
            "no decoding_speed record with its batched baselines in results/benchmarks.jsonl: "
            "run benchmarks/decoding_speed.py"
        )
    timed = {**record["sampling"]["batched"], **record["scoring"]["batched"]}
    seconds = {name: 1 / result["items_per_s"] for name, result in timed.items()}
    machine = record_machine(record)
    return (
        f"decoding_speed record {record_time(record)} ({machine['device']}, {machine['torch_threads']} "
        f"thread(s), N={record['n']}, {record['mean_prompt_tokens']:.0f}-token prompts, "
        f"{record['items']} prompts per call): "
        f"HF generate with N prompt copies {seconds['hf_generate']:.2f} s/item, the prompt prefilled once and expanded "
        f"{seconds['prefill_once_sampler']:.2f} s/item, HFEngine.sample {seconds['engine']:.2f} s/item "
        f"({seconds['hf_generate'] / seconds['engine']:.0f}x faster than HF generate), "
        f"HFEngine.score {seconds['engine_score']:.2f} s/item"
    )
