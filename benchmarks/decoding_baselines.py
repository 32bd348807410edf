"""What the decoding benchmark measures the engine against: HF ``generate`` and what a careful user writes by hand.

* :func:`hf_generate`: ``model.generate(num_return_sequences=N)``; every prompt is copied N times
  *before* the prefill.
* :func:`hf_generate_shared_prefill`: the prompt prefilled once, its KV cache repeated to N rows
  (``DynamicCache.batch_repeat_interleave``), then ``generate`` samples from it.
* :func:`prefill_once_sampler`: the same by hand: prefill once, expand the KV cache to N rows,
  then sample token by token in a plain loop.
* :func:`one_pass_scorer`: grid scoring by hand: prefill once, expand the KV cache to K rows,
  then all K candidates (each followed by the end-of-turn token) in one forward pass.

Each function takes a list of prompts and runs them as ONE left-padded batch; the benchmark calls
it once per prompt for "one prompt at a time". Samplers return the number of tokens generated
(up to and including the end of turn), so that tokens/s can be reported.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache


def _encode(lm, prompts: list[str]):
    """Left-padded ids, mask and real-token positions (padding never shifts a position)."""
    encoded = lm.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    ids, mask = encoded["input_ids"].to(lm.device), encoded["attention_mask"].to(lm.device)
    return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)


def _generated(tokens: torch.Tensor, eos: list[int]) -> int:
    """Tokens per row up to and including the first end-of-sequence token, summed over rows."""
    ended = torch.isin(tokens, torch.tensor(eos, device=tokens.device))
    first_end = torch.where(ended.any(dim=1), ended.float().argmax(dim=1) + 1, tokens.shape[1])
    return int(first_end.sum())


def _eos(lm) -> list[int]:
    configured = lm.model.generation_config.eos_token_id
    ids = configured if isinstance(configured, (list, tuple)) else [configured]
    return sorted({i for i in ids + [lm.tokenizer.eos_token_id] if i is not None})


def _sampling(lm, n: int, max_new_tokens: int, temperature: float) -> dict:
    return dict(
        do_sample=True,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_k=0,
        top_p=1.0,
        pad_token_id=lm.tokenizer.pad_token_id,
        eos_token_id=_eos(lm),
    )


@torch.inference_mode()
def hf_generate(lm, prompts: list[str], n: int, max_new_tokens: int, seed: int, temperature: float = 1.0) -> int:
    ids, mask, _ = _encode(lm, prompts)
    torch.manual_seed(seed)
    out = lm.model.generate(
        input_ids=ids, attention_mask=mask, num_return_sequences=n, **_sampling(lm, n, max_new_tokens, temperature)
    )
    return _generated(out[:, ids.shape[1] :], _eos(lm))


@torch.inference_mode()
def hf_generate_shared_prefill(
    lm, prompts: list[str], n: int, max_new_tokens: int, seed: int, temperature: float = 1.0
) -> int:
    ids, mask, positions = _encode(lm, prompts)
    cache = DynamicCache()
    # All but the last prompt token: generate feeds that one itself, on top of the repeated cache.
    lm.model(
        input_ids=ids[:, :-1],
        attention_mask=mask[:, :-1],
        position_ids=positions[:, :-1],
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    cache.batch_repeat_interleave(n)
    torch.manual_seed(seed)
    out = lm.model.generate(
        input_ids=ids.repeat_interleave(n, dim=0),
        attention_mask=mask.repeat_interleave(n, dim=0),
        past_key_values=cache,
        **_sampling(lm, n, max_new_tokens, temperature),
    )
    return _generated(out[:, ids.shape[1] :], _eos(lm))


@torch.inference_mode()
def prefill_once_sampler(
    lm, prompts: list[str], n: int, max_new_tokens: int, seed: int, temperature: float = 1.0
) -> int:
    ids, mask, positions = _encode(lm, prompts)
    cache = DynamicCache()
    out = lm.model(
        input_ids=ids,
        attention_mask=mask,
        position_ids=positions,
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    cache.batch_repeat_interleave(n)
    mask = mask.repeat_interleave(n, dim=0)
    position = positions[:, -1].repeat_interleave(n) + 1
    logits = out.logits[:, -1].repeat_interleave(n, dim=0)
    generator = torch.Generator(device=lm.device).manual_seed(seed)
    eos = torch.tensor(_eos(lm), device=lm.device)
    done = torch.zeros(len(position), dtype=torch.bool, device=lm.device)
    generated = 0
    for step in range(max_new_tokens):
        token = torch.multinomial(torch.softmax(logits.float() / temperature, dim=-1), 1, generator=generator)[:, 0]
        generated += int((~done).sum())
        done |= torch.isin(token, eos)
        if bool(done.all()) or step == max_new_tokens - 1:
            break
        mask = torch.cat([mask, mask.new_ones((len(mask), 1))], dim=1)
        out = lm.model(
            input_ids=token[:, None],
            attention_mask=mask,
            position_ids=position[:, None],
            past_key_values=cache,
            use_cache=True,
        )
        position, logits = position + 1, out.logits[:, -1]
    return generated


@torch.inference_mode()
def one_pass_scorer(lm, prompts: list[str], candidates: list[str], end_of_turn: int) -> torch.Tensor:
    """(B, K) log P(candidate, then end of turn | prompt)."""
    ids, mask, positions = _encode(lm, prompts)
    cache = DynamicCache()
    out = lm.model(
        input_ids=ids,
        attention_mask=mask,
        position_ids=positions,
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # (B, vocab)
    answers = [lm.tokenizer(c, add_special_tokens=False)["input_ids"] + [end_of_turn] for c in candidates]
    k, width = len(answers), max(len(a) for a in answers) - 1
    feed = torch.zeros((k, width), dtype=torch.long)
    feed_mask = torch.zeros((k, width), dtype=torch.long)
    for row, answer in enumerate(answers):
        feed[row, : len(answer) - 1], feed_mask[row, : len(answer) - 1] = torch.tensor(answer[:-1]), 1
    batch = len(prompts)
    feed, feed_mask = feed.repeat(batch, 1).to(lm.device), feed_mask.repeat(batch, 1).to(lm.device)
    cache.batch_repeat_interleave(k)
    feed_positions = positions[:, -1].repeat_interleave(k)[:, None] + 1 + torch.arange(width, device=lm.device)
    full_mask = torch.cat([mask.repeat_interleave(k, dim=0), feed_mask], dim=1)
    out = lm.model(
        input_ids=feed, attention_mask=full_mask, position_ids=feed_positions, past_key_values=cache, use_cache=True
    )
    logprobs = torch.log_softmax(out.logits.float(), dim=-1)
    totals = torch.zeros((batch, k), dtype=torch.float64)
    for b in range(batch):
        for row, answer in enumerate(answers):
            terms = logprobs[b * k + row, torch.arange(len(answer) - 1), torch.tensor(answer[1:])]
            totals[b, row] = first[b, answer[0]].double() + terms.double().sum()
    return totals
