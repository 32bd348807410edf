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
    assert int8.quantization == "int8-dynamic"
    hashes = {lm.fingerprint["weights_sha256"], bf16.fingerprint["weights_sha256"], int8.fingerprint["weights_sha256"]}
    assert len(hashes) == 3
    assert lm.fingerprint_id != bf16.fingerprint_id


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
