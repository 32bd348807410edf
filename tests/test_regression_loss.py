"""The regression-aware objectives on a tiny random Llama: their log-probabilities equal HFEngine.score's,
and their gradients equal a finite difference; the soft (ordinal) target's properties."""

import numpy as np
import pytest
import torch

from make_tiny_model import make_tiny_model
from workbench.inference.engine import HFEngine
from workbench.inference.models import load_model
from workbench.lifecycle.finetune import FinetuneConfig
from workbench.lifecycle.finetune.encoding import training_set
from workbench.lifecycle.finetune.loss import ObjectiveLoss
from workbench.lifecycle.regression_loss import candidate_tokens, grid_logprobs, grid_loss, soft_targets
from workbench.tasks import get_task


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    return load_model(make_tiny_model(tmp_path_factory.mktemp("tiny_rl"), "llama"), device="cpu")


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
        ours = grid_logprobs(
            tiny_lm.model, prompts, candidates, tiny_lm.tokenizer.pad_token_id, share_prefix=share_prefix
        )
    texts = [tiny_lm.tokenizer.decode(p) for p in prompts]
    reference = HFEngine(tiny_lm, cache=None, progress=False, share_prefix=False).score(texts, task.candidates)
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

    def loss(weight: float, soft_sd: float | None):
        return grid_loss(
            grid_logprobs(model, prompts, candidates, pad), grid, gold, gold_index, mse_weight=weight, soft_sd=soft_sd
        )[0]

    parameter = model.model.layers[1].mlp.down_proj.weight
    direction = torch.randn(parameter.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    # mse, mix, soft (ordinal cross-entropy) and soft_mix
    for weight, soft_sd in ((1.0, None), (0.5, None), (0.0, 0.4), (0.5, 0.4)):
        model.zero_grad()
        loss(weight, soft_sd).backward()
        analytic = float((parameter.grad * direction).sum())
        eps = 1e-3  # Llama's RMSNorm computes in float32 even in a float64 model: a tiny step would see its rounding
        with torch.no_grad():
            parameter += eps * direction
            up = float(loss(weight, soft_sd))
            parameter -= 2 * eps * direction
            down = float(loss(weight, soft_sd))
            parameter += eps * direction
        numeric = (up - down) / (2 * eps)
        assert analytic == pytest.approx(numeric, rel=2e-3)
        assert abs(analytic) > 1e-6  # the check is not vacuous


def test_soft_targets_are_an_ordinal_distribution_around_the_gold():
    grid = torch.tensor(get_task("stsb").grid, dtype=torch.float64)
    q = soft_targets(grid, torch.tensor([0.0, 2.5, 3.75, 5.0], dtype=torch.float64), sd=0.4)
    assert torch.allclose(q.sum(-1), torch.ones(4, dtype=torch.float64))
    assert float(q[1] @ grid) == pytest.approx(2.5, abs=1e-9)  # symmetric inside the range
    assert float(q[2, 37]) == pytest.approx(float(q[2, 38])) and q[2].argmax() in (
        37,
        38,
    )  # 3.75 is split between 3.7 and 3.8
    assert float(q[0] @ grid) > 0.0 and float(q[3] @ grid) < 5.0  # at the ends, the grid cuts the Gaussian
    assert float(q[1, 26]) > float(q[1, 30]) > float(q[1, 45])  # nearer answers get more weight: ordinal
    with pytest.raises(ValueError, match="sd"):
        soft_targets(grid, torch.tensor([1.0]), sd=0.0)


def test_soft_loss_is_smallest_when_the_model_says_the_target_with_nothing_off_grid():
    grid = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0], dtype=torch.float64)
    gold, index = torch.tensor([3.4], dtype=torch.float64), torch.tensor([2])
    q = soft_targets(grid, gold, sd=0.5)
    entropy = float(-(q * q.log()).sum())

    def loss(logprobs):
        return float(grid_loss(logprobs, grid, gold, index, mse_weight=0.0, soft_sd=0.5)[0])

    assert loss(q.log()) == pytest.approx(entropy)  # the minimum: KL(q || p) = 0
    assert loss((0.8 * q).log()) == pytest.approx(entropy - np.log(0.8))  # 20% of the mass off the grid costs -log 0.8
    one_hot = torch.full((1, 5), 1e-6, dtype=torch.float64).index_fill(1, index, 1 - 4e-6)
    assert loss(one_hot.log()) > loss(q.log()) + 1.0  # a confident "3" is far from a soft 3.4
    shifted = soft_targets(grid, torch.tensor([4.4], dtype=torch.float64), sd=0.5)
    far = soft_targets(grid, torch.tensor([1.0], dtype=torch.float64), sd=0.5)
    assert loss(q.log()) < loss(shifted.log()) < loss(far.log())  # errors cost more the further they are


def test_the_trainer_reads_the_soft_objective_from_the_config(tiny_lm):
    task, encoded, prompts, candidates = _batch(tiny_lm, "stsb")
    grid = torch.tensor(task.grid)
    gold = torch.tensor([e.target for e in encoded])
    gold_index = torch.tensor([candidates.index(e.input_ids[e.answer_start :]) for e in encoded])
    with torch.no_grad():
        logprobs = grid_logprobs(tiny_lm.model, prompts, candidates, tiny_lm.tokenizer.pad_token_id)
        for objective, weight, soft_sd in (
            ("soft", 0.0, 0.3),
            ("soft_mix", 0.25, 0.3),
            ("mix", 0.25, None),
            ("mse", 1.0, None),
        ):
            config = FinetuneConfig(base="unused", tasks=("stsb",), objective=objective, mse_weight=0.25, soft_sd=0.3)
            ours, _ = ObjectiveLoss(tiny_lm.model, tiny_lm.tokenizer, config).loss(encoded)
            expected, _ = grid_loss(logprobs, grid, gold, gold_index, mse_weight=weight, soft_sd=soft_sd)
            assert float(ours) == pytest.approx(float(expected), rel=1e-5), objective
