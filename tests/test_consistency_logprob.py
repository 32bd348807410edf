"""The log-probability test (scores, ratios, simulated power and A/A) and the three-way decisions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from workbench.consistency.equivalence import decide, plan_margin, tost_p_value, tost_power
from workbench.consistency.generate import Variant
from workbench.consistency.logprob import (
    LogprobConfig,
    RatioCube,
    _loglik,
    ratio_cube,
    response_logliks,
    scorable,
    simulate_ratios,
)
from workbench.consistency.power import one_sided_paired_t
from workbench.inference.engine import HFEngine, answer_tokens


def test_scores_equal_the_engines_own_log_probabilities(lm):
    """At temperature 1 with no nucleus, log p(response) is the sum of the sampled tokens' model log-probs
    (the end-of-turn token included when the sample stopped by itself)."""
    variant = Variant("v", temperature=1.0, max_new_tokens=10)
    queries = ["Say hi.", "What is 2+3? Answer with the number only."]
    prompts = [variant.prompt(q, lm.tokenizer) for q in queries]
    sets = HFEngine(lm, progress=False).sample(prompts, 3, variant.sampling_config(3))
    rows, expected = [], []
    for query, prompt, samples in zip(queries, prompts, sets):
        prompt_ids = lm.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        for text, ids, logprobs, reason in zip(
            samples.texts, samples.token_ids, samples.token_logprobs, samples.finish_reasons
        ):
            own = ids if reason == "length" else ids[:-1]  # a sample that stopped ends with its end-of-turn token
            if answer_tokens(lm.tokenizer, prompt_ids, text) == own:
                rows.append({"query": query, "response": text})
                expected.append(sum(logprobs))
    assert len(rows) >= 3, "too few samples whose text tokenises back to the sampled tokens"
    got = response_logliks(lm, [variant], pd.DataFrame(rows))[0]
    np.testing.assert_allclose(got, expected, atol=1e-3)


def test_the_decoding_rules_temperature_nucleus_and_length():
    logits = torch.log(torch.tensor([[0.6, 0.3, 0.1, 1e-9]] * 4))  # token 3 stands for end-of-turn
    plain = Variant("p", temperature=1.0, max_new_tokens=3)
    # two tokens, then the stage stops by itself: the end-of-turn term is added
    expected = np.log(0.6) + np.log(0.3) + np.log(1e-9)
    assert _loglik(logits, [0, 1], plain, [3], floor=-30.0) == pytest.approx(max(expected, -30.0 + np.log(0.18)))
    # at the limit: cut there, no end-of-turn term
    assert _loglik(logits, [0, 1, 0], plain, [3], floor=-30.0) == pytest.approx(np.log(0.6 * 0.3 * 0.6))
    # past the limit: the extra token counts as the floor
    assert _loglik(logits[:4], [0, 1, 0], Variant("s", temperature=1.0, max_new_tokens=2), [3], floor=-30.0) == (
        pytest.approx(np.log(0.6 * 0.3) - 30.0)
    )
    # temperature 0.5 squares and renormalises the probabilities
    hot = Variant("t", temperature=0.5, max_new_tokens=1)
    squared = np.array([0.6, 0.3, 0.1]) ** 2
    assert _loglik(logits, [1], hot, [3], floor=-30.0) == pytest.approx(np.log(squared[1] / squared.sum()), abs=1e-6)
    # top-p 0.8 keeps tokens 0 and 1 only: token 2 is at the floor, token 1 is renormalised
    nucleus = Variant("n", temperature=1.0, top_p=0.8, max_new_tokens=1)
    assert _loglik(logits, [2], nucleus, [3], floor=-30.0) == -30.0
    assert _loglik(logits, [1], nucleus, [3], floor=-30.0) == pytest.approx(np.log(0.3 / 0.9), abs=1e-6)


def test_only_local_sampling_stages_score():
    assert scorable(Variant("a"))
    assert not scorable(Variant("b", temperature=0.0))
    assert not scorable(Variant("c", backend="served"))


def _cube(shift: float, q: int = 60, k: int = 6, seed: int = 0) -> RatioCube:
    rng = np.random.default_rng(seed)
    query_effect = rng.normal(0, 1, (q, 1))  # queries differ, which the paired design removes
    fa = query_effect + rng.normal(shift, 1, (q, k))
    fb = query_effect + rng.normal(0, 1, (q, k))
    rerun = query_effect + rng.normal(shift, 1, (q, k))
    return RatioCube(tuple(range(q)), fa, fb, "A", "B", rerun)


def test_simulated_runs_hold_alpha_under_a_a_and_see_a_shift():
    first, second = simulate_ratios(_cube(0.5), 40, 3, 2000, seed=1)
    assert (one_sided_paired_t(first, second)[1] < 0.05).mean() >= 0.95
    first, second = simulate_ratios(_cube(0.5), 40, 3, 2000, seed=1, aa=True)  # A against A: no change to see
    assert 0.02 <= (one_sided_paired_t(first, second)[1] < 0.05).mean() <= 0.08
    first, second = simulate_ratios(_cube(0.5), 10, 1, 50, seed=1)  # one sample per query works too
    assert first.shape == (50, 10)
    with pytest.raises(ValueError, match="more responses"):
        simulate_ratios(_cube(0.5, k=2), 10, 2, 5, aa=True)  # 2 + 2 samples from the rerun-pooled 4: fine
        simulate_ratios(RatioCube((0, 1), np.zeros((2, 2)), np.zeros((2, 2)), "A", "B"), 2, 2, 5, aa=True)


def test_ratio_cube_from_a_long_table():
    rows = []
    for responses in ("A", "B"):
        for q in ("q1", "q2"):
            for seed in (0, 1):
                for scorer, value in (("A", -1.0), ("B", -2.0 if responses == "A" else -0.5)):
                    rows.append(dict(query_id=q, seed=seed, responses=responses, scorer=scorer, loglik=value))
    cube = ratio_cube(pd.DataFrame(rows), "A", "B")
    assert cube.query_ids == ("q1", "q2")
    np.testing.assert_allclose(cube.fa, 1.0)
    np.testing.assert_allclose(cube.fb, -0.5)


def test_three_way_decisions_and_the_margin_planner():
    rng = np.random.default_rng(0)
    assert decide(rng.normal(0.8, 1, 30), 0.3).decision == "different"
    assert decide(rng.normal(0, 1, 400), 0.3).decision == "equivalent"
    assert decide(rng.normal(-0.8, 1, 30), 0.3).decision == "inconclusive"  # far below: neither test passes
    plan = plan_margin(0.3)
    assert (plan.n_difference, plan.n_equivalence, plan.n_queries) == (71, 96, 96)
    # the predicted TOST power matches simulation at the planned size
    n = plan.n_equivalence
    draws = rng.normal(0, 1, (4000, n))
    t = draws.mean(axis=1) / (draws.std(axis=1, ddof=1) / np.sqrt(n))
    simulated = (tost_p_value(t, n, 0.3) < 0.05).mean()
    assert abs(simulated - tost_power(n, 0.3)) < 0.03
    assert tost_power(n, 0.3) >= 0.8
    # at the margin itself TOST holds its level
    at_margin = rng.normal(0.3, 1, (4000, n))
    t = at_margin.mean(axis=1) / (at_margin.std(axis=1, ddof=1) / np.sqrt(n))
    assert (tost_p_value(t, n, 0.3) < 0.05).mean() <= 0.065


def test_scores_are_the_same_with_and_without_the_shared_prompt_cache(lm, monkeypatch):
    """Models with an attention window score prompt + response in plain passes; both paths agree."""
    import workbench.inference.prompt_logprobs as prompt_logprobs

    variants = [Variant("v", temperature=0.7, max_new_tokens=6), Variant("w", temperature=1.0, top_p=0.8)]
    rows = pd.DataFrame(
        {"query": ["Say hi.", "Say hi.", "Name a colour."], "response": ["Hello there!", "", "Blue, like the sky"]}
    )
    shared = response_logliks(lm, variants, rows)
    monkeypatch.setattr(prompt_logprobs, "_has_sliding_window", lambda model: True)
    np.testing.assert_allclose(response_logliks(lm, variants, rows), shared, atol=2e-3)
    assert np.isfinite(shared).all() and (shared < 0).all()


def test_batches_of_similar_length_score_as_one_padded_batch(lm, monkeypatch):
    """Cutting a prompt's responses into batches of similar length changes no score beyond rounding, with the
    shared prompt cache and without it."""
    import workbench.inference.prompt_logprobs as prompt_logprobs

    variants = [Variant("v", temperature=0.7, max_new_tokens=12), Variant("w", temperature=1.0, top_p=0.8)]
    long = "Blue, like the sky on a clear summer afternoon over the sea"
    rows = pd.DataFrame({"query": ["Name a colour."] * 5, "response": ["Red", long, "", "Green.", long + " too"]})
    passes = []
    rows_after = prompt_logprobs.rows_after
    monkeypatch.setattr(prompt_logprobs, "rows_after", lambda *args: passes.append(len(args[3])) or rows_after(*args))
    for window in (False, True):
        monkeypatch.setattr(prompt_logprobs, "_has_sliding_window", lambda model, window=window: window)
        grouped = response_logliks(lm, variants, rows, LogprobConfig(pass_overhead=2))
        assert len(passes) > 1 and sum(passes) == len(rows)  # several batches, every response in one of them
        passes.clear()
        one_batch = response_logliks(lm, variants, rows, LogprobConfig(pass_overhead=10**9))
        assert passes == [len(rows)]
        passes.clear()
        np.testing.assert_allclose(grouped, one_batch, atol=2e-3)


def test_score_responses_batches_response_sets_per_view_and_caches(lm, monkeypatch, tmp_path):
    import workbench.consistency.logprob as logprob
    import workbench.lifecycle.stages as stages

    monkeypatch.setattr(stages, "load_stage", lambda *args, **kwargs: lm)
    variants = [Variant("A", temperature=0.7, max_new_tokens=8), Variant("B", temperature=1.0, max_new_tokens=8)]
    table = pd.DataFrame(
        {
            "query_id": ["q1", "q1", "q2", "q1", "q2"],
            "query": ["Say hi.", "Say hi.", "Name a colour.", "Say hi.", "Name a colour."],
            "stage": ["A", "A", "A", "B", "B"],
            "seed": [0, 1, 0, 0, 0],
            "response": ["Hello!", "Hi there.", "Blue.", "Hey", "Red, I think."],
            "variant_key": ["ka", "ka", "ka", "kb", "kb"],
        }
    )
    requests = [(r, s) for r in "AB" for s in "AB"]
    scores = logprob.score_responses(table, variants, requests, tmp_path, progress=False)
    direct = response_logliks(lm, variants, table)
    for (responses, scorer), group in scores.groupby(["responses", "scorer"]):
        expected = direct["AB".index(scorer), (table.stage == responses).to_numpy()]
        np.testing.assert_allclose(group.loglik, expected, atol=2e-3)
    assert len(list(tmp_path.glob("*.json"))) == 4
    monkeypatch.setattr(logprob, "response_logliks", lambda *a, **k: pytest.fail("cached scores were recomputed"))
    again = logprob.score_responses(table, variants, requests, tmp_path, progress=False)
    pd.testing.assert_frame_equal(
        again.sort_values(list(again.columns)).reset_index(drop=True),
        scores.sort_values(list(scores.columns)).reset_index(drop=True),
    )
