"""RayEngine on a local Ray instance with 2 workers and a tiny random Llama: sharded results equal
a single-process run with the same seeds, and land in the same generation cache."""

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install -e .[ray]")

from workbench.inference.engine import HFEngine  # noqa: E402
from workbench.inference.types import SamplingConfig  # noqa: E402
from workbench.inference.gencache import GenerationCache  # noqa: E402
from workbench.inference.models import load_model  # noqa: E402
from workbench.inference.protocol import Engine as EngineProtocol  # noqa: E402
from workbench.inference.ray_engine import EngineSpec, RayEngine  # noqa: E402
from workbench.paths import cache_dir  # noqa: E402
from make_tiny_model import make_tiny_model  # noqa: E402

PROMPTS = [f"<|im_start|>user\nQuestion number {i}: what is {i} plus {2 * i}?<|im_end|>\n<|im_start|>assistant\n" for i in range(10)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny-llama"), "llama")


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory):
    import os

    root = tmp_path_factory.mktemp("cache")
    previous = os.environ.get("WORKBENCH_CACHE_DIR")
    os.environ["WORKBENCH_CACHE_DIR"] = str(root)
    yield root
    if previous is None:
        del os.environ["WORKBENCH_CACHE_DIR"]
    else:
        os.environ["WORKBENCH_CACHE_DIR"] = previous


@pytest.fixture(scope="module")
def sharded(tiny, ray_cluster, cache_root, one_torch_thread):
    with RayEngine(EngineSpec(model=tiny, device="cpu", options={"batch_size": 3}), workers=2, chunk_size=3) as engine:
        yield engine


def test_two_workers_on_the_local_instance(sharded, tiny):
    assert sharded.workers == 2 and isinstance(sharded, EngineProtocol)
    assert sharded.fingerprint == load_model(tiny, device="cpu").fingerprint


def test_sharded_samples_and_scores_equal_a_single_process_run(sharded, tiny):
    single = HFEngine(load_model(tiny, device="cpu"), cache=None, progress=False)
    config = SamplingConfig(temperature=1.0, max_new_tokens=5, seed=7)
    for theirs, mine in zip(sharded.sample(PROMPTS, 4, config), single.sample(PROMPTS, 4, config), strict=True):
        assert (theirs.texts, theirs.token_ids, theirs.finish_reasons) == (mine.texts, mine.token_ids, mine.finish_reasons)
        np.testing.assert_allclose(np.concatenate(theirs.token_logprobs), np.concatenate(mine.token_logprobs), atol=1e-5)
    assert sharded.greedy(PROMPTS, max_new_tokens=4) == single.greedy(PROMPTS, max_new_tokens=4)
    candidates = ["1", "2", "12", "five"]
    np.testing.assert_allclose(sharded.score(PROMPTS, candidates, 0.8).logprobs, single.score(PROMPTS, candidates, 0.8).logprobs, atol=1e-5)


def test_results_land_in_the_generation_cache_a_single_process_run_reads(sharded, tiny, cache_root, monkeypatch):
    config = SamplingConfig(temperature=0.9, max_new_tokens=4, seed=3)
    drawn = sharded.sample(PROMPTS, 3, config)
    scored = sharded.score(PROMPTS, ["1", "2"])
    lm = load_model(tiny, device="cpu")
    single = HFEngine(lm, cache=GenerationCache(cache_dir() / "generations", lm.fingerprint), progress=False)

    def no_compute(*args, **kwargs):
        raise AssertionError("a cached prompt was computed again")

    monkeypatch.setattr(single, "_sample_batch", no_compute)
    monkeypatch.setattr(single, "_score_batch", no_compute)
    assert single.sample(PROMPTS, 3, config) == drawn
    np.testing.assert_array_equal(single.score(PROMPTS, ["1", "2"]).logprobs, scored.logprobs)
    assert str(cache_root) in str(single.cache.folder)
