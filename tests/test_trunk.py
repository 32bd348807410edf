"""The frozen-trunk cache on tiny random Llama and Qwen2 models (2 layers, the lower one frozen):
a step that fills the cache, and every step that rereads those entries, gives the loss and
gradients of the whole model bit for bit; entries computed in other batches give them up to float32
rounding; the cache stays off where it does not apply; its store is bounded."""

import numpy as np
import pytest
import torch

from make_tiny_model import make_tiny_model
from workbench.inference.models import load_model
from workbench.lifecycle.finetune import FinetuneConfig
from workbench.lifecycle.finetune.encoding import training_set
from workbench.lifecycle.finetune.loss import ObjectiveLoss
from workbench.lifecycle.finetune.model import make_trainable
from workbench.lifecycle.finetune.trunk import FrozenTrunk, frozen_layers
from workbench.lifecycle.finetune.trunk_store import TensorStore
from workbench.lifecycle.prefix_batch import Rows, shared_prefix_len

# fp32 everywhere: an entry computed in another batch (other padding, another shared prefix) differs
# from this batch's whole-model pass only in the order of float32 sums.
LOSS_RTOL = 1e-5
GRAD_TOL = 1e-4  # largest gradient difference, relative to the largest gradient of that weight


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def tiny(request, tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp(f"tiny_{request.param}"), request.param)


def _setup(tiny, objective: str, task: str, **changes):
    settings = dict(method="full", train_layers=1, precision="fp32", max_examples=8, device="cpu")
    config = FinetuneConfig(base=tiny, tasks=(task,), objective=objective, **{**settings, **changes})
    lm = load_model(tiny, device="cpu")
    model = make_trainable(lm.model, config)
    return config, lm, model, training_set(config, lm.tokenizer)


def _trunk(model, lm, config, store=None) -> FrozenTrunk:
    """The trunk, built directly."""
    return FrozenTrunk(model, frozen_layers(model), lm.fingerprint["weights_sha256"], config.precision, store)


def _step(model, tokenizer, config, batch, trunk) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    loss, _ = ObjectiveLoss(model, tokenizer, config, trunk).loss(batch)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


CASES = [("ce", "sst5"), ("mse", "stsb"), ("soft", "sst5")]


@pytest.mark.parametrize(("objective", "task"), CASES)
def test_a_step_that_fills_the_trunk_is_the_whole_model_step_bit_for_bit(tiny, objective, task, tmp_path):
    torch.set_num_threads(1)  # bitwise claims (the conftest fixture restores the count)
    config, lm, model, encoded = _setup(tiny, objective, task)
    batch = encoded[:4]
    assert shared_prefix_len([e.input_ids for e in batch], min(e.answer_start for e in batch) - 1) > 0
    store = TensorStore.Config(folder=str(tmp_path))
    trunk = _trunk(model, lm, config, store)
    assert trunk.layers == 1

    whole = _step(model, lm.tokenizer, config, batch, None)
    filling = _step(model, lm.tokenizer, config, batch, trunk)
    assert trunk.store.stats["misses"] == 4 and len(filling[1]) > 1
    again = _step(model, lm.tokenizer, config, batch, trunk)  # from memory
    assert trunk.store.stats["memory_hits"] == 4 and trunk.store.stats["misses"] == 4
    reread = _trunk(model, lm, config, store)
    from_disk = _step(model, lm.tokenizer, config, batch, reread)
    assert reread.store.stats["disk_hits"] == 4 and reread.store.stats["misses"] == 0
    for other in (filling, again, from_disk):
        assert torch.equal(other[0], whole[0])
        assert other[1].keys() == whole[1].keys() and all(torch.equal(other[1][n], whole[1][n]) for n in whole[1])


@pytest.mark.parametrize(("objective", "task"), CASES)
def test_entries_of_other_batches_give_the_loss_and_gradients_up_to_rounding(tiny, objective, task, tmp_path):
    config, lm, model, encoded = _setup(tiny, objective, task)
    trunk = _trunk(model, lm, config, TensorStore.Config(disk_bytes=0))
    for pair in (encoded[0:2], encoded[2:4]):  # other batch-mates, another shared prefix and padding
        _step(model, lm.tokenizer, config, pair, trunk)
    whole_loss, whole_grads = _step(model, lm.tokenizer, config, encoded[:4], None)
    loss, grads = _step(model, lm.tokenizer, config, encoded[:4], trunk)
    assert trunk.store.stats["misses"] == 4 and trunk.store.stats["memory_hits"] == 4
    assert float(loss) == pytest.approx(float(whole_loss), rel=LOSS_RTOL)
    for name, grad in grads.items():
        reference = whole_grads[name]
        assert float(reference.abs().max()) > 0, name  # not vacuous
        assert float((grad - reference).abs().max()) <= GRAD_TOL * float(reference.abs().max()), name
    entry = trunk.hidden(Rows([encoded[2].input_ids], []), limit=0, share_prefix=False, pad_id=0)[0]
    assert entry.dtype == torch.float32 and entry.shape == (len(encoded[2].input_ids), lm.model.config.hidden_size)


def test_the_trunk_is_off_where_it_does_not_apply(tiny, tmp_path):
    config, lm, model, encoded = _setup(tiny, "ce", "sst5")
    weights = lm.fingerprint["weights_sha256"]
    assert FrozenTrunk.for_training(model, weights, config) is not None
    off = FinetuneConfig(**{**config.__dict__, "trunk_cache": False})
    assert FrozenTrunk.for_training(model, weights, off) is None
    assert off.run_id() == config.run_id()  # bookkeeping: a cached run is found either way
    every_layer = FinetuneConfig(**{**config.__dict__, "train_layers": None})
    assert FrozenTrunk.for_training(make_trainable(model, every_layer), weights, every_layer) is None
    model = make_trainable(model, config)
    model.model.embed_tokens.weight.requires_grad_(True)
    assert frozen_layers(model) == 0
    model.model.embed_tokens.weight.requires_grad_(False)
    model.config.attention_dropout = 0.1  # a frozen layer with dropout is not a function of its input
    assert frozen_layers(model) == 0
    model.config.attention_dropout = 0.0
    assert frozen_layers(model) == 1
    grid = FinetuneConfig(**{**config.__dict__, "objective": "soft"})
    assert FrozenTrunk.for_training(model, weights, grid) is not None  # the grid objectives use it too
    lora_everywhere = FinetuneConfig(**{**config.__dict__, "method": "lora", "lora_layers": None})
    assert FrozenTrunk.for_training(make_trainable(lm.model, lora_everywhere), weights, lora_everywhere) is None


def test_lora_on_the_top_layer_fills_the_trunk_like_the_whole_model_and_reads_what_full_training_filled(tiny, tmp_path):
    torch.set_num_threads(1)  # bitwise claims (the conftest fixture restores the count)
    store = TensorStore.Config(folder=str(tmp_path))
    full_config, lm, full_model, encoded = _setup(tiny, "ce", "sst5")
    batch = encoded[:4]
    _step(full_model, lm.tokenizer, full_config, batch, _trunk(full_model, lm, full_config, store))  # full fills
    config, lm, model, _ = _setup(tiny, "ce", "sst5", method="lora", lora_layers=1, lora_r=2)
    trunk = FrozenTrunk.for_training(model, lm.fingerprint["weights_sha256"], config, store)
    assert trunk is not None and trunk.layers == 1
    with torch.no_grad():  # adapters that change the output (B starts at zero)
        for name, weight in model.named_parameters():
            if "lora_B" in name:
                weight.normal_(0, 0.1, generator=torch.Generator().manual_seed(0))
    whole = _step(model, lm.tokenizer, config, batch, None)
    read = _step(model, lm.tokenizer, config, batch, trunk)
    assert trunk.store.stats["disk_hits"] == 4 and trunk.store.stats["misses"] == 0  # the full run's entries
    assert all(name.count("lora_") for name in whole[1]) and len(whole[1]) > 1  # only the adapters train
    assert torch.equal(read[0], whole[0]) and all(torch.equal(read[1][n], whole[1][n]) for n in whole[1])


def test_the_store_is_bounded_and_reads_a_damaged_file_as_missing(tmp_path):
    store = TensorStore(TensorStore.Config(folder=str(tmp_path), memory_bytes=1000, disk_bytes=2000), "ns", width=10)
    for i in range(10):  # 400 bytes each (+ the .npy header): memory keeps 2, disk about 4
        store.put(f"{i:02d}key", torch.full((10, 10), float(i)))
    assert len(store._memory) == 2
    files = sorted(tmp_path.rglob("*.npy"))
    assert 0 < sum(f.stat().st_size for f in files) <= 2000 and len(files) < 10
    assert store.get("09key") is not None and store.get("00key") is None  # the oldest went first
    survivor = next(f for f in files if f.stem not in store._memory)
    np.save(survivor, np.zeros((3, 7), dtype=np.float64))  # the wrong dtype and width
    fresh = TensorStore(store.config, "ns", width=10)
    with pytest.warns(UserWarning, match=survivor.name):
        assert fresh.get(survivor.stem) is None
    survivor.write_bytes(b"\x93NUMPY truncated")
    with pytest.warns(UserWarning, match="unreadable"):
        assert fresh.get(survivor.stem) is None
