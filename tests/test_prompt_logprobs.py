"""Per-token prompt log-probabilities (echo scoring) equal a plain forward pass, on tiny random
models of several architectures, with and without a shared prefix."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Gemma2Config, GPT2Config, LlamaConfig, Qwen2Config

from workbench.inference.models import embedded_model_folder
from workbench.inference.prompt_logprobs import MIN_SHARED_PREFIX, prompt_logprobs


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(embedded_model_folder())


def tiny(kind: str, vocab: int):
    common = dict(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
    configs = {
        "llama": lambda: LlamaConfig(**common, num_key_value_heads=2),
        "qwen2": lambda: Qwen2Config(**common, num_key_value_heads=2),
        "gemma2": lambda: Gemma2Config(**common, num_key_value_heads=2, head_dim=8, sliding_window=16),
        "gpt2": lambda: GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=4, n_positions=512),
    }
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(configs[kind]()).eval()


@pytest.mark.parametrize("kind", ["llama", "qwen2", "gemma2", "gpt2"])
def test_equal_to_a_plain_forward_pass(tokenizer, kind):
    model = tiny(kind, len(tokenizer))
    prefix = "A shared few-shot prefix that is long enough to be prefilled once for every text. " * 2
    texts = [prefix + "Answer: 3<|im_end|>", prefix + "Answer: five<|im_end|>", prefix + "Answer:", "short text"]
    assert len(tokenizer(prefix)["input_ids"]) > MIN_SHARED_PREFIX
    # The first three share a prefix (prefilled once, except under a sliding window); the last runs alone.
    results = prompt_logprobs(model, tokenizer, texts[:3], top_k=3) + prompt_logprobs(
        model, tokenizer, texts[3:], top_k=3
    )
    for text, result in zip(texts, results, strict=True):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert result.token_ids == ids and result.logprobs[0] is None and result.top[0] is None
        with torch.no_grad():
            plain = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), dim=-1)
        expected = [plain[i - 1, ids[i]].item() for i in range(1, len(ids))]
        assert result.logprobs[1:] == pytest.approx(expected, abs=1e-4)
        best = plain[len(ids) - 2].topk(3)
        assert list(result.top[-1]) == best.indices.tolist()
        assert [text[o:] for o in result.offsets][-1] == tokenizer.decode(ids[-1:])
