"""Fine-tuning mechanics on a tiny random Llama (same tokenizer and chat template as the embedded
model, 2 layers of width 32), so that every test trains for real in well under a second a step."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer

from make_tiny_model import make_tiny_model
from workbench.inference.engine import HFEngine
from workbench.inference.models import load_model, weights_sha256
from workbench.lifecycle.finetune import FinetuneConfig, finetune, resolve_task, run_dir
from workbench.lifecycle.finetune.batching import batch_schedule
from workbench.lifecycle.finetune.checkpoints import latest_checkpoint
from workbench.lifecycle.finetune.encoding import encode, training_set
from workbench.lifecycle.finetune.loss import answer_nll, mean_answer_loss
from workbench.lifecycle.finetune.model import make_trainable
from workbench.lifecycle.finetune.selection import TrunkScorer, dev_sets, evaluate_dev
from workbench.lifecycle.finetune.trunk import FrozenTrunk, scoring_trunk, shared_layers
from workbench.lifecycle.finetune.trunk_store import TensorStore
from workbench.lifecycle.hpo import SearchSpace, best_config, dev_objective, save_search, search_all
from workbench.tasks import Example, get_task


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    """The frozen trunk's files (``<cache>/trunk``) of these tiny models stay out of the user's cache."""
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny"), "llama")


def small(tiny, **changes):
    settings = dict(
        base=tiny,
        tasks=("sst5",),
        method="full",
        lr=1e-2,
        batch_size=4,
        max_steps=4,
        max_examples=8,
        device="cpu",
        save_every=2,
    )
    return FinetuneConfig(**{**settings, **changes})


def test_encode_puts_answer_and_end_token_after_the_prompt(tiny):
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    for name in ("sst5", "stsb"):
        task = get_task(name)
        example = task.examples("train", limit=1, seed=3)[0]
        encoded = encode(task, example, tokenizer)
        prompt_ids = tokenizer(task.prompt(example, tokenizer, shots=[]), add_special_tokens=False)["input_ids"]
        assert encoded.input_ids[: encoded.answer_start] == prompt_ids
        assert encoded.input_ids[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(encoded.input_ids[encoded.answer_start : -1]) == task.answer(example)


def test_shared_prefix_loss_equals_brute_force(tiny):
    lm = load_model(tiny, device="cpu")
    batch = [e for e in training_set(small(tiny), lm.tokenizer)][:4]
    brute = 0.0
    with torch.no_grad():
        shared, count = answer_nll(lm.model, batch, lm.tokenizer.pad_token_id, share_prefix=True)
        plain, _ = answer_nll(lm.model, batch, lm.tokenizer.pad_token_id, share_prefix=False)
        for e in batch:
            logprobs = torch.log_softmax(lm.model(torch.tensor([e.input_ids])).logits[0].float(), dim=-1)
            brute -= sum(float(logprobs[t - 1, e.input_ids[t]]) for t in range(e.answer_start, len(e.input_ids)))
    assert count == sum(len(e.input_ids) - e.answer_start for e in batch)
    assert float(shared) == pytest.approx(brute, rel=1e-4)
    assert float(plain) == pytest.approx(brute, rel=1e-4)


def test_batches_are_single_task_and_cover_each_epoch(tiny):
    encoded = training_set(small(tiny, tasks=("sst5", "stsb"), max_examples=6), AutoTokenizer.from_pretrained(tiny))
    schedule = batch_schedule(encoded, batch_size=4, steps=4, seed=0)  # 2 + 2 batches = one epoch
    assert all(len({encoded[i].task for i in batch}) == 1 for batch in schedule)
    assert sorted(i for batch in schedule for i in batch) == list(range(len(encoded)))


def test_smaller_training_sets_are_prefixes_of_larger_ones(tiny):
    """400 of SST-5's 8,544 training reviews are the first 400 of 2,500 (random.sample's draws of the two
    sizes are not nested), so notebook 07's small arms read the trunk outputs 02's runs cached."""
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    small_set, large_set = (training_set(small(tiny, max_examples=n), tokenizer) for n in (400, 2500))
    assert len(large_set) == 2500
    assert [e.input_ids for e in small_set] == [e.input_ids for e in large_set[:400]]


def test_a_few_steps_lower_the_training_loss(tiny):
    config = small(tiny, max_steps=6)
    before_model = load_model(tiny, device="cpu")
    encoded = training_set(config, before_model.tokenizer)
    before = mean_answer_loss(before_model.model, before_model.tokenizer, encoded)
    result = finetune(config, progress=False)
    after = mean_answer_loss(result.model, result.tokenizer, encoded)
    assert len(result.losses) == 6 and result.resumed_from == 0
    assert after < before - 0.5


def straight_and_resumed(config: FinetuneConfig, tmp_path: Path) -> tuple:
    """The run straight through (in ``tmp_path/a``) and the same run interrupted at step 3 and resumed (``b``)."""
    straight = finetune(FinetuneConfig(**{**config.__dict__, "output_dir": str(tmp_path / "a")}), progress=False)
    interrupted = FinetuneConfig(**{**config.__dict__, "output_dir": str(tmp_path / "b")})

    def stop_at_3(step, loss):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        finetune(interrupted, callback=stop_at_3, progress=False)
    assert latest_checkpoint(tmp_path / "b").name == "step-000002.pt"
    return straight, finetune(interrupted, progress=False)


def test_resume_after_interruption_gives_the_same_weights(tiny, tmp_path):
    straight, resumed = straight_and_resumed(small(tiny, method="lora", lora_layers=None, lr=5e-2), tmp_path)
    assert resumed.resumed_from == 2
    assert resumed.losses == straight.losses
    a, b = (
        load_file(tmp_path / "a" / "model" / "model.safetensors"),
        load_file(tmp_path / "b" / "model" / "model.safetensors"),
    )
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not any("lora" in k for k in a)  # adapters merged into plain weights
    assert not torch.equal(
        a["model.layers.0.self_attn.q_proj.weight"],
        load_file(f"{tiny}/model.safetensors")["model.layers.0.self_attn.q_proj.weight"],
    )


def test_top_layer_training_from_the_cached_trunk_resumes_and_matches_the_whole_model(tiny, tmp_path):
    torch.set_num_threads(1)  # bitwise equality of the straight and the resumed run (restored by conftest)
    # 8 examples in batches of 4: two epochs, the second served from the trunk cache
    config = small(tiny, train_layers=1, precision="fp32", lr=5e-2)
    straight, resumed = straight_and_resumed(config, tmp_path)
    assert straight.throughput["trunk_layers"] == 1
    assert straight.throughput["trunk_misses"] == 8 and straight.throughput["trunk_memory_hits"] == 8
    assert resumed.resumed_from == 2 and resumed.losses == straight.losses
    assert resumed.throughput["trunk_misses"] == 0  # the interrupted run's entries, read back from disk
    a, b = (load_file(tmp_path / run / "model" / "model.safetensors") for run in ("a", "b"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    # the whole model every step: the same training up to float32 rounding
    whole = finetune(FinetuneConfig(**{**config.__dict__, "trunk_cache": False}), progress=False)
    assert "trunk_layers" not in whole.throughput
    np.testing.assert_allclose(whole.losses, straight.losses, rtol=1e-4)
    final = whole.model.state_dict()
    assert all(torch.allclose(final[k], a[k], rtol=1e-4, atol=1e-5) for k in a)


def test_saved_model_loads_and_a_finished_run_is_reused(tiny, tmp_path):
    config = small(tiny, max_steps=2, output_dir=str(tmp_path / "run"))
    first = finetune(config, progress=False)
    loaded = load_model(str(first.model_dir), device="cpu")
    assert loaded.fingerprint["weights_sha256"] == weights_sha256(first.model)
    log = json.loads((tmp_path / "run" / "training.json").read_text())
    assert log["steps"] == 2 and log["losses"] == first.losses
    again = finetune(config, progress=False)
    assert again.model is None and again.losses == first.losses and again.model_dir == first.model_dir
    with pytest.raises(ValueError, match="different finished run"):
        finetune(small(tiny, max_steps=2, lr=1e-3, output_dir=str(tmp_path / "run")), progress=False)
    with pytest.raises(ValueError, match="different finished run"):
        finetune(config, examples={"sst5": get_task("sst5").examples("train", limit=8, seed=5)}, progress=False)


def test_a_checkpoint_of_another_config_is_refused(tiny, tmp_path):
    def stop_at_2(step, loss):
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        finetune(small(tiny, output_dir=str(tmp_path)), callback=stop_at_2, progress=False)
    with pytest.raises(ValueError, match="different run"):
        finetune(small(tiny, output_dir=str(tmp_path), lr=1e-3), progress=False)


def test_run_dir_depends_on_what_is_learned(tiny, tmp_path):
    examples = {"sst5": get_task("sst5").examples("train", limit=3)}
    assert run_dir(small(tiny), root=tmp_path) == run_dir(small(tiny, save_every=7, output_dir="x"), root=tmp_path)
    assert run_dir(small(tiny), root=tmp_path) != run_dir(small(tiny, lr=0.5), root=tmp_path)
    assert run_dir(small(tiny), examples, tmp_path) != run_dir(small(tiny), {"sst5": examples["sst5"][:2]}, tmp_path)


def test_the_run_key_follows_the_subset_drawn_not_the_pool(tmp_path, monkeypatch):
    """The key once hashed the pool a subset is drawn from: when the draw changed (random.sample to nested_sample),
    the cached 2,500-example runs kept their folder and a warm cache failed with 'holds a different finished run'."""
    from workbench.lifecycle.finetune import config as config_module

    pool = {"sst5": [Example(id=str(i), text=f"film {i}", target=float(i % 5)) for i in range(50)]}
    subset = FinetuneConfig(tasks=("sst5",), max_examples=10)
    whole = FinetuneConfig(tasks=("sst5",), max_examples=None)
    keys = run_dir(subset, pool, tmp_path), run_dir(whole, pool, tmp_path), run_dir(subset, root=tmp_path)
    monkeypatch.setattr(config_module, "nested_sample", lambda population, k, seed: list(population)[:k])
    assert run_dir(subset, pool, tmp_path) != keys[0] and run_dir(subset, root=tmp_path) != keys[2]
    assert run_dir(whole, pool, tmp_path) == keys[1]  # nothing drawn: the same run


def test_the_run_key_of_a_fixed_config_is_pinned(tmp_path):
    """Cached runs (the default profile's final model among them) are found by this key: a change to
    what it hashes must be deliberate, because it retrains them. Last moved on purpose when ``mse_weight`` left the
    key of the objectives that do not read it (and its default went from 0.5 to 0.9)."""
    assert FinetuneConfig().run_id() == "43fa2b2346f4"
    assert FinetuneConfig(objective="soft", tasks=("sst5",), max_examples={"sst5": 100}).run_id() == "5fa43e2c0a8a"
    final = FinetuneConfig(
        method="full",
        train_layers=8,
        batch_size=16,
        max_examples=2500,
        epochs=1,
        eval_every=80,
        patience=2,
        save_every=40,
        warmup_fraction=0.05,
        lr=3e-4,
        dev_examples=200,
    )
    assert final.run_id() == "ea9c06116d88"
    examples = {
        "sst5": [Example(id="a", text="good film", target=4.0), Example(id="b", text="bad film", target=1.0)],
        "stsb": [Example(id="p", text="A man sings.", text_b="A man is singing.", target=4.8)],
    }
    dev = {"sst5": examples["sst5"][:1], "stsb": examples["stsb"]}
    assert run_dir(final, examples, tmp_path, dev=dev) == tmp_path / "5d62afe01d9b"


def test_grid_random_and_tpe_search(tiny, tmp_path):
    dev = {"sst5": get_task("sst5").examples("dev", limit=4, seed=0)}
    space = SearchSpace(lr=(1e-3, 1e-1), lr_grid=(1e-3, 1e-1), batch_size=(2,), max_steps=(1, 2))
    base = small(tiny, save_every=0)
    table = search_all(dev_objective(dev), base, space, n_trials=2)
    assert list(table["method"]) == ["grid", "grid", "random", "random", "tpe", "tpe"]
    assert set(table.loc[table["method"] == "grid", "lr"]) <= {1e-3, 1e-1}
    assert table["objective"].notna().all() and (table["seconds"] > 0).all()
    chosen = best_config(table, base)
    assert chosen.lr == table.loc[table["objective"].idxmin(), "lr"] and chosen.max_steps in (1, 2)
    csv_path, json_path = save_search(table, chosen, tmp_path, stem="04_hpo")
    assert csv_path.exists() and json.loads(json_path.read_text())["config"]["lr"] == chosen.lr


def test_a_corrupt_newest_checkpoint_falls_back_to_the_previous_one(tiny, tmp_path):
    config = small(tiny, max_steps=6, save_every=2, keep_checkpoints=2, output_dir=str(tmp_path))

    def stop_at_5(step, loss):
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        finetune(config, callback=stop_at_5, progress=False)
    newest = latest_checkpoint(tmp_path)
    assert newest.name == "step-000004.pt"
    newest.write_bytes(newest.read_bytes()[:100])  # truncated, as after a crash mid-copy
    with pytest.warns(UserWarning, match="step-000004.pt"):
        resumed = finetune(config, progress=False)
    assert resumed.resumed_from == 2 and resumed.steps == 6


def test_top_layers_only_and_the_grid_objective_train(tiny):
    config = small(tiny, train_layers=1, objective="mse", max_steps=4, lr=5e-2, tasks=("stsb",))
    before = load_model(tiny, device="cpu").model.state_dict()
    result = finetune(config, progress=False)
    after = result.model.state_dict()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed and all(k.startswith("model.layers.1.") or k == "model.norm.weight" for k in changed)
    assert len(result.losses) == 4 and all(math.isfinite(loss) for loss in result.losses)
    assert result.throughput["examples_per_s"] > 0


def test_objective_selection_and_its_cache_key():
    with pytest.raises(ValueError, match="objective"):
        FinetuneConfig(objective="hinge")
    with pytest.raises(ValueError, match="soft_sd"):
        FinetuneConfig(objective="soft", soft_sd=0.0)
    # soft_sd keys a soft run only: other objectives keep the keys (and cached runs) they had before it existed
    assert FinetuneConfig(objective="ce", soft_sd=0.2).run_id() == FinetuneConfig(objective="ce").run_id()
    assert "soft_sd" not in FinetuneConfig(objective="mix").training_key()
    assert FinetuneConfig(objective="soft", soft_sd=0.2).run_id() != FinetuneConfig(objective="soft").run_id()
    assert FinetuneConfig(objective="soft").run_id() != FinetuneConfig(objective="soft_mix").run_id()
    # mse_weight keys the mixed objectives only: reweighting them retrains no cross-entropy, soft or RAFT run
    for objective in ("ce", "soft", "mse", "mix", "soft_mix"):
        reweighted, default = FinetuneConfig(objective=objective, mse_weight=0.3), FinetuneConfig(objective=objective)
        assert (reweighted.run_id() == default.run_id()) == (objective not in ("mix", "soft_mix"))


def test_the_soft_objective_trains_a_mixed_task_run(tiny):
    config = small(tiny, train_layers=1, objective="soft", soft_sd=0.4, tasks=("sst5", "stsb"), max_steps=4, lr=5e-2)
    result = finetune(config, progress=False)
    assert len(result.losses) == 4 and all(math.isfinite(loss) and loss > 0 for loss in result.losses)
    assert result.throughput["train_cpu_seconds"] > 0


def test_per_task_example_limits(tiny):
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    encoded = training_set(
        small(tiny, tasks=("sst5", "stsb"), max_examples={"sst5": 3}),
        tokenizer,
        {"sst5": get_task("sst5").examples("train", limit=10), "stsb": get_task("stsb").examples("train", limit=7)},
    )
    assert [e.task for e in encoded].count("sst5") == 3 and [e.task for e in encoded].count(
        "stsb"
    ) == 7  # stsb not named: all
    assert small(tiny, max_examples={"sst5": 3}).run_id() != small(tiny, max_examples={"sst5": 4}).run_id()


def test_coarse_sts_answers_keep_the_fine_grid():
    coarse = get_task("stsb", answer_step=0.5)
    assert coarse.grid == get_task("stsb").grid
    example = coarse.examples("train", limit=1)[0]
    for target, answer in ((3.8, "4.0"), (3.7, "3.5"), (0.2, "0.0"), (5.0, "5.0")):
        assert coarse.answer(type(example)("x", "a", target, "b")) == answer
    assert all(coarse.answer(e) in coarse.candidates for e in coarse.examples("train", limit=50))
    with pytest.raises(ValueError, match="multiple"):
        get_task("stsb", answer_step=0.25)


def test_dev_selection_keeps_the_best_evaluation_and_stops_early(tiny, tmp_path):
    dev = {"sst5": get_task("sst5").examples("dev", limit=4, seed=0)}
    config = small(
        tiny, max_steps=12, eval_every=2, patience=1, lr=0.3, output_dir=str(tmp_path)
    )  # a large lr: dev gets worse
    result = finetune(config, dev=dev, progress=False)
    objectives = [record["objective"] for record in result.dev_history]
    best = result.dev_history[int(np.argmin(objectives))]
    assert result.best_step == best["step"] and result.best_objective == min(objectives)
    assert (
        result.steps < 12 or len(objectives) == 6
    )  # stopped after one evaluation without improvement, or never got worse
    if result.steps < 12:
        assert objectives[-1] >= min(objectives) and result.steps == result.dev_history[-1]["step"]
    # the saved weights are the kept evaluation's: scoring them again gives its dev objective
    engine_scores = evaluate_dev(
        load_model(str(result.model_dir), device="cpu").model, result.tokenizer, dev_sets(config, dev), config.precision
    )
    assert engine_scores[1] == pytest.approx(best["objective"], abs=1e-6)
    assert set(best["scores"]["sst5"]) >= {"accuracy", "rmse", "spearman", "nll", "outside_mass"}


def test_dev_scores_from_the_cached_trunk_equal_the_whole_models_and_later_evaluations_read_it(tiny):
    config = small(tiny, tasks=("sst5", "stsb"), train_layers=1, precision="fp32")
    lm = load_model(tiny, device="cpu")
    model = make_trainable(lm.model, config)
    trunk = FrozenTrunk.for_training(model, lm.fingerprint["weights_sha256"], config)
    dev = {name: get_task(name).examples("dev", limit=5, seed=0) for name in ("sst5", "stsb")}
    sets = dev_sets(config, dev)
    whole = evaluate_dev(model, lm.tokenizer, sets, config.precision)
    cached = evaluate_dev(model, lm.tokenizer, sets, config.precision, trunk=trunk)
    assert trunk.store.stats["misses"] == 10  # every dev prompt with its answer tree, once
    again = evaluate_dev(model, lm.tokenizer, sets, config.precision, trunk=trunk)
    assert trunk.store.stats["misses"] == 10 and trunk.store.stats["memory_hits"] == 10
    assert cached == again
    assert cached[1] == pytest.approx(whole[1], rel=1e-5)
    for name in sets:
        for metric, value in whole[0][name].items():
            assert cached[0][name][metric] == pytest.approx(value, rel=1e-4, abs=1e-6), (name, metric)


def test_stages_fine_tuned_on_their_top_layers_score_from_the_base_models_shared_lower_layers(tiny, tmp_path):
    arms = {
        objective: finetune(
            small(tiny, train_layers=1, objective=objective, output_dir=str(tmp_path / objective)), progress=False
        )
        for objective in ("ce", "soft")
    }
    base = load_model(tiny, device="cpu")
    layers = len(base.model.model.layers)
    assert scoring_trunk(base.model, base.model) is None  # the base model shares every layer: nothing to gain
    task = get_task("stsb")
    prompts = task.prompts(task.examples("dev", limit=6, seed=0), base.tokenizer)
    store = TensorStore.Config(folder=str(tmp_path / "trunk"))
    for number, result in enumerate(arms.values()):
        lm = load_model(str(result.model_dir), device="cpu")
        assert shared_layers(lm.model, base.model) == layers - 1
        whole = HFEngine(lm, cache=None, progress=False).score(prompts, task.candidates)
        engine = HFEngine(lm, cache=None, progress=False)
        trunk = scoring_trunk(lm.model, base.model, store)
        engine.grid_scorer = TrunkScorer(lm.model, lm.tokenizer, trunk).logprobs
        fast = engine.score(prompts, task.candidates)
        np.testing.assert_allclose(fast.logprobs, whole.logprobs, rtol=1e-5, atol=1e-5)
        # the first arm computes the lower layers' outputs; the second reads them from disk
        assert trunk.store.stats["misses"] == (len(prompts) if number == 0 else 0)
    bf16 = load_model(str(arms["ce"].model_dir), device="cpu", dtype="bf16")
    assert scoring_trunk(bf16.model, base.model) is None  # bf16 stages compute in their own precision


def test_a_table_task_given_as_a_spec_trains_and_keys_the_cache_on_its_content(tiny, tmp_path):
    table = tmp_path / "reviews.csv"
    rows = ["text,label"] + [
        f"review number {i} is {'great' if i % 2 else 'awful'},{5 if i % 2 else 1}" for i in range(8)
    ]
    table.write_text("\n".join(rows) + "\n")
    spec = {"task": "table", "path": str(table), "text_column": "text", "label_column": "label"}
    assert resolve_task(spec).name == get_task("table", path=str(table), text_column="text", label_column="label").name
    config = small(tiny, tasks=(spec,), max_steps=2, max_examples=None)
    result = finetune(config, progress=False)
    train = resolve_task(spec).load("train")
    assert 0 < len(train) < 8, "the file is split into disjoint train / dev / test rows"
    assert result.examples == len(train) and len(result.losses) == 2
    first = run_dir(config, root=tmp_path / "runs")
    table.write_text("\n".join(rows[:-1]) + "\n")  # the file changed: the cached run must not be reused
    assert run_dir(config, root=tmp_path / "runs") != first


def test_a_training_run_is_tracked_with_its_loss_curve_and_dev_metrics(tiny, tmp_path, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("WORKBENCH_TRACKING", "1")
    dev = {"sst5": get_task("sst5").examples("dev", limit=3, seed=0)}
    result = finetune(small(tiny, eval_every=2, output_dir=str(tmp_path / "run")), progress=False, dev=dev)
    (run,) = mlflow.search_runs(experiment_names=["finetune"], output_format="list")
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "train_loss")
    assert [m.step for m in history] == [1, 2, 3, 4] and [m.value for m in history] == pytest.approx(result.losses)
    dev_steps = [m.step for m in mlflow.MlflowClient().get_metric_history(run.info.run_id, "dev_sst5_accuracy")]
    assert dev_steps == [2, 4] and run.info.status == "FINISHED"
    assert run.data.params["lr"] == "0.01" and run.data.tags["best_step"] == str(result.best_step)
    assert run.data.metrics["throughput_examples_per_s"] > 0
