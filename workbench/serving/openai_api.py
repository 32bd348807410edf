"""The OpenAI-compatible completions API of the workbench server: ``/v1/completions``, ``/v1/models``.

Any client of that API (the ``openai`` SDK, lm-evaluation-harness's ``local-completions``,
:class:`workbench.inference.openai_compat.OpenAIEngine`) can then call a workbench stage, and
SimCT can compare it with the same model behind vLLM, TGI or llama.cpp's server.

What is served, and how it maps onto the engine:

* sampling: ``n``, ``temperature`` (0 = greedy; else at least
  :data:`~workbench.serving.schemas.MIN_TEMPERATURE`), ``top_p``, ``max_tokens``, ``stop``,
  ``seed`` go to :meth:`Engine.sample` unchanged, so a seeded request returns exactly what the
  engine returns in process; ``top_k`` and ``return_tokens_as_token_ids`` are vLLM's extensions.
  A request without a seed gets a random one.
* ``prompt``: a text, a list of texts, one list of token ids or a list of them (what
  lm-evaluation-harness's ``local-completions`` sends by default). Token ids are used as given,
  never re-tokenised (:meth:`HFEngine.sample_token_ids`); their echo is their decoded text.
* ``logprobs=0``: the log-probability of each generated token (temperature 1, unfiltered, as
  vLLM reports it); with ``echo`` also of each prompt token, from one plain forward pass
  (:func:`workbench.inference.prompt_logprobs.sequence_logprobs`). ``logprobs=k`` (1..5) adds the
  k most likely alternatives at every position, prompt and generated tokens alike, at any
  temperature: the sampler keeps no alternatives, so a request that generates and asks for them
  scores each prompt + sample in one more forward pass, and reports that pass's values (so a
  greedy token is its own top alternative). ``echo`` with ``max_tokens=1, logprobs=1`` is lm-eval's
  log-likelihood request.
* ``finish_reason`` is ``"stop"`` (end of turn, or a stop string, named by ``stop_reason`` as
  vLLM does; ``null`` for the end of turn) or ``"length"``.
* Not served, refused with 422 rather than ignored: streaming, penalties, ``best_of`` > 1,
  ``suffix``.

``/v1/models`` lists the one model, with extensions: ``fingerprint`` (the stage's weights
fingerprint, no filesystem paths), ``end_of_turn`` (the text of the end-of-turn token, which an
echo-scoring client appends to each candidate), and the limits ``max_prompts`` (per request) and
``max_n`` (samples per prompt), which tell a client how to split its requests without probing.
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import astuple
from typing import Annotated

from fastapi import FastAPI, HTTPException, Request
from pydantic import Field, model_validator

from workbench.inference.end_of_turn import end_of_turn
from workbench.inference.prompt_logprobs import sequence_logprobs
from workbench.inference.types import SamplingConfig
from workbench.serving.schemas import NonEmptyText, SamplingTemperature, Seed, TopP, _Strict
from workbench.serving.service import Service, limit_error

MAX_TOP_LOGPROBS = 5

TokenIds = Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)]
PromptField = (
    NonEmptyText
    | Annotated[list[NonEmptyText], Field(min_length=1)]
    | TokenIds
    | Annotated[list[TokenIds], Field(min_length=1)]
)


class CompletionRequest(_Strict):
    """``POST /v1/completions`` (the fields of OpenAI's completions API this server serves)."""

    model: str
    prompt: PromptField = Field(description="a text, a list of texts, a list of token ids, or a list of such lists")
    max_tokens: int | None = Field(16, ge=0, description="0 only with echo: score the prompt")
    temperature: SamplingTemperature | None = 1.0
    top_p: TopP | None = 1.0
    n: int | None = Field(1, ge=1)
    stream: bool | None = False
    logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    echo: bool | None = False
    stop: NonEmptyText | list[NonEmptyText] | None = None
    seed: Seed | None = None
    user: str | None = Field(None, max_length=256)
    presence_penalty: float | None = 0.0
    frequency_penalty: float | None = 0.0
    best_of: int | None = None
    suffix: str | None = None
    top_k: int | None = Field(0, ge=0, description="vLLM extension; 0 disables")
    return_tokens_as_token_ids: bool | None = Field(False, description="vLLM extension: tokens as 'token_id:<id>'")

    @model_validator(mode="after")
    def _served(self):
        if self.stream:
            raise ValueError("stream: streaming is not served; send stream=false")
        if self.presence_penalty or self.frequency_penalty:
            raise ValueError(
                "presence_penalty/frequency_penalty: penalties are not served (they change the distribution)"
            )
        if self.best_of not in (None, 1):
            raise ValueError("best_of: only 1 is served")
        if self.suffix:
            raise ValueError("suffix: insertion is not served")
        if self.max_tokens == 0 and not self.echo:
            raise ValueError("max_tokens: 0 is allowed only with echo=true (scoring the prompt)")
        if isinstance(self.stop, list) and len(self.stop) > 16:
            raise ValueError("stop: at most 16 stop strings")
        return self

    @property
    def token_prompts(self) -> bool:
        """True when the prompts are token ids."""
        return isinstance(self.prompt, list) and not isinstance(self.prompt[0], str)

    @property
    def prompts(self) -> list[str] | list[list[int]]:
        """The prompts as a list: of texts, or of token-id lists."""
        if isinstance(self.prompt, str) or (self.token_prompts and isinstance(self.prompt[0], int)):
            return [self.prompt]
        return list(self.prompt)

    def location(self, index: int) -> list:
        """Where prompt ``index`` is in the body, for error messages."""
        return ["prompt"] if isinstance(self.prompt, str) or isinstance(self.prompt[0], int) else ["prompt", index]

    def sampling_config(self) -> SamplingConfig:
        stop = [self.stop] if isinstance(self.stop, str) else (self.stop or [])
        return SamplingConfig(
            temperature=1.0 if self.temperature is None else self.temperature,
            top_p=1.0 if self.top_p is None else self.top_p,
            top_k=self.top_k or 0,
            max_new_tokens=16 if self.max_tokens is None else self.max_tokens,
            stop=tuple(stop),
            seed=secrets.randbits(63) if self.seed is None else self.seed,
        )


def add_openai_routes(app: FastAPI, service: Service) -> None:
    """Add ``/v1/models`` and ``/v1/completions`` to a server's app."""
    engine, config = service.engine, service.config
    served_name = config.served_model_name or service.fingerprint["name"]
    end = end_of_turn(engine.tokenizer, getattr(engine.model, "generation_config", None))
    vocabulary = len(service.tokenizer)
    created = int(time.time())

    def model_card() -> dict:
        return {
            "id": served_name,
            "object": "model",
            "created": created,
            "owned_by": "workbench",
            "root": served_name,
            "max_model_len": config.max_total_tokens,
            "max_prompts": config.max_prompts,
            "max_n": config.max_n,
            "fingerprint": service.fingerprint,
            "end_of_turn": end.text,
        }

    @app.get("/v1/models")
    async def models() -> dict:
        """The served model, with its fingerprint and end-of-turn token."""
        return {"object": "list", "data": [model_card()]}

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request) -> dict:
        """OpenAI completions: sample, or (``echo`` with ``max_tokens=0``) score the prompt."""
        if body.model not in (served_name, service.model_id):
            raise HTTPException(
                404, detail=f"the model {body.model!r} does not exist; this server serves {served_name!r}"
            )
        prompts, n = body.prompts, body.n or 1
        max_tokens = 16 if body.max_tokens is None else body.max_tokens
        if len(prompts) > config.max_prompts:
            raise limit_error(
                ["prompt"], f"{len(prompts)} prompts exceed the limit of {config.max_prompts} per request"
            )
        if n > config.max_n:
            raise limit_error(["n"], f"n={n} exceeds the limit of {config.max_n} samples per prompt")
        if body.token_prompts:
            counts = _check_token_prompts(prompts, body.location, vocabulary, config.max_total_tokens, max_tokens)
        else:
            counts = await service.count_prompt_tokens(prompts, body.location, max_tokens, "max_tokens")

        samples = None
        if max_tokens > 0:
            sampling = body.sampling_config()
            samples, _ = await service.run(
                request,
                "/v1/completions",
                ("generate", body.token_prompts, n, astuple(sampling)),
                prompts,
                service.sampler(n, sampling, token_ids=body.token_prompts),
                interruptible=True,
            )
        scored, tokenized = None, None
        if body.logprobs is not None:
            tokenized = await service.off_loop(_tokenized, service.tokenizer, prompts, body.token_prompts)
        # Log-probabilities of prompt tokens (echo), and of generated ones with their alternatives,
        # from forward passes: one per prompt, or one per sample when generated tokens need alternatives.
        per_sample = bool(body.logprobs) and samples is not None
        if per_sample or (body.echo and body.logprobs is not None):
            top = body.logprobs
            ids = [token_ids for token_ids, _ in tokenized]
            sequences = (
                [ids[p] + s.token_ids[k] for p, s in enumerate(samples) for k in range(n)] if per_sample else ids
            )
            scored, _ = await service.run(
                request,
                "/v1/completions",
                ("logprobs", top),
                sequences,
                lambda batch, cancelled: sequence_logprobs(engine.model, batch, top),
            )
        choices = await service.off_loop(_choices, service.tokenizer, body, n, tokenized, scored, per_sample, samples)
        generated = sum(len(ids) for s in samples or [] for ids in s.token_ids)
        service.metrics.prompt_tokens.inc(sum(counts))
        service.metrics.generated_tokens.inc(generated)
        return {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": served_name,
            "system_fingerprint": service.model_id,
            "choices": choices,
            "usage": {
                "prompt_tokens": sum(counts),
                "completion_tokens": generated,
                "total_tokens": sum(counts) + generated,
            },
        }


def _check_token_prompts(prompts: list[list[int]], location, vocabulary: int, limit: int, max_tokens: int) -> list[int]:
    """Token counts of token-id prompts; 422 for an id outside the vocabulary, 413 over the token limit."""
    for index, ids in enumerate(prompts):
        name = ".".join(map(str, location(index)))
        outside = next((position for position, token in enumerate(ids) if token >= vocabulary), None)
        if outside is not None:
            problem = f"token id {ids[outside]} at position {outside} is outside the vocabulary (size {vocabulary})"
            raise HTTPException(422, detail=f"{name}: {problem}")
        if len(ids) + max_tokens > limit:
            problem = f"{len(ids)} + max_tokens ({max_tokens}) exceeds max_total_tokens={limit}"
            raise limit_error(location(index), f"{name} has {len(ids)} tokens, and {problem}")
    return [len(ids) for ids in prompts]


def _tokenized(tokenizer, prompts: list, token_prompts: bool) -> list[tuple[list[int], list[int]]]:
    """(token ids, character offsets) of each prompt: a text's own tokenisation, or token ids as given."""
    if not token_prompts:
        encoded = tokenizer(prompts, add_special_tokens=False, return_offsets_mapping=True)
        pairs = zip(encoded["input_ids"], encoded["offset_mapping"])
        return [(ids, [int(pair[0]) for pair in offsets]) for ids, offsets in pairs]
    return [(list(ids), _offsets(tokenizer, ids, 0, generated=False)) for ids in prompts]


def _offsets(tokenizer, token_ids: list[int], start: int, generated: bool) -> list[int]:
    """Character offsets of tokens laid end to end from ``start``.

    Special tokens take their text's characters in a prompt (its echo shows them) and none in a
    generated answer (its text leaves them out).
    """
    offsets = []
    for token_id in token_ids:
        offsets.append(start)
        start += len(tokenizer.decode([token_id], skip_special_tokens=generated))
    return offsets


def _choices(tokenizer, body: CompletionRequest, n: int, tokenized, scored, per_sample: bool, samples) -> list[dict]:
    """OpenAI choices, ``n`` per prompt in prompt order (index = prompt * n + sample).

    ``scored`` holds (logprobs, top) per prompt (``per_sample`` False: prompt tokens only) or per
    choice (prompt and generated tokens); without it, generated tokens carry the sampler's values.
    """
    as_ids = bool(body.return_tokens_as_token_ids)

    def token_text(token_id: int) -> str:
        return f"token_id:{token_id}" if as_ids else tokenizer.decode([token_id])

    def add(logprobs: dict, token_ids, values, tops, offsets) -> None:
        logprobs["tokens"] += [token_text(t) for t in token_ids]
        logprobs["token_logprobs"] += list(values)
        logprobs["top_logprobs"] += [
            None if top is None else {token_text(t): v for t, v in top.items()} for top in tops
        ]
        logprobs["text_offset"] += offsets

    choices = []
    for p, prompt in enumerate(body.prompts):
        prompt_text = prompt if isinstance(prompt, str) else tokenizer.decode(prompt)
        for k in range(n if samples is not None else 1):
            text = prompt_text if body.echo else ""
            logprobs = None
            if body.logprobs is not None:
                logprobs = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
                prompt_ids, prompt_offsets = tokenized[p]
                values, tops = scored[p * n + k if per_sample else p] if scored is not None else ([], [])
                if body.echo:
                    add(logprobs, prompt_ids, values[: len(prompt_ids)], tops[: len(prompt_ids)], prompt_offsets)
            finish, stop_reason = "length", None
            if samples is not None:
                sample = samples[p]
                text += sample.texts[k]
                finish, stop_reason = _finish(tokenizer, sample.token_ids[k], sample.finish_reasons[k], body)
                if logprobs is not None:
                    generated = sample.token_ids[k]
                    offsets = _offsets(tokenizer, generated, len(prompt_text) if body.echo else 0, generated=True)
                    if per_sample:
                        add(logprobs, generated, values[len(prompt_ids) :], tops[len(prompt_ids) :], offsets)
                    else:
                        add(logprobs, generated, sample.token_logprobs[k], [None] * len(generated), offsets)
            if logprobs is not None and body.logprobs == 0:
                logprobs["top_logprobs"] = None
            choices.append(
                {
                    "index": len(choices),
                    "text": text,
                    "logprobs": logprobs,
                    "finish_reason": finish,
                    "stop_reason": stop_reason,
                }
            )
    return choices


def _finish(tokenizer, token_ids: list[int], reason: str, body: CompletionRequest) -> tuple[str, str | None]:
    """OpenAI's (finish_reason, stop_reason) for an engine finish reason ("eos", "stop", "length")."""
    if reason == "eos":
        return "stop", None
    if reason == "stop":
        stops = [body.stop] if isinstance(body.stop, str) else (body.stop or [])
        raw = tokenizer.decode(token_ids, skip_special_tokens=True)
        found = [(raw.find(s), s) for s in stops if s in raw]
        return "stop", min(found)[1] if found else None
    return "length", None
