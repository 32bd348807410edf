"""The stage registry: round trip, variants, base stages, and the fingerprint check."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from make_tiny_model import make_tiny_model
from workbench.lifecycle.stages import (
    FingerprintMismatch,
    get_stage,
    list_stages,
    load_stage,
    register_stage,
    register_variants,
    registry_path,
)


@pytest.fixture()
def registry(tmp_path):
    return tmp_path / "stages.json"


def test_register_list_load_round_trip(tmp_path, registry):
    folder = make_tiny_model(tmp_path / "tiny", "llama")
    stages = register_variants("tiny", folder, task="sst5", notes="test", registry=registry)
    assert [s.name for s in stages] == ["tiny-fp32", "tiny-bf16", "tiny-int8"]
    assert len({s.fingerprint["weights_sha256"] for s in stages}) == 3
    stored = json.loads(registry.read_text())
    assert stored["tiny-int8"]["quantize"] == "int8" and stored["tiny-int8"]["source"] == str(
        (tmp_path / "tiny").resolve()
    )

    table = list_stages(registry)
    assert {"tiny-fp32", "tiny-bf16", "tiny-int8", "base-fp32", "base-bf16", "base-int8"} <= set(table["name"])
    assert table.set_index("name").loc["base-fp32", "weights_sha256"] == ""  # not registered yet

    for stage in stages:
        lm = load_stage(stage.name, device="cpu", registry=registry)
        assert lm.fingerprint == stage.fingerprint
    assert load_stage("tiny-int8", registry=registry).quantization == "int8-dynamic-keep-head-down"
    assert next(load_stage("tiny-bf16", device="cpu", registry=registry).model.parameters()).dtype == torch.bfloat16


def test_changed_weights_are_refused(tmp_path, registry):
    folder = make_tiny_model(tmp_path / "tiny", "llama")
    register_stage("tiny-fp32", folder, registry=registry)
    model = AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        model.model.norm.weight.add_(1e-3)
    model.save_pretrained(folder)
    with pytest.raises(FingerprintMismatch, match="weights_sha256 changed"):
        load_stage("tiny-fp32", device="cpu", registry=registry)
    register_stage("tiny-fp32", folder, registry=registry)  # re-registering accepts the new weights
    assert (
        load_stage("tiny-fp32", device="cpu", registry=registry).fingerprint["weights_sha256"]
        == get_stage("tiny-fp32", registry).fingerprint["weights_sha256"]
    )


def test_a_base_stage_follows_a_new_quantisation_recipe(tmp_path, registry):
    folder = str(make_tiny_model(tmp_path / "tiny", "llama"))
    stage = get_stage("base-int8", registry, base_model=folder)
    stored = json.loads(registry.read_text())
    stored["base-int8"]["fingerprint"] = {
        **stage.fingerprint,
        "quantization": "int8-dynamic",
        "weights_sha256": "0" * 64,
    }  # an older recipe
    registry.write_text(json.dumps(stored))
    lm = load_stage("base-int8", registry=registry, base_model=folder)
    assert get_stage("base-int8", registry, base_model=folder).fingerprint == lm.fingerprint == stage.fingerprint
    # Other weights under the same recipe are still refused, and so is a trained stage with a new recipe.
    stored = json.loads(registry.read_text())
    stored["base-int8"]["fingerprint"]["weights_sha256"] = "0" * 64
    stored["tuned-int8"] = {
        **stored["base-int8"],
        "name": "tuned-int8",
        "fingerprint": {**stage.fingerprint, "quantization": "int8-dynamic"},
    }
    registry.write_text(json.dumps(stored))
    for name in ("base-int8", "tuned-int8"):
        with pytest.raises(FingerprintMismatch):
            load_stage(name, registry=registry, base_model=folder)


def test_unknown_stage(registry):
    with pytest.raises(KeyError, match="no stage 'nope'"):
        get_stage("nope", registry)


def test_base_stage_needs_no_registration(lm, registry):
    loaded = load_stage("base-fp32", device="cpu", registry=registry)
    assert loaded.fingerprint["weights_sha256"] == lm.fingerprint["weights_sha256"]
    assert json.loads(registry.read_text())["base-fp32"]["fingerprint"] == lm.fingerprint


def test_registry_path_override(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBENCH_STAGES", str(tmp_path / "elsewhere"))
    assert registry_path() == tmp_path / "elsewhere" / "smollm2-135m-instruct.json"
    assert registry_path(tmp_path / "given.json") == tmp_path / "given.json"


def test_each_base_model_has_its_own_lifecycle(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_STAGES", str(tmp_path / "stages"))
    folder = make_tiny_model(tmp_path / "tiny", "llama")
    lm = load_stage("base-fp32", device="cpu", base_model=str(folder))
    assert get_stage("base-fp32", base_model=str(folder)).source == str(folder)
    assert lm.model.config.num_hidden_layers == AutoModelForCausalLM.from_pretrained(folder).config.num_hidden_layers
    assert "base-fp32" in set(list_stages(base_model=str(folder)).name)
    assert not registry_path().exists()  # the embedded model's registry was not touched
