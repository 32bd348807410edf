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
    assert int8.quantization == "int8-dynamic-head-fp32"
    hashes = {lm.fingerprint["weights_sha256"], bf16.fingerprint["weights_sha256"], int8.fingerprint["weights_sha256"]}
    assert len(hashes) == 3
    assert lm.fingerprint_id != bf16.fingerprint_id


def test_int8_keeps_the_output_layer_unless_asked(tmp_path):
    from test_finetune import make_tiny_model

    folder = make_tiny_model(tmp_path / "tiny")
    kept, every = load_model(str(folder), device="cpu", quantize="int8"), load_model(str(folder), device="cpu", quantize="int8-all")
    assert type(kept.model.get_output_embeddings()) is torch.nn.Linear  # fp32, untouched
    assert type(every.model.get_output_embeddings()) is not torch.nn.Linear
    block_linear = [m for name, m in kept.model.named_modules() if name.endswith("q_proj")]
    assert block_linear and all(type(m) is not torch.nn.Linear for m in block_linear)  # the blocks are int8
    assert (kept.quantization, every.quantization) == ("int8-dynamic-head-fp32", "int8-dynamic-all")
    assert kept.fingerprint["weights_sha256"] != every.fingerprint["weights_sha256"]


def test_attention_implementation_is_recorded_only_when_asked(tmp_path):
    from test_finetune import make_tiny_model

    folder = str(make_tiny_model(tmp_path / "tiny"))
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
