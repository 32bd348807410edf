"""The regression-aware objective on a tiny random Llama: its log-probabilities equal Engine.score's,
and its gradient equals a finite difference."""

import numpy as np
import pytest
import torch
from test_finetune import make_tiny_model

from workbench.inference.engine import Engine
from workbench.inference.models import load_model
from workbench.lifecycle.finetune import FinetuneConfig, training_set
from workbench.lifecycle.regression_loss import candidate_tokens, grid_logprobs, grid_loss
from workbench.tasks import get_task


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    return load_model(make_tiny_model(tmp_path_factory.mktemp("tiny_rl")), device="cpu")


def _batch(lm, task_name, n=3):
    config = FinetuneConfig(base="unused", tasks=(task_name,), max_examples=n, seed=1)
    encoded = training_set(config, lm.tokenizer)
    task = get_task(task_name)
    prompts = [e.input_ids[: e.answer_start] for e in encoded]
    return task, encoded, prompts, candidate_tokens(lm.tokenizer, prompts[0], task.candidates)


@pytest.mark.parametrize("task_name", ["sst5", "stsb"])
@pytest.mark.parametrize("share_prefix", [True, False])
def test_grid_logprobs_equal_engine_score(tiny_lm, task_name, share_prefix):
    task, encoded, prompts, candidates = _batch(tiny_lm, task_name)
    with torch.no_grad():
        ours = grid_logprobs(tiny_lm.model, prompts, candidates, tiny_lm.tokenizer.pad_token_id, share_prefix=share_prefix)
    texts = [tiny_lm.tokenizer.decode(p) for p in prompts]
    reference = Engine(tiny_lm, cache=None, progress=False, share_prefix=False).score(texts, task.candidates)
    np.testing.assert_allclose(ours.double().numpy(), reference.logprobs, atol=2e-4)
    # the gold answer's tokens are one of the candidates (what the cross-entropy term reads)
    assert all(e.input_ids[e.answer_start :] in candidates for e in encoded)


def test_gradient_matches_a_finite_difference(tiny_lm):
    model = load_model(tiny_lm.model.name_or_path, device="cpu").model.double()
    task, encoded, prompts, candidates = _batch(tiny_lm, "stsb")
    grid = torch.tensor(task.grid, dtype=torch.float64)
    gold = torch.tensor([e.target for e in encoded], dtype=torch.float64)
    gold_index = torch.tensor([candidates.index(e.input_ids[e.answer_start :]) for e in encoded])
    pad = tiny_lm.tokenizer.pad_token_id

    def loss(weight: float = 1.0):
        return grid_loss(grid_logprobs(model, prompts, candidates, pad), grid, gold, gold_index, mse_weight=weight)[0]

    parameter = model.model.layers[1].mlp.down_proj.weight
    direction = torch.randn(parameter.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for weight in (1.0, 0.5):
        model.zero_grad()
        loss(weight).backward()
        analytic = float((parameter.grad * direction).sum())
        eps = 1e-3  # Llama's RMSNorm computes in float32 even in a float64 model: a tiny step would see its rounding
        with torch.no_grad():
            parameter += eps * direction
            up = float(loss(weight))
            parameter -= 2 * eps * direction
            down = float(loss(weight))
            parameter += eps * direction
        numeric = (up - down) / (2 * eps)
        assert analytic == pytest.approx(numeric, rel=2e-3)
        assert abs(analytic) > 1e-6  # the check is not vacuous
