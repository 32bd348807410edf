"""The token that ends an assistant turn, from the chat template and the generation config.

``tokenizer.eos_token`` is not the end of a turn for every chat model: Gemma ends a turn with
``<end_of_turn>`` while its EOS is ``<eos>``; Llama 3 with ``<|eot_id|>`` (its EOS is
``<|end_of_text|>``). Exact scoring appends the end of turn to each candidate, so backends that
score through another server (prompt + candidate + end of turn, echoed) must know it.

The rule: render a chat with a known assistant reply through the chat template; the first token
after the reply is the end of turn when it is a special token. Otherwise (no chat template, or a
template that ends turns with plain text), the first ``eos_token_id`` of the generation config,
else the tokenizer's EOS.

Example with a tiny ChatML tokenizer built from scratch (no download):

>>> from tokenizers import Tokenizer, models, pre_tokenizers
>>> from transformers import PreTrainedTokenizerFast
>>> words = {"<|im_start|>": 0, "<|im_end|>": 1, "<eos>": 2, "user": 3, "assistant": 4, "hi": 5, "\\n": 6}
>>> backend = Tokenizer(models.WordLevel(words, unk_token="hi"))
>>> backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
>>> tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>",
...                               additional_special_tokens=["<|im_start|>", "<|im_end|>"])
>>> tok.chat_template = ("{% for m in messages %}<|im_start|>{{ m.role }}\\n{{ m.content }}<|im_end|>\\n{% endfor %}"
...                      "{% if add_generation_prompt %}<|im_start|>assistant\\n{% endif %}")
>>> end_of_turn(tok)
EndOfTurn(token_id=1, text='<|im_end|>', source='chat template')
>>> tok.chat_template = None
>>> end_of_turn(tok)
EndOfTurn(token_id=2, text='<eos>', source='tokenizer eos')
"""

from __future__ import annotations

from dataclasses import dataclass

_PROBE = "Probe reply 42."  # an assistant reply no template rewrites


@dataclass(frozen=True)
class EndOfTurn:
    """The end-of-turn token of a model.

    Attributes:
        token_id: its id in the vocabulary.
        text: its text (a special token such as ``<|im_end|>``), which a server tokenises back to
            the same id.
        source: where it came from: "chat template", "generation config" or "tokenizer eos".
    """

    token_id: int
    text: str
    source: str


def end_of_turn(tokenizer, generation_config=None) -> EndOfTurn:
    """The token that ends an assistant turn (see the module docstring for the rule).

    Args:
        tokenizer: a Hugging Face tokenizer (its chat template, if any, is used).
        generation_config: the model's ``GenerationConfig`` (or anything with ``eos_token_id``).

    Returns:
        An :class:`EndOfTurn`.

    Raises:
        ValueError: when neither the template, the generation config nor the tokenizer names one.
    """
    from_template = _from_chat_template(tokenizer)
    if from_template is not None:
        return EndOfTurn(from_template, tokenizer.convert_ids_to_tokens(from_template), "chat template")
    configured = getattr(generation_config, "eos_token_id", None)
    if isinstance(configured, (list, tuple)):
        configured = configured[0] if configured else None
    if configured is not None:
        return EndOfTurn(int(configured), tokenizer.convert_ids_to_tokens(int(configured)), "generation config")
    if tokenizer.eos_token_id is not None:
        return EndOfTurn(tokenizer.eos_token_id, tokenizer.eos_token, "tokenizer eos")
    raise ValueError(
        "the model names no end-of-turn token: no chat template, no eos_token_id in its generation config or tokenizer"
    )


def _from_chat_template(tokenizer) -> int | None:
    """The special token that follows an assistant reply in the rendered chat template, if any."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    chat = [{"role": "user", "content": "Hello."}, {"role": "assistant", "content": _PROBE}]
    try:
        rendered = tokenizer.apply_chat_template(chat, tokenize=False)
    except Exception:  # templates may refuse a chat shape (e.g. require a system turn): fall back
        return None
    if not isinstance(rendered, str) or _PROBE not in rendered:
        return None
    after = rendered[rendered.rindex(_PROBE) + len(_PROBE) :]
    ids = tokenizer(after, add_special_tokens=False)["input_ids"]
    if ids and ids[0] in set(tokenizer.all_special_ids):
        return int(ids[0])
    return None
