"""``run_task`` through other backends of the Engine protocol makes the HF engine's decisions.

The same tiny model runs in process (:class:`HFEngine` through :class:`RealSampling`, the reference:
real decoding, as the other backends sample, not the in-process grid sampler's draws), behind the workbench's own
server on loopback (through its OpenAI-compatible ``/v1`` API with :class:`OpenAIEngine`) and on two
Ray actors (:class:`RayEngine`). What is compared, and why not everything bitwise:

* Samples and greedy answers are equal, text for text: every backend here runs the HF engine, which
  seeds each prompt's samples from the run seed, the prompt and the sample index only, and the
  server and the actors pass the seed through.
* Exact grid probabilities agree to 1e-5, not bit for bit. The OpenAI API scores by echo: the
  client sums the per-token log-probabilities of a plain forward pass over prompt + candidate +
  end of turn, where ``HFEngine.score`` runs one tree pass over all candidates (here they differ
  by up to 2.5e-7 in a probability). And a prompt's scores depend in their last bits on which
  prompts share its batch (its padded length, the matrix shapes the CPU kernels block by): on this
  model the reference in one batch of 8 and in two of 4 differs by up to 2.2e-7; Ray actors each
  score their own chunk of the prompts.
* So the decisions are equal: every rule that answers on the grid (greedy, the sample rules, the
  exact median, mode and quantile) gives the same answer item for item, since a different one
  would differ by a whole grid step; the exact mean agrees to the same 1e-5, and so do the
  comparison table's numbers; the pattern check reaches the same verdicts.

A random model never writes a rating, so the tiny model's layers are set to answer like one: a
digit 1-5, then the end of turn (``make_tiny_rating_model`` in ``scripts/make_tiny_model.py``).
Torch runs on one thread in this module, as the Ray actors do, so the results do not depend on the
machine's core count.
"""

import numpy as np
import pandas as pd
import pytest

from make_tiny_model import make_tiny_rating_model
from workbench.inference.engine import HFEngine
from workbench.inference.grid_sampler import RealSampling
from workbench.inference.models import load_model, load_tokenizer
from workbench.inference.openai_compat import OpenAIEngine
from workbench.inference.ray_engine import EngineSpec, RayEngine
from workbench.metric_aware.experiments import (
    RunConfig,
    TaskRun,
    comparison_table,
    pattern_check,
    run_task,
    strategy_predictions,
)
from workbench.serving import BackgroundServer, ServerConfig, create_app

CONFIG = RunConfig(split="test", limit=8, shots=1, k=6, seed=3)
TOLERANCE = 1e-5
KEY = "backend-key"


@pytest.fixture(scope="module")
def rater(tmp_path_factory):
    return make_tiny_rating_model(tmp_path_factory.mktemp("rater"))


@pytest.fixture(scope="module")
def reference(rater, sst5, one_torch_thread) -> TaskRun:
    # Real decoding, as a server or Ray actors sample (the in-process grid sampler draws other samples).
    run = run_task(RealSampling(HFEngine(load_model(rater, device="cpu"), progress=False)), sst5, CONFIG)
    # The comparison means something only if the answers parse and differ: a rating model, not noise.
    parsed = [value for row in run.samples for value in row if value is not None]
    assert len(parsed) > len(run.samples) * CONFIG.k / 2 and len(set(parsed)) >= 3
    assert run.outside_mass.max() < 0.5
    return run


def assert_same_decisions(run: TaskRun, reference: TaskRun) -> None:
    """The checks of the module docstring: equal samples and grid decisions, exact numbers to the tolerance."""
    assert (run.task, run.ids, run.greedy, run.samples, run.texts) == (
        reference.task,
        reference.ids,
        reference.greedy,
        reference.samples,
        reference.texts,
    )
    np.testing.assert_array_equal(run.gold, reference.gold)
    np.testing.assert_allclose(run.exact_probs, reference.exact_probs, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(run.outside_mass, reference.outside_mass, rtol=0, atol=TOLERANCE)
    ours, theirs = strategy_predictions(run, quantiles=(0.25,)), strategy_predictions(reference, quantiles=(0.25,))
    assert list(ours) == list(theirs)
    for name in ours:
        np.testing.assert_array_equal(ours[name].fallback, theirs[name].fallback, err_msg=name)
        if name == "exact mean":
            np.testing.assert_allclose(ours[name].predictions, theirs[name].predictions, rtol=0, atol=TOLERANCE)
        else:
            np.testing.assert_array_equal(ours[name].predictions, theirs[name].predictions, err_msg=name)
    tables = [comparison_table(r, n_resamples=200, quantiles=(0.25,)) for r in (run, reference)]
    numbers = [table[[c for c in table.columns if not c.endswith(" CI")]] for table in tables]
    pd.testing.assert_frame_equal(*numbers, check_exact=False, rtol=0, atol=TOLERANCE)
    for family in ("exact", "sampled"):
        verdicts = [pattern_check(r, family, n_resamples=200)[["observed winner", "verdict"]] for r in (run, reference)]
        pd.testing.assert_frame_equal(*verdicts)


def test_run_task_through_the_openai_api_of_the_server_makes_the_same_decisions(rater, sst5, reference):
    lm = load_model(rater, device="cpu")
    app = create_app(HFEngine(lm, progress=False), KEY, ServerConfig(max_prompts=32, max_total_tokens=1024))
    with BackgroundServer(app) as server:
        with OpenAIEngine(f"{server.url}/v1", api_key=KEY, tokenizer=load_tokenizer(rater)) as client:
            run = run_task(client, sst5, CONFIG)  # the engine's own tokenizer formats the prompts
        with OpenAIEngine(f"{server.url}/v1", api_key=KEY) as bare:
            with pytest.raises(ValueError, match="OpenAIEngine carries no tokenizer"):
                run_task(bare, sst5, CONFIG)
    assert run.fingerprint["backend"] == "openai-compatible"
    assert run.fingerprint["weights"]["weights_sha256"] == reference.fingerprint["weights_sha256"]
    assert_same_decisions(run, reference)


def test_run_task_through_ray_actors_makes_the_same_decisions(rater, sst5, reference, ray_cluster):
    with RayEngine(EngineSpec(model=rater, device="cpu"), workers=2, disk_cache=False) as engine:
        run = run_task(engine, sst5, CONFIG, tokenizer=load_tokenizer(rater))  # Ray actors carry no tokenizer
    assert run.fingerprint == reference.fingerprint
    assert_same_decisions(run, reference)
