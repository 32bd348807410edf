"""Cost models: price arithmetic, table errors, roofline properties, break-even, Pareto, sample sizes."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from workbench.cost import (
    CostTableError,
    Efficiency,
    Hardware,
    Measurement,
    MetricCost,
    ModelShape,
    Roofline,
    api_price,
    break_even,
    calibrate,
    ci_half_width,
    evaluation_cost_table,
    fit_bootstrap_scaling,
    get_hardware,
    greedy_cost,
    grid_cost,
    human_rating_budget,
    items_for_half_width,
    load_api_prices,
    load_hardware,
    mbr_cost,
    measure_cpu,
    metric_usd_per_1000,
    pareto_front,
    pareto_mask,
    sampling_cost,
    self_hosted_usd_per_1m_tokens,
    self_hosted_usd_per_request,
)
from workbench.cost.roofline import SMOLLM2_135M

HEADER = "provider,model,input_usd_per_1m,output_usd_per_1m,price_date,source_url,note\n"

# SmolLM2-135M by hand: per block, q and o are 576 x 576, k and v 576 x 192 (3 KV heads of 64),
# the gated MLP three 576 x 1536 matrices, and two norms of 576.
BLOCK = 2 * 576 * 576 + 2 * 576 * 192 + 3 * 576 * 1536 + 2 * 576
VOCAB_MATRIX = 49152 * 576


@pytest.fixture
def smollm_h100():
    return Roofline(ModelShape.from_config(SMOLLM2_135M, dtype="bf16"), get_hardware("h100-sxm"))


# ---------------------------------------------------------------- prices


def test_packaged_prices_are_complete():
    prices = load_api_prices()
    assert len(prices) >= 8
    assert all(
        p.source_url.startswith("https://") and p.input_usd_per_1m > 0 and p.output_usd_per_1m > 0 for p in prices
    )
    assert {"gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet", "gemini-1.5-flash"} <= {p.model for p in prices}


def test_price_arithmetic_by_hand(tmp_path):
    # Own table, so that editing the packaged prices never breaks this test.
    path = tmp_path / "prices.csv"
    path.write_text(
        HEADER + "Acme,mid,2.50,10.00,2025-01-01,https://acme.test,\nAcme,big,3,15,2025-01,https://acme.test,\n"
    )
    mid = api_price("mid", path)  # 2.50 in, 10.00 out per 1M tokens
    assert mid.cost(1000, 500) == pytest.approx(0.0025 + 0.005)
    assert mid.cost_per_1000(1000, 500) == pytest.approx(7.5)
    big = api_price("ACME/Big", path)  # case-insensitive provider/model
    assert big.cost_per_1000(2000, 300) == pytest.approx(1000 * (2000 * 3 + 300 * 15) / 1e6)
    np.testing.assert_allclose(big.cost([1e6, 0], [0, 1e6]), [3.0, 15.0])


def test_packaged_lookup():
    price = api_price("OpenAI/gpt-4o-mini")
    assert (price.provider, price.model) == ("OpenAI", "gpt-4o-mini")
    assert price.cost(1e6, 1e6) == pytest.approx(price.input_usd_per_1m + price.output_usd_per_1m)


def test_own_price_table_and_lookup_errors(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text(
        "# my prices\n"
        + HEADER
        + "Acme,big,1,2,2025-01-01,https://acme.test,\nOther,big,3,4,2025-02,https://other.test,\n"
    )
    assert api_price("Acme/big", path).cost(1e6, 1e6) == pytest.approx(3.0)
    with pytest.raises(KeyError, match="ambiguous"):
        api_price("big", path)
    with pytest.raises(KeyError, match="Acme/big"):
        api_price("small", path)


@pytest.mark.parametrize(
    "row, complaint",
    [
        ("Acme,m,one,2,2025-01-01,https://a.test,", "input_usd_per_1m"),
        ("Acme,m,1,-2,2025-01-01,https://a.test,", ">= 0"),
        ("Acme,m,1,2,01/02/2025,https://a.test,", "price_date"),
        ("Acme,,1,2,2025-01-01,https://a.test,", "'model' is empty"),
        ("Acme,m,1,2,2025-01-01", "5 fields"),
    ],
)
def test_malformed_price_rows_name_file_and_line(tmp_path, row, complaint):
    path = tmp_path / "bad.csv"
    path.write_text("# comment\n" + HEADER + "Acme,ok,1,2,2025-01-01,https://a.test,\n\n" + row + "\n")
    with pytest.raises(CostTableError) as error:
        load_api_prices(path)
    assert "bad.csv, line 5" in str(error.value) and complaint in str(error.value)


def test_missing_column_is_named(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("provider,model,input_usd_per_1m,price_date,source_url\n")
    with pytest.raises(CostTableError, match="line 1.*output_usd_per_1m"):
        load_api_prices(path)


# ---------------------------------------------------------------- hardware


def test_hardware_table_and_incomplete_rows(tmp_path):
    table = load_hardware()
    assert {"h100-sxm", "h200", "a100-80gb", "l4", "a10g"} <= set(table) and "this-cpu" not in table
    assert table["a100-80gb"].ridge_point("bf16") == pytest.approx(312e12 / 2039e9)
    assert get_hardware("l4", usd_per_hour=0.5).usd_per_hour == 0.5
    with pytest.raises(KeyError, match="this-cpu"):
        get_hardware("tpu")
    path = tmp_path / "hw.csv"
    path.write_text("name,bf16_tflops,fp32_tflops,bandwidth_gb_s\ngpu,100,,500\n")
    with pytest.raises(CostTableError, match="hw.csv, line 2.*fp32_tflops"):
        load_hardware(path)


def test_measure_cpu_gives_positive_peaks():
    cpu = measure_cpu(matmul_size=128, copy_mib=8, repeats=1)
    assert cpu.name == "this-cpu" and cpu.fp32_tflops > 0 and cpu.bf16_tflops > 0 and cpu.bandwidth_gb_s > 0


# ---------------------------------------------------------------- roofline


def test_shape_from_config_by_hand():
    shape = ModelShape.from_config(SMOLLM2_135M, dtype="fp32")
    assert shape.params == 30 * BLOCK + VOCAB_MATRIX + 576 == 134_515_008
    assert shape.weight_bytes == 4 * (30 * BLOCK + VOCAB_MATRIX + 576)
    assert shape.kv_bytes_per_token == 2 * 30 * 3 * 64 * 4


@pytest.mark.parametrize("bias, tied", [(False, True), (True, False)])
def test_shape_matches_a_real_llama(bias, tied):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=100,
        attention_bias=bias,
        tie_word_embeddings=tied,
    )
    model = LlamaForCausalLM(config)
    assert ModelShape.from_config(config).params == sum(p.numel() for p in model.parameters())
    assert ModelShape.from_model(model).dtype == "fp32"


def test_decode_grows_with_kv_and_batch_when_memory_bound(smollm_h100):
    batches, kv = np.array([1, 2, 8, 32]), np.array([0, 128, 512, 2048])
    times = smollm_h100.decode_step_time(batches[:, None], kv[None, :])
    assert (np.diff(times, axis=0) > 0).all() and (np.diff(times, axis=1) > 0).all()
    # Memory-bound: the time is the bytes (weights + KV cache) over the bandwidth.
    bytes_moved = 2 * (30 * BLOCK + VOCAB_MATRIX + 576) + batches[:, None] * (kv[None, :] + 1) * 2 * 30 * 3 * 64 * 2
    np.testing.assert_allclose(times, bytes_moved / 3350e9)


def test_prefill_flops_by_hand_and_linear_in_tokens(smollm_h100):
    tokens = np.array([1024, 2048, 4096])
    flops = 2 * tokens * 30 * BLOCK + 2 * VOCAB_MATRIX + 4 * 30 * 9 * 64 * tokens * (tokens + 1) / 2
    np.testing.assert_allclose(smollm_h100.prefill_time(1, tokens), flops / 989e12)  # compute-bound
    no_attention = replace(smollm_h100, shape=replace(smollm_h100.shape, n_heads=0, lm_head_params=0))
    times = no_attention.prefill_time(3, tokens)
    np.testing.assert_allclose(times / tokens, times[0] / tokens[0])
    np.testing.assert_allclose(smollm_h100.prefill_time(4, 2048), 4 * smollm_h100.prefill_time(1, 2048))


def test_crossover_batch_closed_form(smollm_h100):
    efficient = replace(smollm_h100, efficiency=Efficiency(compute=0.6, memory=0.8))
    ridge = 0.6 * 989e12 / (0.8 * 3350e9)  # achieved FLOP per byte
    weights = 2 * (30 * BLOCK + VOCAB_MATRIX + 576)
    for kv in (0, 16):
        flops_per_row = 2 * (30 * BLOCK + VOCAB_MATRIX) + 4 * 30 * 9 * 64 * (kv + 1)
        kv_per_row = 2 * 30 * 3 * 64 * 2 * (kv + 1)
        intensity, kv_intensity = flops_per_row / weights, flops_per_row / kv_per_row
        expected = (ridge / intensity) / (1 - ridge / kv_intensity)  # = ridge / intensity when no KV
        assert efficient.crossover_batch(kv) == pytest.approx(expected)
        compute_s, memory_s = efficient.compute_and_memory_time(np.array([0.99, 1.01]) * expected, 1, kv)
        assert memory_s[0] > compute_s[0] and compute_s[1] > memory_s[1]
    assert efficient.crossover_batch(4096) == math.inf  # the KV cache outgrows the FLOPs


def test_without_overlap_times_add(smollm_h100):
    compute_s, memory_s = smollm_h100.compute_and_memory_time(8, 1, 300)
    assert replace(smollm_h100, overlap=False).decode_step_time(8, 300) == pytest.approx(compute_s + memory_s)
    assert smollm_h100.decode_step_time(8, 300) == pytest.approx(max(compute_s, memory_s))


def test_generate_time_is_prefill_plus_decode_steps(smollm_h100):
    roof = replace(smollm_h100, efficiency=Efficiency(0.5, 0.7, 1e-4), kv_passes=3)
    steps = sum(roof.decode_step_time(8, 100 + i) for i in range(9))
    assert roof.generate_time(100, 10, batch=8) == pytest.approx(roof.prefill_time(8, 100) + steps)
    assert roof.generate_time(100, 10, batch=8, prefill_batch=1) == pytest.approx(roof.prefill_time(1, 100) + steps)


@pytest.mark.parametrize("overlap", [True, False])
def test_calibrate_recovers_known_efficiencies(overlap):
    cpu = Hardware("cpu", bf16_tflops=0.5, fp32_tflops=0.1, bandwidth_gb_s=10)
    truth = Roofline(
        ModelShape.from_config(SMOLLM2_135M), cpu, Efficiency(0.4, 0.7, 0.003), kv_passes=3, overlap=overlap
    )
    points = [Measurement.prefill(b, n, 0) for b in (1, 4) for n in (64, 256)] + [
        Measurement.decode(b, n, 0) for b in (1, 16) for n in (64, 512)
    ]
    points = [replace(p, seconds=float(t)) for p, t in zip(points, truth.predict(points), strict=True)]
    start = replace(truth, efficiency=Efficiency())
    fitted = calibrate(start, points).efficiency
    assert (fitted.compute, fitted.memory, fitted.overhead_s) == pytest.approx((0.4, 0.7, 0.003), rel=1e-3)
    assert calibrate(start, points, fit_overhead=False).efficiency.overhead_s == 0


def test_calibrate_recovers_the_weight_passes_of_batched_steps():
    """A CPU whose batched kernels pack the weights: a one-row decode step reads them once, a batched one more."""
    cpu = Hardware("cpu", bf16_tflops=0.5, fp32_tflops=0.1, bandwidth_gb_s=10)
    truth = Roofline(
        ModelShape.from_config(SMOLLM2_135M), cpu, Efficiency(0.4, 0.7, 0.003), 3, False, batched_weight_passes=2.5
    )
    assert truth.decode_step_time(2, 64) > 2 * truth.decode_step_time(1, 64) - 0.003  # two rows: 2.5x the weights
    points = [Measurement.prefill(b, n, 0) for b in (1, 4) for n in (64, 256)] + [
        Measurement.decode(b, n, 0) for b in (1, 2, 16) for n in (64, 512)
    ]
    points = [replace(p, seconds=float(t)) for p, t in zip(points, truth.predict(points), strict=True)]
    start = replace(truth, efficiency=Efficiency(), batched_weight_passes=1.0)
    fitted = calibrate(start, points, fit_weight_passes=True)
    assert fitted.batched_weight_passes == pytest.approx(2.5, rel=1e-3)
    assert (fitted.efficiency.compute, fitted.efficiency.memory) == pytest.approx((0.4, 0.7), rel=1e-3)
    assert calibrate(start, points).batched_weight_passes == 1.0  # not fitted unless asked


# ---------------------------------------------------------------- deployment


def test_self_hosted_cost_by_hand():
    assert self_hosted_usd_per_request(2.0, 4.0, 0.25) == pytest.approx(2.0 / 3600 / 1.0)
    assert self_hosted_usd_per_1m_tokens(3.6, 100.0) == pytest.approx(1e6 * 0.001 / 100)
    with pytest.raises(ValueError):
        self_hosted_usd_per_request(2.0, 4.0, 0)


def test_break_even_curves_cross_at_the_volume():
    result = break_even(
        api_usd_per_request=0.003, usd_per_hour=2.0, requests_per_s=1.0, utilisation=0.5, variable_usd_per_request=0.001
    )
    assert result.volume == pytest.approx(2.0 * 730 / 0.002)
    at = break_even(0.003, 2.0, 1.0, 0.5, 0.001, volumes=result.volume * np.array([0.9, 1.0, 1.1]))
    assert at.api_usd[1] == pytest.approx(at.self_hosted_usd[1])
    assert at.api_usd[0] < at.self_hosted_usd[0] and at.api_usd[2] > at.self_hosted_usd[2]
    # Default curve: from 0 to 3x the volume; machines added past each capacity (0.5 req/s * 730 h).
    assert result.volumes[0] == 0 and result.volumes[-1] == pytest.approx(3 * result.volume)
    assert result.machines[-1] == math.ceil(3 * result.volume / (0.5 * 3600 * 730))
    # One full machine still costs more than the API would for its requests: no break-even.
    assert break_even(0.003, 2.0, requests_per_s=0.1).volume == math.inf
    assert break_even(0.001, 2.0, 1.0, variable_usd_per_request=0.002).volume == math.inf


def test_metric_aware_costs(smollm_h100):
    roof = replace(smollm_h100, efficiency=Efficiency(0.5, 0.7, 1e-4))
    greedy = greedy_cost(roof, 500, 20)
    assert sampling_cost(roof, 500, 20, n=1).total_s == pytest.approx(greedy.total_s)
    shared, naive = sampling_cost(roof, 500, 20, n=16), sampling_cost(roof, 500, 20, n=16, shared_prefill=False)
    assert naive.model_s - shared.model_s == pytest.approx(roof.prefill_time(16, 500) - roof.prefill_time(1, 500))
    mbr = mbr_cost(roof, 500, 20, n=16, seconds_per_utility=1e-4)
    assert mbr.utility_s == pytest.approx(256 * 1e-4) and mbr.model_s == shared.model_s
    assert mbr.relative_to(greedy) == pytest.approx((shared.model_s + 0.0256) / greedy.model_s)
    grid = grid_cost(roof, 500, candidates=5, candidate_tokens=2)
    assert grid.model_s == pytest.approx(roof.prefill_time(1, 500) + roof.forward_time(5, 2, 500, 2))
    assert grid.usd(3.6) == pytest.approx(grid.total_s * 0.001)


def test_pareto_mask_against_brute_force():
    rng = np.random.default_rng(0)
    for size in (1, 2, 7, 60, 300):
        quality = rng.integers(0, 8, size).astype(float)  # small integer grids make ties
        cost = rng.integers(0, 8, size).astype(float)
        quality[rng.random(size) < 0.05] = np.nan
        brute = np.array(
            [
                np.isfinite(quality[i])
                and not any(
                    quality[j] >= quality[i] and cost[j] <= cost[i] and (quality[j] > quality[i] or cost[j] < cost[i])
                    for j in range(size)
                )
                for i in range(size)
            ]
        )
        np.testing.assert_array_equal(pareto_mask(quality, cost), brute)


def test_pareto_front_table():
    table = pd.DataFrame(
        {"config": list("abcde"), "accuracy": [0.8, 0.9, 0.7, 0.9, 0.95], "usd": [2.0, 3.0, 2.5, 3.0, 9.0]}
    )
    front = pareto_front(table, "accuracy", "usd")
    assert front["config"].tolist() == ["a", "b", "d", "e"]


# ---------------------------------------------------------------- evaluation


def test_evaluation_costs_by_hand():
    assert metric_usd_per_1000(0.2, 1.8) == pytest.approx(1000 * 0.2 * 1.8 / 3600)
    bleu = MetricCost("bleu", 0.001, reference_based=True, reference_usd_per_item=0.4)
    judge = MetricCost("judge", 0.5)
    assert bleu.usd_per_1000(3.6) == pytest.approx(0.001 + 400)
    table = evaluation_cost_table([bleu, judge], usd_per_hour=3.6)
    assert table["metric"].tolist() == ["judge", "bleu"] and table["total_usd_per_1000"].tolist() == pytest.approx(
        [0.5, 400.001]
    )
    assert human_rating_budget(0.3, 3, 1000) == pytest.approx(900)


def test_sample_size_planner_against_simulation():
    std, target = 2.0, 0.1
    n = items_for_half_width(std, target)
    assert n == math.ceil((1.959964 * std / target) ** 2) == 1537
    assert ci_half_width(std, n) <= target < ci_half_width(std, n - 1)
    rng = np.random.default_rng(1)
    data = rng.normal(5.0, std, size=(4000, n))
    half_widths = 1.959964 * data.std(axis=1, ddof=1) / np.sqrt(n)
    covered = np.abs(data.mean(axis=1) - 5.0) <= half_widths
    assert half_widths.mean() == pytest.approx(target, rel=0.01)
    assert covered.mean() == pytest.approx(0.95, abs=0.01)


def test_bootstrap_scaling_fit():
    exact = fit_bootstrap_scaling([100, 400, 1600], [0.2, 0.1, 0.05])
    assert (exact.scale, exact.exponent) == pytest.approx((2.0, -0.5))
    assert exact.items_for(0.01) == 40000 and exact.half_width(25) == pytest.approx(0.4)

    from workbench.metric_aware.bootstrap import bootstrap_ci

    rng = np.random.default_rng(2)
    correct = (rng.random(1600) < 0.7).astype(float)
    sizes = [100, 200, 400, 800, 1600]
    results = [bootstrap_ci("accuracy", correct[:n], np.ones(n), seed=n) for n in sizes]
    fitted = fit_bootstrap_scaling(sizes, results)
    assert fitted.exponent == pytest.approx(-0.5, abs=0.1)
    # The 1/sqrt(n) law from bootstraps agrees with the normal planner for sqrt(0.7 * 0.3).
    assert fitted.items_for(0.02) == pytest.approx(items_for_half_width(math.sqrt(0.21), 0.02), rel=0.15)
