"""The model side of fine-tuning: which weights train (LoRA adapters, the top layers, or all),
bf16 autocast, and an in-memory model wrapped as a :class:`LoadedModel` for the engine.

Training only the top layers (or LoRA on the top layers) keeps a CPU run affordable:
back-propagation stops where the first trainable weight sits.
"""

from __future__ import annotations

import torch

from workbench.inference.models import LoadedModel, weights_sha256
from workbench.lifecycle.finetune.config import FinetuneConfig


def make_trainable(model, config: FinetuneConfig):
    """Wrap the model with LoRA adapters, or make the top ``train_layers`` layers (or every weight) trainable.

    Returns:
        The model to train: the same object for ``method="full"``, a PEFT wrapper for ``"lora"``.
    """
    if config.method == "full":
        top = config.train_layers
        for p in model.parameters():
            p.requires_grad_(top is None)
        if top is not None:
            for layer in model.model.layers[-top:]:
                layer.requires_grad_(True)
            model.model.norm.requires_grad_(True)
        return model
    from peft import LoraConfig, get_peft_model  # imported only for LoRA runs: it loads slowly

    layers = model.config.num_hidden_layers
    top = None if config.lora_layers is None else list(range(max(0, layers - config.lora_layers), layers))
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.lora_targets),
        layers_to_transform=top,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def precision_autocast(device: torch.device, precision: str):
    """bf16 autocast on ``device`` for ``precision="bf16"`` (bf16 matrix products, fp32 weights); a no-op for "fp32"."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def as_loaded_model(model, tokenizer, name: str) -> LoadedModel:
    """An in-memory model as a :class:`LoadedModel`, fingerprinted by its current weights."""
    device = next(model.parameters()).device
    fingerprint = {"name": name, "dtype": "fp32", "quantization": None, "weights_sha256": weights_sha256(model)}
    return LoadedModel(model, tokenizer, name, device, "fp32", None, fingerprint)
