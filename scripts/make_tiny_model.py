"""Save a tiny randomly initialised causal LM (with the embedded model's tokenizer) to a folder.

    python scripts/make_tiny_model.py /tmp/tiny-qwen2 --architecture qwen2

Such a model answers nonsense, fast: it takes every notebook's code path with another
architecture than the embedded Llama, which is what ``scripts/test.sh`` uses it for.
:func:`make_tiny_rating_model` makes one that answers a rating digit instead, for tests that
compare the decisions made from parsed answers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from workbench.inference.models import embedded_model_folder  # noqa: E402

ARCHITECTURES = {"qwen2": (Qwen2Config, Qwen2ForCausalLM), "llama": (LlamaConfig, LlamaForCausalLM)}


def make_tiny_model(folder: str | Path, architecture: str = "qwen2", seed: int = 0) -> str:
    """Write the tiny model and its tokenizer to ``folder`` and return the folder as a string."""
    config_class, model_class = ARCHITECTURES[architecture]
    tokenizer = AutoTokenizer.from_pretrained(embedded_model_folder())
    config = config_class(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    torch.manual_seed(seed)
    model_class(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def make_tiny_rating_model(folder: str | Path, architecture: str = "llama", seed: int = 0) -> str:
    """A tiny random model that answers with one digit 1-5 and then the end of turn, the answer varying by prompt.

    A random model never writes a rating, so rating tasks would see only unparsable answers; this
    one takes their parse, grid and decision paths with real values. Every input embedding gets a
    component along one hidden direction, which the (untied) output rows of the digits read: every
    position leans towards a digit. The digits' input embeddings get a second direction, which the
    end-of-turn output row reads: a digit is followed by the end of turn. The digits' own random
    output rows, scaled up, keep the answer prompt-dependent.
    """
    make_tiny_model(folder, architecture, seed)
    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    digits = tokenizer.convert_tokens_to_ids(list("12345"))
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    inputs = model.get_input_embeddings().weight.data
    outputs = inputs.clone()
    answer, after_digit = torch.eye(inputs.shape[1])[:2]
    inputs += 0.1 * answer
    inputs[digits] += 0.3 * after_digit
    outputs[digits] = 20 * outputs[digits] + 3.5 * answer
    outputs[end] += 3.5 * after_digit
    model.config.tie_word_embeddings = False
    model.lm_head.weight = torch.nn.Parameter(outputs)
    model.save_pretrained(folder)
    return str(folder)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder")
    parser.add_argument("--architecture", choices=sorted(ARCHITECTURES), default="qwen2")
    args = parser.parse_args()
    print(make_tiny_model(args.folder, args.architecture))
