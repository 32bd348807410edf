"""VLLMEngine against the HF engine on the embedded model. Runs where vLLM and a CUDA GPU are
present (``pip install -e .[vllm]``); skipped with the reason everywhere else (CI has no GPU)."""

import numpy as np
import pytest
import torch

vllm = pytest.importorskip("vllm", reason="vLLM is not installed (pip install -e .[vllm] on a GPU machine)")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="vLLM needs a CUDA GPU")

from workbench.inference.engine import HFEngine  # noqa: E402
from workbench.inference.models import load_model  # noqa: E402
from workbench.inference.protocol import Engine as EngineProtocol  # noqa: E402
from workbench.inference.types import SamplingConfig  # noqa: E402
from workbench.inference.vllm_engine import VLLMEngine  # noqa: E402
from workbench.tasks import get_task  # noqa: E402


@pytest.fixture(scope="module")
def engines():
    hf = HFEngine(load_model(device="cuda", dtype="fp32"), cache=None, progress=False)
    fast = VLLMEngine(dtype="fp32", disk_cache=False, gpu_memory_utilization=0.3, max_model_len=2048)
    return hf, fast


@pytest.fixture(scope="module")
def prompts(engines):
    task = get_task("sst5")
    return task.prompts(task.examples("test", limit=4, seed=1), engines[0].tokenizer, task.fewshot(5, seed=0))


def test_vllm_engine_follows_the_protocol(engines):
    assert isinstance(engines[1], EngineProtocol) and engines[1].fingerprint["backend"] == "vllm"


def test_grid_scores_equal_the_hf_engine(engines, prompts):
    hf, fast = engines
    candidates = get_task("sst5").candidates
    np.testing.assert_allclose(
        fast.score(prompts, candidates).logprobs, hf.score(prompts, candidates).logprobs, atol=2e-3
    )
    with pytest.raises(ValueError, match="temperature 1 only"):
        fast.score(prompts, candidates, temperature=0.5)


def test_greedy_answers_equal_the_hf_engine(engines, prompts):
    hf, fast = engines
    assert fast.greedy(prompts, max_new_tokens=4) == hf.greedy(prompts, max_new_tokens=4)


def test_samples_follow_the_exact_distribution_and_are_seeded(engines, prompts):
    hf, fast = engines
    candidates = get_task("sst5").candidates
    config = SamplingConfig(max_new_tokens=4, seed=0)
    drawn = fast.sample(prompts, 512, config)
    assert [s.texts for s in fast.sample(prompts, 512, config)] == [s.texts for s in drawn]
    exact = hf.score(prompts, candidates)
    for sample_set, p, outside in zip(drawn, exact.probs, exact.outside_mass, strict=True):
        counts = np.array([sum(t == c for t in sample_set.texts) for c in candidates], dtype=float)
        assert abs(1 - counts.sum() / 512 - outside) < 0.08
        if counts.sum() >= 100:
            assert 0.5 * np.abs(counts / counts.sum() - p).sum() < 0.12
    ids, logprobs = drawn[0].token_ids[0], drawn[0].token_logprobs[0]
    assert len(ids) == len(logprobs) and all(lp <= 0 for lp in logprobs)
