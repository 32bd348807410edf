"""The exact grid sampler draws what the engine's real decoding draws (issue 17).

* the trie arithmetic on random distributions over a small vocabulary, against enumeration;
* a tiny model that answers a digit: the off-grid conditional at the root and one level down
  against plain forward passes, fast against real samples (also with top-k and top-p), seeds,
  fallbacks and the cache;
* the embedded model on SST-5 and STS-B prompts: fast against real samples, chi-square.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from scipy.stats import chi2

from make_tiny_model import make_tiny_rating_model
from workbench.inference.answer_trie import AnswerTrie, TrieDistribution, first_end
from workbench.inference.engine import HFEngine
from workbench.inference.gencache import GenerationCache
from workbench.inference.models import load_model
from workbench.inference.sample_check import combined, detectable_w, two_sample_chi_square
from workbench.inference.types import SamplingConfig
from workbench.metric_aware.experiments import RunConfig, run_task
from workbench.tasks import get_task

ALPHA = 1e-3  # every test below is seeded, so a pass is reproducible; the level bounds a false alarm


def _goodness_of_fit(counts: dict, expected: dict, n: int) -> float:
    """p-value of observed counts against expected probabilities (classes under 5 expected pooled)."""
    big = [k for k, p in expected.items() if p * n >= 5]
    observed = [counts.get(k, 0) for k in big] + [n - sum(counts.get(k, 0) for k in big)]
    wanted = [expected[k] * n for k in big] + [n * (1 - sum(expected[k] for k in big))]
    if wanted[-1] < 1e-9:
        observed, wanted = observed[:-1], wanted[:-1]
    statistic = sum((o - w) ** 2 / w for o, w in zip(observed, wanted))
    return float(chi2.sf(statistic, len(wanted) - 1))


# ------------------------------------------------------------------------------- trie arithmetic
def test_walks_follow_the_off_grid_conditional_exactly():
    """Every sequence over a 5-token vocabulary enumerated: the grid paths get their probability,
    each way off the trie its share of the off-grid mass, by formula and by 20,000 draws."""
    rng = np.random.default_rng(0)
    end = 0
    trie = AnswerTrie([[1, end], [2, 3, end], [2, 4, end]])
    probs = rng.dirichlet(np.ones(5), size=len(trie.nodes))
    exact = TrieDistribution(trie, probs)
    reach = {prefix: np.prod([probs[trie.nodes[prefix[:j]], t] for j, t in enumerate(prefix)]) for prefix in trie.nodes}
    exits = {
        prefix + (u,): reach[prefix] * probs[row, u]
        for prefix, row in trie.nodes.items()
        for u in range(5)
        if prefix + (u,) not in trie.nodes and prefix + (u,) not in trie.paths
    }
    grid = {path: reach[path[:-1]] * probs[trie.nodes[path[:-1]], path[-1]] for path in trie.paths}
    assert np.allclose(exact.grid_probs(), list(grid.values()))
    assert np.isclose(exact.off_grid_mass, sum(exits.values())) and np.isclose(
        sum(grid.values()) + sum(exits.values()), 1
    )
    for forced, p in exits.items():  # the walk's own probability of each exit, step by step
        steps = [
            exact.exit_weights(forced[:j])[forced[j]] / exact.off[trie.nodes[forced[:j]]] for j in range(len(forced))
        ]
        assert np.isclose(np.prod(steps), p / exact.off_grid_mass)
    n = 20_000
    draws = exact.draw(n, np.random.default_rng(1))
    counts = Counter(trie.paths[d] if isinstance(d, int) else d for d in draws)
    assert _goodness_of_fit(counts, {**grid, **exits}, n) > ALPHA


def test_first_end_checks_eos_before_stop_strings_over_a_window():
    decode = lambda ids: "".join(chr(96 + t) for t in ids)  # noqa: E731  1 -> "a", 2 -> "b"
    assert first_end([1, 2, 3], {9}, ("bc",), decode) == (2, "stop")
    assert first_end([1, 9, 2], {9}, ("a",), decode) == (0, "stop")
    assert first_end([1, 9, 2], {9}, (), decode) == (1, "eos")
    assert first_end([1, 2], {9}, (), decode) is None


# ------------------------------------------------------------------------------- a tiny rating model
@pytest.fixture(scope="module")
def rater(tmp_path_factory):
    lm = load_model(make_tiny_rating_model(tmp_path_factory.mktemp("rater") / "rater"), device="cpu")
    return HFEngine(lm, progress=False)


@pytest.fixture(scope="module")
def rater_prompts(rater):
    reviews = ["A gem.", "Two hours I will never get back."]
    return [
        rater.tokenizer.apply_chat_template(
            [{"role": "user", "content": r}], tokenize=False, add_generation_prompt=True
        )
        for r in reviews
    ]


GRID = ["1", "2", "3"]  # "4", "5" and anything else are off the grid


def _plain_probs(engine, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return torch.softmax(engine.model(input_ids=torch.tensor([ids])).logits[0, -1].double(), -1)


def test_off_grid_draws_follow_the_model_conditioned_on_leaving_the_grid(rater, rater_prompts):
    """Against plain forward passes: the first token of the off-grid draws (3000 draws) follows
    P(u | off) = p(u) for a token off the trie and p(digit) (1 - p(end | digit)) for a grid digit;
    one level down, the walk's weights after "1" are p(u | "1") for every u but the end of turn."""
    prompt, n = rater_prompts[0], 3000
    ids = rater.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    digits = [rater.tokenizer.convert_tokens_to_ids(d) for d in GRID]
    first = _plain_probs(rater, ids)
    after = {t: _plain_probs(rater, ids + [t]) for t in digits}
    off_first = first.clone()
    for t in digits:
        off_first[t] *= 1 - after[t][rater.end_of_turn]
    off_mass = float(off_first.sum())
    drawn = rater.sample_grid([prompt], n, GRID, SamplingConfig(max_new_tokens=3, seed=3))
    assert drawn.fallbacks == [None]  # drawn from the trie, not decoded for real
    assert np.isclose(drawn.score.outside_mass[0], off_mass, atol=1e-3)  # float32 kernels vs a plain pass
    off = [ids_ for text, ids_ in zip(drawn.samples[0].texts, drawn.samples[0].token_ids) if text not in GRID]
    assert 0.4 * n < len(off) < 0.8 * n  # about off_mass * n: this prompt's off-grid mass is near 0.6
    expected = {int(t): float(p) / off_mass for t, p in enumerate(off_first) if p / off_mass > 1e-4}
    assert _goodness_of_fit(Counter(s[0] for s in off), expected, len(off)) > ALPHA
    tree = rater._answer_tree([ids], GRID)
    exact = TrieDistribution(tree.tries[0], torch.softmax(tree.logits(0).double(), -1).numpy())
    one = (digits[0],)
    walked = exact.exit_weights(one) / exact.off[tree.tries[0].nodes[one]]
    conditional = after[digits[0]].clone()
    conditional[rater.end_of_turn] = 0
    assert np.abs(walked - (conditional / conditional.sum()).numpy()).sum() < 1e-3


@pytest.mark.parametrize(
    "settings", [{}, {"temperature": 0.7, "top_k": 4}, {"top_p": 0.8}], ids=["T1", "T0.7-topk4", "top_p0.8"]
)
def test_fast_and_real_samples_agree_on_the_tiny_model(rater, rater_prompts, settings):
    config = SamplingConfig(max_new_tokens=3, seed=1, **settings)
    n = 2000
    drawn = rater.sample_grid(rater_prompts, n, GRID, config)
    fast, real = drawn.samples, rater.sample(rater_prompts, n, config)
    assert drawn.fallbacks == [None, None]
    tests = [two_sample_chi_square(a.texts, b.texts) for a, b in zip(fast, real)]
    assert all(t.df >= 2 for t in tests) and combined(tests)[2] > ALPHA
    assert {len(s.token_ids[i]) == len(s.token_logprobs[i]) for s in fast for i in range(n)} == {True}


def test_seeded_reproducible_and_the_score_is_score(rater, rater_prompts):
    config = SamplingConfig(max_new_tokens=3, seed=5)
    once, again = (rater.sample_grid(rater_prompts, 64, GRID, config) for _ in range(2))
    assert once.fallbacks == [None, None]
    assert [s.token_ids for s in once.samples] == [s.token_ids for s in again.samples]
    other = rater.sample_grid(rater_prompts, 64, GRID, SamplingConfig(max_new_tokens=3, seed=6))
    assert [s.texts for s in other.samples] != [s.texts for s in once.samples]
    alone = rater.sample_grid(rater_prompts[1:], 64, GRID, config)  # the batch does not change a prompt's draws
    assert alone.samples[0].token_ids == once.samples[1].token_ids
    assert np.array_equal(once.score.logprobs, rater.score(rater_prompts, GRID).logprobs)


def test_settings_where_it_is_not_exact_decode_for_real(rater, rater_prompts):
    """A stop string inside a grid answer, an answer longer than the budget, or greedy decoding:
    the engine's own samples."""
    for config in (
        SamplingConfig(max_new_tokens=3, stop=("2",), seed=2),
        SamplingConfig(max_new_tokens=1, seed=2),
        SamplingConfig(temperature=0.0, max_new_tokens=3),
    ):
        real = rater.sample(rater_prompts, 16, config)
        if config.temperature == 0:
            assert [s.texts for s in real] == [s.texts for s in rater.sample(rater_prompts, 16, config)]
            continue
        fast = rater.sample_grid(rater_prompts, 16, GRID, config)
        assert None not in fast.fallbacks and [s.token_ids for s in fast.samples] == [s.token_ids for s in real]


def test_grid_samples_are_cached_apart_from_real_samples(rater, rater_prompts, tmp_path, monkeypatch):
    engine = HFEngine(rater.lm, cache=GenerationCache(tmp_path, rater.fingerprint), progress=False)
    config = SamplingConfig(max_new_tokens=3, seed=0)
    fast = engine.sample_grid(rater_prompts, 32, GRID, config)
    real = engine.sample(rater_prompts, 32, config)
    assert fast.fallbacks == [None, None]
    assert [s.token_ids for s in fast.samples] != [s.token_ids for s in real]  # other draws, same distribution
    assert {p.name for p in engine.cache.folder.glob("*.jsonl")} == {"grid_sample.jsonl", "sample.jsonl"}
    monkeypatch.setattr(engine, "_answer_tree", lambda *a: pytest.fail("recomputed a cached grid sample"))
    cached = engine.sample_grid(rater_prompts, 32, GRID, config)
    assert [s.token_ids for s in cached.samples] == [s.token_ids for s in fast.samples]
    assert np.array_equal(cached.score.logprobs, fast.score.logprobs)


def test_run_task_draws_grid_tasks_from_the_grid(rater):
    run = run_task(rater, get_task("sst5"), RunConfig(limit=3, shots=0, k=8, greedy=False))
    assert run.sampler.startswith("grid v") and len(run.samples[0]) == 8
    assert np.allclose(run.exact_probs.sum(axis=1), 1)


# ------------------------------------------------------------------------------- the embedded model
def test_fast_sampler_matches_real_decoding_on_the_embedded_model(lm):
    """SST-5 (10-shot) and STS-B (5-shot) prompts, 512 samples each way per prompt: no chi-square
    test rejects. Power: 4 x 1024 answers; benchmarks/grid_sampling.py runs the larger check."""
    engine, n, tests = HFEngine(lm, progress=False), 512, []
    for name, shots in (("sst5", 10), ("stsb", 5)):
        task = get_task(name)
        prompts = task.prompts(task.examples("test", limit=2, seed=0), lm.tokenizer, task.fewshot(shots, seed=0))
        config = SamplingConfig(max_new_tokens=task.max_new_tokens, seed=0)
        drawn = engine.sample_grid(prompts, n, task.candidates, config)
        fast, real = drawn.samples, engine.sample(prompts, n, config)
        assert drawn.fallbacks == [None, None]
        tests += [two_sample_chi_square(a.texts, b.texts) for a, b in zip(fast, real)]
    statistic, df, p = combined(tests)
    assert df >= 8 and p > ALPHA and min(t.p_value for t in tests) > ALPHA / len(tests)
    assert detectable_w(2 * n, tests[0].df) < 0.2  # each prompt's test detects a small-to-medium effect


def test_enumeration_helper_is_honest():
    """The goodness-of-fit helper rejects a wrong distribution (so the tests above can fail)."""
    rng = np.random.default_rng(0)
    counts = Counter(rng.choice(3, size=3000, p=[0.5, 0.3, 0.2]).tolist())
    assert _goodness_of_fit(counts, {0: 0.5, 1: 0.3, 2: 0.2}, 3000) > ALPHA
    assert _goodness_of_fit(counts, {0: 0.45, 1: 0.35, 2: 0.2}, 3000) < ALPHA
