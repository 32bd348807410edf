import numpy as np
import pytest
import torch

from workbench.inference.engine import HFEngine
from workbench.inference.gencache import GenerationCache
from workbench.inference.types import SamplingConfig


@pytest.fixture
def engine(lm):
    return HFEngine(lm, progress=False)


def brute_force_logprob(lm, prompt: str, answer_ids: list[int]) -> float:
    """log P(answer | prompt) from one plain forward pass over the whole sequence, no cache."""
    prompt_ids = lm.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt_ids + answer_ids])
    with torch.no_grad():
        logprobs = torch.log_softmax(lm.model(input_ids=ids).logits[0].float(), dim=-1)
    positions = range(len(prompt_ids) - 1, len(prompt_ids) - 1 + len(answer_ids))
    return float(sum(logprobs[p, t] for p, t in zip(positions, answer_ids, strict=True)))


def test_score_matches_brute_force_and_is_batch_invariant(lm, engine, sst5_prompts):
    candidates = ["1", "3", "4.5", "ten"]
    batched = engine.score(sst5_prompts, candidates)
    assert batched.logprobs.shape == (3, 4) and batched.probs.shape == (3, 4)
    np.testing.assert_allclose(batched.probs.sum(axis=1), 1.0)
    end = lm.tokenizer.eos_token_id
    for row, prompt in enumerate(sst5_prompts):
        for k, candidate in enumerate(candidates):
            ids = lm.tokenizer(candidate, add_special_tokens=False)["input_ids"] + [end]
            assert batched.logprobs[row, k] == pytest.approx(brute_force_logprob(lm, prompt, ids), abs=2e-3)
        alone = HFEngine(lm, progress=False, share_prefix=False).score([prompt], candidates)
        np.testing.assert_allclose(alone.logprobs[0], batched.logprobs[row], atol=2e-3)
    full = engine.score(sst5_prompts[:1], [str(i) for i in range(1, 6)])
    assert 0 <= full.outside_mass[0] < 1


def test_greedy_matches_hf_generate(lm, engine, sst5):
    prompts = sst5.prompts(sst5.examples("dev", limit=3, seed=5), lm.tokenizer, sst5.fewshot(2))
    prompts.append(
        lm.tokenizer.apply_chat_template(
            [{"role": "user", "content": "Name three colours."}], tokenize=False, add_generation_prompt=True
        )
    )
    ours = engine.greedy(prompts, max_new_tokens=12)
    for prompt, text in zip(prompts, ours, strict=True):
        inputs = lm.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        out = lm.model.generate(**inputs, do_sample=False, max_new_tokens=12, pad_token_id=lm.tokenizer.pad_token_id)
        expected = lm.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        assert text == expected


def test_same_seed_same_samples(engine, sst5_prompts):
    config = SamplingConfig(temperature=0.9, top_p=0.95, max_new_tokens=6, seed=7)
    first = engine.sample(sst5_prompts, 16, config)
    again = HFEngine(engine.lm, progress=False).sample(sst5_prompts, 16, config)
    assert [s.texts for s in first] == [s.texts for s in again]
    assert [s.token_logprobs for s in first] == [s.token_logprobs for s in again]
    other = engine.sample(sst5_prompts, 16, SamplingConfig(temperature=0.9, top_p=0.95, max_new_tokens=6, seed=8))
    assert [s.texts for s in first] != [s.texts for s in other]
    # A prompt's samples do not depend on the other prompts in its batch.
    assert engine.sample(sst5_prompts[1:2], 16, config)[0].texts == first[1].texts


def test_sample_structure_and_logprobs(lm, engine, sst5_prompts):
    result = engine.sample(sst5_prompts[:1], 8, SamplingConfig(max_new_tokens=5, seed=1))[0]
    assert len(result.texts) == len(result.token_ids) == len(result.token_logprobs) == 8
    for ids, logprobs, reason in zip(result.token_ids, result.token_logprobs, result.finish_reasons, strict=True):
        assert len(ids) == len(logprobs) <= 5 and all(lp <= 0 for lp in logprobs)
        assert reason == ("eos" if ids[-1] == lm.tokenizer.eos_token_id else "length")
        assert brute_force_logprob(lm, sst5_prompts[0], ids) == pytest.approx(sum(logprobs), abs=2e-3)


def test_sampled_ratings_follow_the_exact_distribution(engine, sst5, sst5_prompts):
    exact = engine.score(sst5_prompts, sst5.candidates)
    samples = engine.sample(sst5_prompts, 512, SamplingConfig(max_new_tokens=4, seed=0))
    for row, result in enumerate(samples):
        counts = np.array([sum(t == c for t in result.texts) for c in sst5.candidates], dtype=float)
        tv = 0.5 * np.abs(counts / counts.sum() - exact.probs[row]).sum()
        assert tv < 0.1
        assert abs((512 - counts.sum()) / 512 - exact.outside_mass[row]) < 0.08


def test_temperature_and_top_k_shape_the_distribution(engine, sst5_prompts):
    greedy = engine.greedy(sst5_prompts[:1], max_new_tokens=4)[0]
    cold = engine.sample(sst5_prompts[:1], 32, SamplingConfig(temperature=0.05, max_new_tokens=4))[0]
    assert set(cold.texts) == {greedy}
    top1 = engine.sample(sst5_prompts[:1], 32, SamplingConfig(top_k=1, max_new_tokens=4))[0]
    assert set(top1.texts) == {greedy}
    grid = ["1", "2", "3", "4", "5"]
    base = engine.score(sst5_prompts[:1], grid)
    hot = engine.score(sst5_prompts[:1], grid, temperature=3.0)
    assert hot.outside_mass[0] > base.outside_mass[0]  # a hot softmax spreads mass over the vocabulary
    if greedy in grid:
        cold = engine.score(sst5_prompts[:1], grid, temperature=0.05)
        assert grid[int(cold.probs[0].argmax())] == greedy and cold.probs[0].max() > 0.9


def test_stop_strings_cut_the_text(lm, engine):
    prompt = lm.tokenizer.apply_chat_template(
        [{"role": "user", "content": "Count from 1 to 20, separated by commas."}],
        tokenize=False,
        add_generation_prompt=True,
    )
    free = engine.greedy([prompt], max_new_tokens=30)[0]
    assert "\n3" in free
    stopped = engine.sample([prompt], 1, SamplingConfig(temperature=0, max_new_tokens=30, stop=("\n3", "never")))[0]
    assert stopped.texts[0] == free.split("\n3")[0] and stopped.finish_reasons == ["stop"]
    assert len(stopped.token_ids[0]) < len(lm.tokenizer(free)["input_ids"])  # decoding really stopped


def test_cache_makes_reruns_free_and_resumes(lm, tmp_path, sst5_prompts, monkeypatch):
    cache = GenerationCache(tmp_path, lm.fingerprint)
    engine = HFEngine(lm, cache=cache, batch_size=1, progress=False)
    config = SamplingConfig(max_new_tokens=4, seed=3)
    calls = []
    original = engine._sample_batch

    def interrupted(*args):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(1)
        return original(*args)

    monkeypatch.setattr(engine, "_sample_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        engine.sample(sst5_prompts, 4, config)
    assert len(GenerationCache(tmp_path, lm.fingerprint)) == 2  # two batches were kept
    calls.clear()
    resumed = HFEngine(lm, cache=GenerationCache(tmp_path, lm.fingerprint), batch_size=1, progress=False)
    monkeypatch.setattr(resumed, "_sample_batch", lambda *a: calls.append(1) or original(*a))
    full = resumed.sample(sst5_prompts, 4, config)
    assert len(calls) == 1  # only the prompt that was lost is computed
    assert [s.texts for s in full] == [s.texts for s in HFEngine(lm, progress=False).sample(sst5_prompts, 4, config)]
    calls.clear()
    resumed.sample(sst5_prompts, 4, config)
    assert calls == []  # a rerun costs nothing


def test_long_answers_are_exact_and_seeded(lm, engine):
    """Long free-text answers (tree, hand-over to rows, rows finishing at different steps): every
    token's log-probability matches a plain forward pass, and the samples depend on the seed only."""
    system = "You are a helpful assistant. Answer in one or two short sentences, then stop."
    prompts = [
        lm.tokenizer.apply_chat_template(
            [{"role": "system", "content": system}, {"role": "user", "content": q}],
            tokenize=False,
            add_generation_prompt=True,
        )
        for q in ("Name three colours.", "What is the capital of France, and why is it famous?")
    ]
    config = SamplingConfig(temperature=1.0, max_new_tokens=40, seed=11)
    results = engine.sample(prompts, 8, config)
    lengths = set()
    for prompt, result in zip(prompts, results, strict=True):
        for ids, logprobs in zip(result.token_ids, result.token_logprobs, strict=True):
            lengths.add(len(ids))
            assert brute_force_logprob(lm, prompt, ids) == pytest.approx(sum(logprobs), abs=2e-3)
            assert logprobs[-1] == pytest.approx(
                brute_force_logprob(lm, prompt, ids) - brute_force_logprob(lm, prompt, ids[:-1]), abs=1e-3
            )
    assert len(lengths) >= 3  # rows ended at different steps
    assert [r.token_ids for r in HFEngine(lm, progress=False).sample(prompts, 8, config)] == [
        r.token_ids for r in results
    ]
    alone = HFEngine(lm, progress=False).sample(prompts[1:], 8, config)[0]  # other batch, other padding: same samples
    assert alone.token_ids == results[1].token_ids
    assert np.allclose(np.concatenate(alone.token_logprobs), np.concatenate(results[1].token_logprobs), atol=1e-4)


def test_tiny_temperatures_are_greedy_never_nan(engine, sst5, sst5_prompts):
    greedy = engine.sample(sst5_prompts[:1], 1, SamplingConfig(temperature=0, max_new_tokens=4))[0]
    for temperature in (1e-45, 1e-300):
        cold = engine.sample(sst5_prompts[:1], 4, SamplingConfig(temperature=temperature, max_new_tokens=4))[0]
        assert cold.token_ids == greedy.token_ids * 4 and np.isfinite(np.concatenate(cold.token_logprobs)).all()
        scored = engine.score(sst5_prompts[:1], sst5.candidates, temperature=temperature)
        assert np.isfinite(scored.probs).all() and scored.probs.sum() == pytest.approx(1.0)
        if greedy.texts[0] in sst5.candidates:
            assert scored.probs[0, sst5.candidates.index(greedy.texts[0])] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="temperature"):
        engine.score(sst5_prompts[:1], sst5.candidates, temperature=1e-320)
    for bad in (float("inf"), float("nan"), 0.0, -1.0):
        with pytest.raises(ValueError, match="temperature"):
            engine.score(sst5_prompts[:1], sst5.candidates, temperature=bad)


def test_invalid_settings():
    with pytest.raises(ValueError):
        SamplingConfig(top_p=0)
    with pytest.raises(ValueError):
        SamplingConfig(max_new_tokens=0)
    for bad in (
        dict(temperature=float("inf")),
        dict(temperature=float("nan")),
        dict(temperature=1e-320),
        dict(top_p=float("nan")),
        dict(temperature=True),
        dict(max_new_tokens=5.0),
        dict(top_k="3"),
        dict(stop=("",)),
    ):
        with pytest.raises(ValueError):
            SamplingConfig(**bad)
    assert SamplingConfig(temperature=1) == SamplingConfig(temperature=1.0)  # one cache key for both spellings


def test_the_nucleus_from_candidates_is_the_nucleus_of_the_whole_sorted_row(monkeypatch):
    """top-p searches the most likely tokens first; on peaked rows (no sort) and flat ones (the whole-row sort)
    it keeps what sorting every row keeps: drop a token once the mass before it reaches p."""
    from workbench.inference import logits as logits_module

    generator = torch.Generator().manual_seed(0)
    rows = torch.randn(64, 2000, generator=generator) * torch.linspace(0.05, 12, 64)[:, None]  # flat ... peaked
    sort_calls = []
    sort = torch.sort
    monkeypatch.setattr(torch, "sort", lambda *args, **kwargs: sort_calls.append(1) or sort(*args, **kwargs))
    for top_p in (0.1, 0.8, 0.95):
        ordered, order = sort(torch.softmax(rows, -1), dim=-1, descending=True)
        expected = torch.zeros_like(rows, dtype=torch.bool).scatter(-1, order, (ordered.cumsum(-1) - ordered) < top_p)
        for candidates in (8, 256, 4000):
            monkeypatch.setattr(logits_module, "NUCLEUS_CANDIDATES", candidates)
            sort_calls.clear()
            assert torch.equal(logits_module._nucleus(rows, top_p), expected)
            if candidates != 256:  # 8: the flattest rows need the whole-row sort; 4000: the whole row is the candidates
                assert sort_calls == ([1] if candidates == 8 else [])
            sort_calls.clear()
            assert torch.equal(logits_module._nucleus(rows[-4:], top_p), expected[-4:])
            if candidates == 256:
                assert sort_calls == []  # peaked rows: the candidates hold the nucleus
