import pytest
import torch

from workbench.inference.models import load_model, resolve_device


def test_fingerprint_and_defaults(lm):
    assert lm.device == torch.device("cpu") and lm.dtype == "fp32" and lm.quantization is None
    assert set(lm.fingerprint) == {"name", "dtype", "quantization", "weights_sha256"}
    assert len(lm.fingerprint["weights_sha256"]) == 64
    assert lm.tokenizer.padding_side == "left" and lm.tokenizer.pad_token is not None
    assert sum(p.numel() for p in lm.model.parameters()) == 134_515_008


def test_variants_have_distinct_fingerprints(lm):
    bf16 = load_model(device="cpu", dtype="bf16")
    int8 = load_model(device="cpu", quantize="int8")
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    assert int8.quantization == "int8-dynamic-keep-head-down"
    hashes = {lm.fingerprint["weights_sha256"], bf16.fingerprint["weights_sha256"], int8.fingerprint["weights_sha256"]}
    assert len(hashes) == 3
    assert lm.fingerprint_id != bf16.fingerprint_id


def test_int8_recipes_keep_what_they_say(tmp_path):
    from make_tiny_model import make_tiny_model

    folder = str(make_tiny_model(tmp_path / "tiny", "llama"))
    loaded = {option: load_model(folder, device="cpu", quantize=option) for option in ("int8", "int8-head", "int8-all")}

    def fp32(lm, suffix):
        return [type(m) is torch.nn.Linear for name, m in lm.model.named_modules() if name.endswith(suffix)]

    for option, (head, down, q) in {
        "int8": (True, True, False),
        "int8-head": (True, False, False),
        "int8-all": (False, False, False),
    }.items():
        lm = loaded[option]
        assert (type(lm.model.get_output_embeddings()) is torch.nn.Linear) == head, option
        assert set(fp32(lm, "down_proj")) == {down} and set(fp32(lm, "q_proj")) == {q}, option
    assert loaded["int8"].model.model.layers[0].self_attn.q_proj.weight().qscheme() == torch.per_channel_affine
    assert [loaded[o].quantization for o in loaded] == [
        "int8-dynamic-keep-head-down",
        "int8-dynamic-head-fp32",
        "int8-dynamic-all",
    ]
    assert len({lm.fingerprint["weights_sha256"] for lm in loaded.values()}) == 3


def test_bf16_linear_rounds_only_the_linear_layers(tmp_path):
    from make_tiny_model import make_tiny_model
    from workbench.inference.models import BF16Linear

    folder = str(make_tiny_model(tmp_path / "tiny", "llama"))
    plain, fast = load_model(folder, device="cpu"), load_model(folder, device="cpu", quantize="bf16-linear")
    assert fast.quantization == "bf16-linear-weights-fp32-rest" and fast.dtype == "fp32"
    assert not any(type(m) is torch.nn.Linear for m in fast.model.modules())
    assert isinstance(fast.model.get_output_embeddings(), BF16Linear)
    assert fast.model.get_output_embeddings().weight.dtype == torch.bfloat16
    assert fast.model.get_input_embeddings().weight.dtype == torch.float32  # lookups stay exact
    assert fast.fingerprint["weights_sha256"] != plain.fingerprint["weights_sha256"]
    ids = torch.tensor([[1, 5, 9, 13, 2]])
    with torch.no_grad():
        exact, rounded = plain.model(ids).logits, fast.model(ids).logits
    assert rounded.dtype == torch.float32 and not torch.equal(exact, rounded)
    torch.testing.assert_close(rounded, exact, atol=0.05, rtol=0.05)  # bf16 rounding, not a different model


def test_bf16_linear_stays_closer_to_fp32_than_llama_cpp(lm, sst5, sst5_prompts):
    """Its grid distributions stay within llama.cpp Q4_1's measured distance (mean TV 0.032)."""
    import numpy as np

    from workbench.inference.engine import HFEngine

    fast = load_model(device="cpu", quantize="bf16-linear")
    exact = HFEngine(lm, cache=None, progress=False).score(sst5_prompts, sst5.candidates)
    rounded = HFEngine(fast, cache=None, progress=False).score(sst5_prompts, sst5.candidates)
    total_variation = 0.5 * np.abs(rounded.probs - exact.probs).sum(axis=1)
    assert 0 < total_variation.mean() < 0.032, total_variation


def test_attention_implementation_is_recorded_only_when_asked(tmp_path):
    from make_tiny_model import make_tiny_model

    folder = str(make_tiny_model(tmp_path / "tiny", "llama"))
    plain, eager = load_model(folder, device="cpu"), load_model(folder, device="cpu", attn_implementation="eager")
    assert "attn_implementation" not in plain.fingerprint and eager.fingerprint["attn_implementation"] == "eager"
    assert eager.model.config._attn_implementation == "eager"
    assert plain.fingerprint["weights_sha256"] == eager.fingerprint["weights_sha256"]
    ids = torch.tensor([[1, 5, 9, 3]])
    with torch.no_grad():
        torch.testing.assert_close(plain.model(ids).logits, eager.model(ids).logits, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="attn_implementation"):
        load_model(folder, device="cpu", attn_implementation="flash")


def test_load_from_local_folder_matches_embedded(lm):
    from workbench.inference.models import embedded_model_folder

    again = load_model(str(embedded_model_folder()), device="cpu")
    assert again.fingerprint["weights_sha256"] == lm.fingerprint["weights_sha256"]


def test_bad_options():
    with pytest.raises(ValueError, match="fp16"):
        load_model(device="cpu", dtype="fp16")
    with pytest.raises(ValueError, match="dtype"):
        load_model(dtype="fp8")
    with pytest.raises(ValueError, match="int8"):
        load_model(device="cpu", dtype="bf16", quantize="int8")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
