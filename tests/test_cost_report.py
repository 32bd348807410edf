"""Cost helpers: records, timing, cost tables, break-even, overhead, Pareto, plots."""

from __future__ import annotations

import json
from dataclasses import asdict

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from workbench.cost import ApiPrice, Efficiency, Hardware, ModelShape, Roofline, break_even  # noqa: E402
from workbench.cost.evaluation_cost import bootstrap_scaling  # noqa: E402
from workbench.cost.hosting import (  # noqa: E402
    HostingOption,
    api_cost_table,
    break_even_table,
    hosting_table,
    overhead_table,
    roofline_options,
    roofline_seconds_per_request,
)
from workbench.cost.plots import plot_api_vs_hosting, plot_cost_vs_samples, plot_pareto, plot_validation  # noqa: E402
from workbench.cost.records import latest_record, mbr_seconds_per_utility, record_points, record_roofline  # noqa: E402
from workbench.cost.roofline import SMOLLM2_135M  # noqa: E402
from workbench.cost.timing import time_methods, time_passes, validation_table  # noqa: E402
from workbench.cost.tradeoffs import quality_cost_points, with_pareto  # noqa: E402
from workbench.metric_aware.experiments import synthetic_run  # noqa: E402

SHAPE = ModelShape.from_config(SMOLLM2_135M)
MACHINE = Hardware("box", bf16_tflops=2.0, fp32_tflops=0.5, bandwidth_gb_s=20.0, usd_per_hour=1.0)
ROOFLINE = Roofline(SHAPE, MACHINE, Efficiency(0.5, 0.5, 0.01), kv_passes=3.0, overlap=False)
PRICE = ApiPrice("Acme", "acme-small", 1.0, 4.0, "2025-01-01", "https://acme.test")


def test_hosting_option_interpolates_on_log_n_and_refuses_to_extrapolate():
    option = HostingOption("box", 3.6, {1: 0.5, 4: 1.0, 16: 3.0})
    assert option.seconds(2) == pytest.approx(0.75) and option.seconds(8) == pytest.approx(2.0)
    assert option.usd_per_request(4, utilisation=0.5) == pytest.approx(0.002)
    with pytest.raises(ValueError, match="outside"):
        option.seconds(32)


def test_api_cost_table_bills_the_prompt_once_and_every_answer():
    table = api_cost_table(1000, 200, n=2, prices=[PRICE])
    assert table.loc[0, "usd_per_request"] == pytest.approx((1000 * 1.0 + 400 * 4.0) / 1e6)
    assert table.loc[0, "usd_per_1000"] == pytest.approx(2.6)
    assert list(api_cost_table(100, 2).api)[:1] == ["Google/gemini-1.5-flash"]  # cheapest first


def test_break_even_table_matches_break_even():
    apis = pd.DataFrame({"api": ["cheap", "dear"], "usd_per_request": [1e-9, 0.01]})
    option = HostingOption("box", 1.0, {1: 0.1})
    table = break_even_table(apis, [option]).set_index("api")
    assert table.loc["dear", "break_even_requests_per_month"] == pytest.approx(break_even(0.01, 1.0, 10.0).volume)
    assert table.loc["dear", "break_even_requests_per_month"] == pytest.approx(730 / 0.01)
    assert np.isinf(table.loc["cheap", "break_even_requests_per_month"])
    assert table.loc["dear", "capacity_requests_per_month"] == pytest.approx(10 * 3600 * 730)


def test_roofline_requests_share_prefill_and_batch():
    alone = roofline_seconds_per_request(ROOFLINE, 400, 2, n=64, rows=64)
    assert alone == pytest.approx(ROOFLINE.generate_time(400, 2, batch=64, prefill_batch=1))
    batched = roofline_seconds_per_request(ROOFLINE, 400, 2, n=1, rows=64)
    assert batched == pytest.approx(ROOFLINE.generate_time(400, 2, batch=64) / 64)
    options = roofline_options(
        SHAPE,
        Efficiency(0.5, 0.5, 0.0),
        400,
        2,
        ns=[1, 4],
        hardware={"box": MACHINE, "free": Hardware("free", 1, 1, 1)},
    )
    assert [o.name for o in options] == ["box (roofline)"]  # machines without a price are skipped
    assert hosting_table(options).loc[0, "requests_per_s"] == pytest.approx(1 / options[0].seconds(1))


def test_overhead_table_orders_the_methods():
    table = overhead_table(ROOFLINE, 400, 2, ns=[4, 16], candidates=5, seconds_per_utility=1e-4).set_index(
        ["method", "n"]
    )
    assert table.loc[("greedy", 1), "x_greedy"] == 1.0
    for n in (4, 16):
        assert (
            table.loc[("sample, N prompt copies", n), "total_s"] > table.loc[("sample, shared prefill", n), "total_s"]
        )
        assert table.loc[("MBR (+ N^2 utilities)", n), "utility_s"] == pytest.approx(n * n * 1e-4)


def test_records_rebuild_the_calibrated_roofline(tmp_path):
    timed = pd.DataFrame({"phase": ["prefill", "decode"], "batch": [1, 4], "tokens": [64, 256]})
    exact = validation_table(ROOFLINE, timed.assign(seconds=1.0))["predicted_s"].to_numpy()
    record = {
        "benchmark": "throughput_roofline",
        "timestamp": "2026-01-02T00:00:00+00:00",
        "threads": 1,
        "hardware": asdict(MACHINE),
        "kv_passes": 3.0,
        "statistic": "median",
        "models": {"sum": {"efficiency": asdict(ROOFLINE.efficiency)}},
        "points": [
            {"phase": p, "batch": b, "tokens": t, "seconds": [s, s * 2, s / 2], "fit": f}
            for (p, b, t), s, f in zip(timed.itertuples(index=False), exact, (True, False), strict=True)
        ],
    }
    path = tmp_path / "benchmarks.jsonl"
    older = {**record, "timestamp": "2026-01-01T00:00:00+00:00", "threads": 2}
    path.write_text(json.dumps(record) + "\n" + json.dumps(older) + "\n" + json.dumps({"benchmark": "other"}) + "\n")
    assert latest_record("throughput_roofline", path)["threads"] == 1
    assert latest_record("throughput_roofline", path, threads=2)["timestamp"].startswith("2026-01-01")
    assert latest_record("throughput_roofline", path, threads=8) is None
    points = record_points(record, record_roofline(record, SHAPE))
    assert points.rel_error.abs().max() < 1e-9  # medians are the exact predictions
    assert list(points.role) == ["fit", "held out"]


def test_mbr_seconds_per_utility():
    assert mbr_seconds_per_utility({"seconds": {"vectorised": 2.0, "loop": 8.0}, "items": 2, "n": 10}) == 0.01


def test_quality_cost_points_and_pareto():
    run = synthetic_run(items=200, k=16, seed=0)
    timing = pd.DataFrame(
        {
            "method": ["greedy", "sample", "sample", "exact"],
            "n": [1, 4, 16, 5],
            "seconds_per_item": [0.1, 0.2, 0.4, 0.15],
        }
    )
    points = quality_cost_points(run, timing, ns=[4, 16])
    assert list(points.strategy) == ["greedy", "sampled mean", "sampled mean", "exact mean"]
    assert list(points.seconds_per_item) == [0.1, 0.2, 0.4, 0.15]
    # Exact mean is Bayes-optimal for RMSE on a calibrated model, and cheaper than 4 or 16 samples.
    front = with_pareto(points, "rmse", "seconds_per_item")
    assert front.set_index(["strategy", "n"]).loc[("exact mean", 5), "pareto"]
    assert not front.set_index(["strategy", "n"]).loc[("sampled mean", 16), "pareto"]


def test_bootstrap_scaling_follows_one_over_sqrt_n():
    rng = np.random.default_rng(0)
    gold = rng.normal(size=4000)
    scaling, table = bootstrap_scaling(
        "mae", gold + rng.normal(size=4000), gold, sizes=[250, 1000, 4000], n_resamples=300
    )
    assert list(table["items"]) == [250, 1000, 4000]
    assert table.half_width.is_monotonic_decreasing
    assert -0.7 < scaling.exponent < -0.3


def test_plots_draw():
    table = validation_table(
        ROOFLINE,
        pd.DataFrame(
            {
                "phase": ["prefill", "decode"],
                "batch": [1, 4],
                "tokens": [64, 64],
                "seconds": [0.3, 0.05],
                "role": ["fit", "held out"],
            }
        ),
    )
    assert plot_validation(Figure().subplots(), table).get_xscale() == "log"
    points = with_pareto(
        pd.DataFrame(
            {"rmse": [1.0, 0.8, 0.9], "usd": [1.0, 2.0, 3.0], "stage": ["a", "a", "b"], "label": ["x", "y", "z"]}
        ),
        "rmse",
        "usd",
    )
    assert list(points.pareto) == [True, True, False]
    pareto_axes = plot_pareto(Figure().subplots(), points, "rmse", "usd")
    # One scatter per stage, at (cost, quality); the front joins the Pareto points in cost order and labels them.
    scattered = [collection.get_offsets().tolist() for collection in pareto_axes.collections]
    assert scattered == [[[1.0, 1.0], [2.0, 0.8]], [[3.0, 0.9]]]
    (front,) = [line for line in pareto_axes.get_lines() if line.get_label() == "Pareto front"]
    assert list(front.get_xdata()) == [1.0, 2.0] and list(front.get_ydata()) == [1.0, 0.8]
    assert [(text.get_text(), text.xy) for text in pareto_axes.texts] == [("x", (1.0, 1.0)), ("y", (2.0, 0.8))]
    legend = [text.get_text() for text in pareto_axes.get_legend().get_texts()]
    assert legend == ["a", "b", "Pareto front"]
    assert (pareto_axes.get_xscale(), pareto_axes.get_xlabel(), pareto_axes.get_ylabel()) == ("log", "usd", "rmse")
    option = HostingOption("box", 1.0, {1: 0.1, 4: 0.2})
    api_axes = plot_api_vs_hosting(Figure().subplots(), PRICE, 400, 2, option, n=4, volume=1e6)
    assert len(api_axes.get_lines()) >= 2 and "N=4" in api_axes.get_title()
    samples_axes = plot_cost_vs_samples(Figure().subplots(), PRICE, 400, 2, option, n=4)
    assert [list(line.get_xdata()) for line in samples_axes.get_lines()[:2]] == [[1, 4], [1, 4]]


def test_time_passes_on_a_tiny_model():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=100,
    )
    model = LlamaForCausalLM(config).eval()
    timed = time_passes(model, ModelShape.from_model(model), [("prefill", 2, 8), ("decode", 3, 16)], repeats=2)
    assert list(timed.columns) == ["phase", "batch", "tokens", "seconds", "best"]
    assert (timed.best > 0).all() and (timed.best <= timed.seconds).all()


def test_time_methods_times_every_method(lm, sst5, sst5_prompts):
    from workbench.inference.engine import HFEngine

    engine = HFEngine(lm, cache=None, progress=False)
    timing = time_methods(engine, sst5_prompts[:2], sst5.candidates, ns=[2], max_new_tokens=2, repeats=1)
    assert list(zip(timing.method, timing.n, strict=True)) == [("greedy", 1), ("sample", 2), ("exact", 5)]
    assert (timing.seconds_per_item > 0).all()
