"""RayEngine on a local Ray instance with 2 workers and a tiny random Llama: sharded results equal
a single-process run with the same seeds and thread count, land in the same generation cache, and
survive a worker killed mid-run."""

import threading
import time

import numpy as np
import pytest
import torch

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install -e .[ray]")

from make_tiny_model import make_tiny_model  # noqa: E402
from workbench.inference.engine import HFEngine  # noqa: E402
from workbench.inference.gencache import GenerationCache  # noqa: E402
from workbench.inference.models import load_model  # noqa: E402
from workbench.inference.protocol import Engine as EngineProtocol  # noqa: E402
from workbench.inference.ray_engine import EngineSpec, RayEngine  # noqa: E402
from workbench.inference.types import SamplingConfig  # noqa: E402
from workbench.paths import cache_dir  # noqa: E402

PROMPTS = [
    f"<|im_start|>user\nQuestion number {i}: what is {i} plus {2 * i}?<|im_end|>\n<|im_start|>assistant\n"
    for i in range(10)
]


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


@pytest.fixture
def worker_threads():
    """The single process runs with the workers' thread count (1, their ``cpus_per_worker``): sampled
    tokens are bitwise equal only at equal thread counts (issue 22: with 2 threads here, this
    test failed when run alone and passed in the suite, where an earlier test had left 1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def assert_same_samples(sharded: list, single: list) -> None:
    """Same tokens and texts; log-probabilities equal up to summation order (the batches differ)."""
    assert len(sharded) == len(single)
    for theirs, mine in zip(sharded, single, strict=True):
        assert (theirs.texts, theirs.token_ids, theirs.finish_reasons) == (
            mine.texts,
            mine.token_ids,
            mine.finish_reasons,
        )
        np.testing.assert_allclose(
            np.concatenate(theirs.token_logprobs), np.concatenate(mine.token_logprobs), atol=1e-5
        )


def test_sharded_samples_and_scores_equal_a_single_process_run(sharded, tiny, worker_threads):
    single = HFEngine(load_model(tiny, device="cpu"), cache=None, progress=False)
    config = SamplingConfig(temperature=1.0, max_new_tokens=5, seed=7)
    assert_same_samples(sharded.sample(PROMPTS, 4, config), single.sample(PROMPTS, 4, config))
    assert sharded.greedy(PROMPTS, max_new_tokens=4) == single.greedy(PROMPTS, max_new_tokens=4)
    candidates = ["1", "2", "12", "five"]
    np.testing.assert_allclose(
        sharded.score(PROMPTS, candidates, 0.8).logprobs, single.score(PROMPTS, candidates, 0.8).logprobs, atol=1e-5
    )


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


def test_a_killed_worker_loses_at_most_one_batch_and_a_rerun_computes_nothing(
    tiny, ray_cluster, cache_root, worker_threads
):
    """Issue 22: kill one of two workers while it decodes. Its chunk goes to the other worker,
    which reads the batches it had finished from the cache: the results equal an undisturbed
    single-process run, at most one batch is computed twice, and a rerun computes nothing."""
    prompts = [f"<|im_start|>user\nTell me about the number {i}.<|im_end|>\n<|im_start|>assistant\n" for i in range(24)]
    config = SamplingConfig(temperature=1.0, max_new_tokens=48, seed=2024)  # a seed no other test caches
    batch_size = 2
    spec = EngineSpec(model=tiny, device="cpu", threads=1, options={"batch_size": batch_size})
    # cpus_per_worker=0: the module's two-worker engine holds the cluster's 2 CPUs.
    with RayEngine(spec, workers=2, cpus_per_worker=0, chunk_size=4) as engine:
        writes = lambda: ray.get(engine._cache_actor.writes.remote())  # noqa: E731
        engine.sample(prompts[:4], 1, SamplingConfig(max_new_tokens=2, seed=1))  # warm-up: one-off costs not timed
        start = time.perf_counter()  # the same work undisturbed (another seed), for the seconds the kill costs
        engine.sample(prompts, 4, SamplingConfig(temperature=1.0, max_new_tokens=48, seed=2025))
        undisturbed_s = time.perf_counter() - start
        baseline_writes = writes()
        victim = engine.actors[0]

        def kill_after_some_batches():
            while writes() < baseline_writes + 4:
                time.sleep(0.01)
            ray.kill(victim)

        killer = threading.Thread(target=kill_after_some_batches)
        killer.start()
        start = time.perf_counter()
        drawn = engine.sample(prompts, 4, config)
        seconds = time.perf_counter() - start
        killer.join()
        assert engine.lost_workers == 1 and engine.workers == 1
        recomputed = writes() - baseline_writes - len(prompts)
        assert 0 <= recomputed <= batch_size
        # Bitwise equal to one process computing the same chunks in the same batches with one thread.
        # (With other batches, 48 tokens of a random model's flat distributions can flip a token.)
        single = HFEngine(load_model(tiny, device="cpu"), cache=None, batch_size=batch_size, progress=False)
        chunks = [prompts[start : start + 4] for start in range(0, len(prompts), 4)]
        assert drawn == [s for chunk in chunks for s in single.sample(chunk, 4, config)]
        before = writes()
        assert engine.sample(prompts, 4, config) == drawn and writes() == before  # the rerun is all cache hits
    print(f"killed run {seconds:.2f} s, undisturbed {undisturbed_s:.2f} s, prompts recomputed: {recomputed}")


def test_when_every_worker_dies_the_error_says_so(tiny, ray_cluster, cache_root):
    spec = EngineSpec(model=tiny, device="cpu", threads=1)
    with RayEngine(spec, workers=1, cpus_per_worker=0) as engine:
        ray.kill(engine.actors[0])
        with pytest.raises(RuntimeError, match="all Ray workers died .*generation cache: a rerun resumes"):
            engine.sample(PROMPTS, 2, SamplingConfig(max_new_tokens=3, seed=99))
