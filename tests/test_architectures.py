"""The engine is exact on every architecture it accepts, and refuses the others.

Tiny randomly initialised models built from configs (2 layers, hidden size 32), with the embedded
model's tokenizer. Sliding windows are set shorter than prompt plus answer, so they bite. For each
architecture: ``score`` and every sampled token's log-probability (tree decoding, the hand-over to
rows, rows finishing at different times) match a plain full-sequence forward pass, and greedy
decoding matches HF ``generate``.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path

import pytest
import torch
import transformers
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from transformers import AutoTokenizer

from workbench.inference import attention
from workbench.inference.end_of_turn import end_of_turn
from workbench.inference.engine import HFEngine
from workbench.inference.models import LoadedModel, embedded_model_folder
from workbench.inference.types import SamplingConfig

WINDOW = 12  # shorter than every prompt below: the window decides what a token sees
SMALL = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
    max_position_embeddings=512,
)
ARCHITECTURES = {
    "llama": ("LlamaConfig", SMALL),
    "mistral": ("MistralConfig", {**SMALL, "sliding_window": WINDOW}),
    "qwen2": ("Qwen2Config", {**SMALL, "use_sliding_window": True, "sliding_window": WINDOW, "max_window_layers": 1}),
    "qwen3": ("Qwen3Config", SMALL),
    "phi3": ("Phi3Config", {**SMALL, "sliding_window": WINDOW, "pad_token_id": 0}),
    "gemma": ("GemmaConfig", SMALL),
    # Logit soft-capping too; its reference is eager attention (transformers 5.0's default SDPA ignored the soft cap).
    "gemma2": ("Gemma2Config", {**SMALL, "sliding_window": WINDOW, "attn_implementation": "eager"}),
    "gemma3_text": (
        "Gemma3TextConfig",
        {**SMALL, "sliding_window": WINDOW, "layer_types": ["sliding_attention", "full_attention"]},
    ),
    "gpt2": ("GPT2Config", dict(n_embd=32, n_layer=2, n_head=4, n_positions=512)),
}
RARE_LETTERS = ("w", "k", "x", "z", "q", "j")  # about 1 token in 8 contains one: samples end at different steps


@pytest.fixture(scope="module")
def tokenizer():
    tok = AutoTokenizer.from_pretrained(embedded_model_folder())
    tok.padding_side = "left"
    return tok


def tiny_model(name: str, tokenizer, **changes) -> LoadedModel:
    config_class, settings = ARCHITECTURES[name]
    config = getattr(transformers, config_class)(
        vocab_size=len(tokenizer),
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        **{**settings, **changes},
    )
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():  # sharper than the default init, so that greedy decoding has no near-ties
        for parameter in model.parameters():
            if parameter.dim() > 1:
                parameter.normal_(0, 0.3)
    return LoadedModel(model, tokenizer, f"tiny-{name}", torch.device("cpu"), "fp32", None, {"name": f"tiny-{name}"})


@pytest.fixture(scope="module")
def models(tokenizer):
    return {name: tiny_model(name, tokenizer) for name in ARCHITECTURES}


@pytest.fixture(scope="module")
def prompts(tokenizer):
    system = (
        "You rate how positive a movie review is, from 1 (very negative) to 5 (very positive). "
        "Answer with the number only."
    )
    reviews = [
        "A gem.",
        "Two hours I will never get back, and a plot that made no sense at all.",
        "Fine, I guess, if you like long car chases.",
    ]
    return [
        tokenizer.apply_chat_template(
            [{"role": "system", "content": system}, {"role": "user", "content": r}],
            tokenize=False,
            add_generation_prompt=True,
        )
        for r in reviews
    ]


def plain_logprobs(lm: LoadedModel, prompt: str, answer_ids: list[int]) -> list[float]:
    """Each answer token's log-probability from one plain forward pass over prompt + answer, no cache."""
    prompt_ids = lm.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = lm.model(input_ids=torch.tensor([prompt_ids + answer_ids])).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    return [logprobs[len(prompt_ids) - 1 + i, t].item() for i, t in enumerate(answer_ids)]


def answer_in_context(tokenizer, prompt: str, answer: str) -> list[int]:
    """The answer's tokens as the tokenizer splits prompt + answer (the prompts end in a newline,
    so the split falls between the two)."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    joint = tokenizer(prompt + answer, add_special_tokens=False)["input_ids"]
    assert joint[: len(prompt_ids)] == prompt_ids
    return joint[len(prompt_ids) :]


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_score_matches_a_plain_forward_pass(name, models, prompts):
    """With the shared system prompt prefilled once (the default) and with every prompt prefilled
    whole (``share_prefix=False``), each candidate's score is its plain forward-pass log-probability."""
    lm = models[name]
    prompt_ids = [lm.tokenizer(prompt, add_special_tokens=False)["input_ids"] for prompt in prompts]
    assert len(os.path.commonprefix(prompt_ids)) > WINDOW  # a shared prefix longer than the sliding window
    candidates = ["1", "2.5", "ten", "3"]
    shared_engine = HFEngine(lm, progress=False)
    shared = shared_engine.score(prompts, candidates)
    whole = HFEngine(lm, progress=False, share_prefix=False).score(prompts, candidates)
    for row, prompt in enumerate(prompts):
        for k, candidate in enumerate(candidates):
            answer = answer_in_context(lm.tokenizer, prompt, candidate) + [shared_engine.end_of_turn]
            expected = sum(plain_logprobs(lm, prompt, answer))
            assert shared.logprobs[row, k] == pytest.approx(expected, abs=1e-4)
            assert whole.logprobs[row, k] == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_every_sampled_token_matches_a_plain_forward_pass(name, models, prompts):
    lm = models[name]
    engine = HFEngine(lm, progress=False)
    # top_k=2: samples share tree nodes for a few steps, then continue as rows; rare stop letters:
    # rows finish at different steps, so the rows are packed as they finish.
    configs = [
        SamplingConfig(top_k=2, max_new_tokens=10, seed=1),
        SamplingConfig(max_new_tokens=16, stop=RARE_LETTERS, seed=2),
    ]
    finished_early = 0
    for config in configs:
        for prompt, result in zip(prompts, engine.sample(prompts, 6, config), strict=True):
            for ids, logprobs, reason in zip(
                result.token_ids, result.token_logprobs, result.finish_reasons, strict=True
            ):
                assert len(ids) == len(logprobs) >= 1
                assert logprobs == pytest.approx(plain_logprobs(lm, prompt, ids), abs=1e-4)
                finished_early += reason == "stop"
    assert finished_early >= 4


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_greedy_matches_hf_generate(name, models, prompts):
    lm = models[name]
    ours = HFEngine(lm, progress=False).sample(prompts, 1, SamplingConfig(temperature=0, max_new_tokens=10))
    for prompt, result in zip(prompts, ours, strict=True):
        inputs = lm.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        out = lm.model.generate(**inputs, do_sample=False, max_new_tokens=10, pad_token_id=lm.tokenizer.pad_token_id)
        assert result.token_ids[0] == out[0, inputs["input_ids"].shape[1] :].tolist()


@pytest.mark.parametrize("name", ["llama", "gemma2"])
def test_callers_outside_the_engine_get_the_models_own_attention(name, models, prompts):
    """During an engine call the model's attention points at the workbench kernel; a call from
    elsewhere (another thread, no active pass) must still get the model's own kernel and mask."""
    lm = models[name]
    batch = lm.tokenizer(prompts[:2], return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        expected = lm.model(**batch).logits
    HFEngine(lm, progress=False).score(prompts[:1], ["1"])  # registers the kernel
    original = lm.model.config._attn_implementation or "eager"
    registered = next(n for n, base in attention._FALLBACK_OF.items() if base == original)
    lm.model.config._attn_implementation = registered  # as another thread sees the model mid-call
    try:
        with torch.no_grad():
            got = lm.model(**batch).logits
    finally:
        lm.model.config._attn_implementation = original
    torch.testing.assert_close(got, expected)


def test_the_sliding_window_bites(tokenizer, models, prompts):
    """Without the window the same weights give other probabilities: the tests above are not vacuous."""
    windowed = models["mistral"]
    unwindowed = tiny_model("mistral", tokenizer, sliding_window=None)
    answer = tokenizer("3", add_special_tokens=False)["input_ids"]
    assert (
        abs(sum(plain_logprobs(windowed, prompts[1], answer)) - sum(plain_logprobs(unwindowed, prompts[1], answer)))
        > 1e-3
    )


def test_end_of_turn_comes_from_the_chat_template_then_the_generation_config(tokenizer, models, prompts):
    assert end_of_turn(tokenizer).token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")
    # A template that ends assistant turns with another special token than eos (as Gemma's <end_of_turn>).
    gemma_like = copy.deepcopy(tokenizer)
    gemma_like.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|endoftext|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    end = gemma_like.convert_tokens_to_ids("<|endoftext|>")
    assert end != gemma_like.eos_token_id and end_of_turn(gemma_like).token_id == end
    lm = models["llama"]
    engine = HFEngine(
        LoadedModel(lm.model, gemma_like, "tiny-llama", lm.device, "fp32", None, {"name": "gemma-like"}), progress=False
    )
    assert engine.end_of_turn == end and end in engine.eos_ids
    prompt = gemma_like.apply_chat_template(
        [{"role": "user", "content": "Rate it."}], tokenize=False, add_generation_prompt=True
    )
    scored = engine.score([prompt], ["4"])
    answer = gemma_like("4", add_special_tokens=False)["input_ids"] + [end]
    assert scored.logprobs[0, 0] == pytest.approx(sum(plain_logprobs(lm, prompt, answer)), abs=1e-4)
    # No chat template: the generation config's first end-of-sequence id, and all of them stop sampling.
    plain = copy.deepcopy(tokenizer)
    plain.chat_template = None
    generation = copy.deepcopy(lm.model.generation_config)
    generation.eos_token_id = [5, 7]
    assert end_of_turn(plain, generation).token_id == 5
    model = copy.copy(lm.model)
    model.generation_config = generation
    engine = HFEngine(
        LoadedModel(model, plain, "tiny-llama", lm.device, "fp32", None, {"name": "plain"}), progress=False
    )
    assert {5, 7} <= engine.eos_ids and engine.end_of_turn == 5


def test_untested_architectures_are_refused(tokenizer):
    config = transformers.GPTNeoXConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4
    )
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    with pytest.raises(NotImplementedError, match="gpt_neox"):
        HFEngine(LoadedModel(model, tokenizer, "tiny-neox", torch.device("cpu"), "fp32", None, {}), progress=False)


def test_installed_transformers_is_in_the_pinned_range():
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    pin = re.search(r'"transformers([^"]*)"', pyproject).group(1)
    assert Version(transformers.__version__) in SpecifierSet(pin), (
        f"transformers {transformers.__version__} is outside the tested range {pin}"
    )
