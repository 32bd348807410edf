"""The notebook steps that moved into the package compute what the notebooks showed: small inputs, known answers."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from workbench.consistency.lifecycle import decision_summary  # noqa: E402
from workbench.cost import plots as cost_plots  # noqa: E402
from workbench.cost.evaluation_cost import BootstrapScaling  # noqa: E402
from workbench.cost.hosting import HostingOption  # noqa: E402
from workbench.cost.study import Assumptions  # noqa: E402
from workbench.cost.study_steps import (  # noqa: E402
    break_even_volumes,
    held_out_errors,
    label_budget,
    measured_multiples,
    quality_cost_front,
)
from workbench.inference.gencache import GenerationCache  # noqa: E402
from workbench.lifecycle.plots import dev_history_table, plot_dev_history  # noqa: E402
from workbench.metric_aware import inference_study  # noqa: E402
from workbench.metric_aware.baselines import Baselines  # noqa: E402
from workbench.metric_aware.experiments import synthetic_run  # noqa: E402
from workbench.serving.loadtest import LoadTestResult  # noqa: E402
from workbench.serving.monitoring import load_test_summary  # noqa: E402


def test_assumptions_come_from_the_upper_case_parameters():
    params = dict(
        MACHINE_USD_PER_HOUR=0.1,
        GPU_EFFICIENCY={"compute": 0.5, "memory": 0.6, "overhead_s": 0.005},
        GPU_ROWS=8,
        UTILISATION=0.5,
        HUMAN_USD_PER_RATING=0.2,
        RATINGS_PER_ITEM=3,
        REFERENCE_USD_PER_ITEM=1.0,
        OTHER=1,
    )
    assumed = Assumptions.from_parameters(params)
    assert assumed.label_usd_per_item == pytest.approx(0.6) and assumed.efficiency.compute == 0.5
    with pytest.raises(KeyError, match="GPU_ROWS"):
        Assumptions.from_parameters({k: v for k, v in params.items() if k != "GPU_ROWS"})


def test_measured_multiples_divide_by_greedy():
    timing = pd.DataFrame(
        {"method": ["greedy", "sample", "exact"], "n": [1, 8, 5], "seconds_per_item": [0.5, 2.0, 0.75]}
    )
    assert measured_multiples(timing).x_greedy.tolist() == [1.0, 4.0, 1.5]


def test_held_out_errors_ignore_the_fitted_passes():
    validation = pd.DataFrame(
        {"source": ["a"] * 3 + ["b"], "role": ["fit", "test", "test", "test"], "rel_error": [5.0, -0.1, 0.3, 0.2]}
    )
    assert held_out_errors(validation).round(6).to_dict() == {"a": 0.2, "b": 0.2}


def test_break_even_volumes_cover_every_api_option_and_n():
    option = HostingOption("box", 1.0, {1: 0.1, 8: 0.4})
    breaks = break_even_volumes(300, 2, [option], (1, 8), utilisation=0.5)
    assert set(breaks.n) == {1, 8} and set(breaks.hosting) == {"box"} and breaks.api.nunique() > 1
    assert np.allclose(breaks.break_even_millions_per_month, breaks.break_even_requests_per_month / 1e6)


def test_quality_cost_front_prices_each_point_and_marks_the_pareto_set():
    run = synthetic_run(items=200, k=8, seed=1)
    timing = pd.DataFrame(
        {
            "method": ["greedy", "sample", "sample", "exact"],
            "n": [1, 1, 8, 5],
            "seconds_per_item": [0.36, 0.36, 3.6, 0.72],
        }
    )
    front = quality_cost_front({"base-fp32": run}, {"base-fp32": timing}, [1, 8], usd_per_hour=1.0)
    assert front.label.tolist() == ["fp32 greedy", "fp32 sampled mean N=1", "fp32 sampled mean N=8", "fp32 exact mean"]
    assert front.usd_per_1000.round(6).tolist() == [0.1, 0.1, 1.0, 0.2]
    exact = front.set_index("strategy").loc["exact mean"]
    assert exact.pareto and exact.rmse < front.set_index("label").loc["fp32 sampled mean N=8"].rmse  # K=8 is noisier


def test_label_budget_needs_more_items_for_narrower_intervals_and_prices_them():
    rng = np.random.default_rng(0)
    gold = rng.integers(1, 6, 400).astype(float)
    predictions = gold + rng.normal(0, 1, 400)
    budget, _, by_size = label_budget(
        predictions, gold, 0.4, [0.2, 0.1], usd_per_rating=0.1, ratings_per_item=3, n_resamples=200, seed=0
    )
    rmse = budget[budget.metric.str.startswith("RMSE")].set_index("half_width")["items"]
    assert rmse[0.1] > rmse[0.2] and by_size["items"].tolist() == [50, 100, 200, 400]
    assert np.allclose(budget.human_budget_usd, budget["items"] * 0.3)
    assert 3.0 <= rmse[0.1] / rmse[0.2] <= 5.0  # the 1/sqrt(n) law: half the width, four times the items


def test_baselines_are_fitted_once_then_read_from_the_cache(tmp_path, monkeypatch):
    calls = []

    def fake_fit(train, test, grid, supervised):
        calls.append(len(train))
        values = np.arange(len(test), dtype=float)
        return Baselines({"prior mean": values}, {"prior mean": values.round()})

    monkeypatch.setattr(inference_study, "baseline_predictions", fake_fit)
    cache = GenerationCache(tmp_path, {"name": "baselines"})
    first, index = inference_study.cached_baselines("sst5", 20, 0, cache)
    again, _ = inference_study.cached_baselines("sst5", 20, 0, GenerationCache(tmp_path, {"name": "baselines"}))
    assert calls == [20] and np.array_equal(first.predictions["prior mean"], again.predictions["prior mean"])
    assert len(index) == len(first.predictions["prior mean"])
    inference_study.cached_baselines("sst5", 30, 0, cache)  # another training size is another key
    assert calls == [20, 30]


def test_the_summary_table_names_a_cached_model_relative_to_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    table = pd.DataFrame({"n": [3], "fallback": [0], "rmse": [0.5]}, index=pd.Index(["exact mean"], name="strategy"))
    names = {"base": "smollm2-135m-instruct", "finetuned": str(tmp_path / "finetuned" / "2ff4c5e17b38" / "model")}
    summary = inference_study.summary_table({("base", "sst5"): table, ("finetuned", "sst5"): table}, names, ("rmse",))
    assert summary.model_name.tolist() == ["smollm2-135m-instruct", "finetuned/2ff4c5e17b38/model"]


def test_decision_summary_names_the_best_method_per_change_and_the_false_alarm_ranges():
    decisions = pd.DataFrame(
        {
            "change": ["aa", "aa", "bf16", "bf16"],
            "description": ["A/A", "A/A", "bf16", "bf16"],
            "method": ["cosine", "logprob", "cosine", "logprob"],
            "decision": ["inconclusive", "equivalent", "inconclusive", "different"],
            "control": [True, True, False, False],
            "p_value": [0.5, 0.6, 0.2, 0.001],
            "power": [0.05, 0.04, 0.3, 0.95],
            "false_alarm": [0.05, 0.02, 0.06, 0.04],
            "stage_b_false_alarm": [0.04, 0.05, 0.08, float("nan")],
            "stage_b_aa_samples": [3, 3, 3, float("nan")],
        }
    )
    lines = decision_summary(decisions).splitlines()
    assert lines[0] == "* bf16: best **logprob**, power 0.95 (meets 0.8); decision different (p 0.001)"
    assert lines[1].startswith("* cosine: A/A false-alarm rates 0.050-0.060 over 2 comparisons; 100% inside")
    assert lines[1].endswith("each stage's own A/A (2 stages, halves of 3 samples) 0.040-0.080, 50% inside")
    assert "logprob: A/A false-alarm rates 0.020-0.040" in lines[2] and "50% inside" in lines[2]
    assert "own A/A (1 stages, halves of 3 samples) 0.050-0.050, 100% inside" in lines[2]


def test_load_test_summary_reports_latency_percentiles_in_ms():
    result = LoadTestResult(
        sent=4,
        concurrency=2,
        answered=4,
        rejected=0,
        lost=0,
        duplicated=0,
        mismatched=0,
        status_counts={"200": 4},
        wall_s=2.0,
        latencies_s=[0.1, 0.2, 0.3, 0.4],
        completion_tokens=8,
        time_limit_hit=False,
    )
    summary = load_test_summary({2: result})
    assert summary.loc[2, "p50 (ms)"] == pytest.approx(250.0) and summary.loc[2, "throughput (req/s)"] == pytest.approx(
        2.0
    )


def test_axes_in_plots_draw_what_they_are_given():
    figure, axes = plt.subplots(1, 4)
    history = dev_history_table([{"step": s, "scores": {"sst5": {"accuracy": 0.3, "spearman": 0.1}}} for s in (2, 4)])
    assert len(plot_dev_history(axes[0], history, kept_step=4).lines) == 3  # accuracy, Spearman, the kept step
    ranking = pd.Series({"a": 0.2, "b": 0.9})
    bars = cost_plots.plot_weighted_ranking(axes[1], ranking).patches
    assert [bar.get_facecolor()[:3] for bar in bars][-1] == matplotlib.colors.to_rgb("gold")
    table = pd.DataFrame(
        {
            "stage": ["s1", "s2"],
            "in_domain_set": "X",
            "out_of_domain_set": "Y",
            "metric": "rmse",
            "in_domain": [1.0, 2.0],
            "in_domain_low": [0.9, 1.8],
            "in_domain_high": [1.1, 2.2],
            "out_of_domain": [1.5, 2.5],
            "out_of_domain_low": [1.4, 2.4],
            "out_of_domain_high": [1.6, 2.6],
        }
    )
    ax = cost_plots.plot_generalization_drop(axes[2], table, "X")
    assert [round(bar.get_height(), 6) for bar in ax.patches] == [1.0, 2.0, 1.5, 2.5] and ax.get_title() == "X -> Y"
    half_widths = pd.DataFrame({"items": [10, 40], "half_width": [0.5, 0.25]})
    ax = cost_plots.plot_half_width_fit(axes[3], half_widths, BootstrapScaling(scale=1.58, exponent=-0.5), 160)
    assert ax.lines[1].get_xdata()[-1] == pytest.approx(160)
    plt.close(figure)
