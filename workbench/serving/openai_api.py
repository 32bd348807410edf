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
* ``logprobs=0``: the log-probability of each generated token (temperature 1, unfiltered, as
  vLLM reports it); with ``echo`` also of each prompt token, from one plain forward pass
  (:func:`workbench.inference.prompt_logprobs.prompt_logprobs`). ``logprobs=k`` (1..5) adds the
  k most likely alternatives: for prompt tokens only (``echo`` with ``max_tokens=0``, the scoring
  request), since the engine keeps no alternatives of sampled tokens.
* ``finish_reason`` is ``"stop"`` (end of turn, or a stop string, named by ``stop_reason`` as
  vLLM does; ``null`` for the end of turn) or ``"length"``.
* Not served, refused with 422 rather than ignored: streaming, penalties, ``best_of`` > 1,
  ``suffix``, token-id prompts.

``/v1/models`` lists the one model, with two extensions: ``fingerprint`` (the stage's weights
fingerprint, no filesystem paths) and ``end_of_turn`` (the text of the end-of-turn token, which an
echo-scoring client appends to each candidate).
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import astuple

from fastapi import FastAPI, HTTPException, Request
from pydantic import Field, model_validator

from workbench.inference.end_of_turn import end_of_turn
from workbench.inference.types import SamplingConfig
from workbench.inference.prompt_logprobs import prompt_logprobs
from workbench.serving.schemas import NonEmptyText, SamplingTemperature, Seed, TopP, _Strict
from workbench.serving.service import Service, limit_error

MAX_TOP_LOGPROBS = 5


class CompletionRequest(_Strict):
    """``POST /v1/completions`` (the fields of OpenAI's completions API this server serves)."""

    model: str
    prompt: NonEmptyText | list[NonEmptyText] = Field(description="one prompt or a list (token-id prompts are not served)")
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
            raise ValueError("presence_penalty/frequency_penalty: penalties are not served (they change the distribution)")
        if self.best_of not in (None, 1):
            raise ValueError("best_of: only 1 is served")
        if self.suffix:
            raise ValueError("suffix: insertion is not served")
        if self.max_tokens == 0 and not self.echo:
            raise ValueError("max_tokens: 0 is allowed only with echo=true (scoring the prompt)")
        if self.logprobs and self.max_tokens != 0:
            raise ValueError("logprobs: alternatives (logprobs > 0) are served for prompt tokens only (echo=true, max_tokens=0); use logprobs=0")
        if isinstance(self.stop, list) and len(self.stop) > 16:
            raise ValueError("stop: at most 16 stop strings")
        return self

    @property
    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

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
    created = int(time.time())

    def model_card() -> dict:
        return {
            "id": served_name,
            "object": "model",
            "created": created,
            "owned_by": "workbench",
            "root": served_name,
            "max_model_len": config.max_total_tokens,
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
            raise HTTPException(404, detail=f"the model {body.model!r} does not exist; this server serves {served_name!r}")
        prompts, n = body.prompts, body.n or 1
        max_tokens = 16 if body.max_tokens is None else body.max_tokens
        if len(prompts) > config.max_prompts:
            raise limit_error(["prompt"], f"{len(prompts)} prompts exceed the limit of {config.max_prompts} per request")
        if n > config.max_n:
            raise limit_error(["n"], f"n={n} exceeds the limit of {config.max_n} samples per prompt")
        location = (lambda i: ["prompt"]) if isinstance(body.prompt, str) else (lambda i: ["prompt", i])
        counts = await service.count_prompt_tokens(prompts, location, max_tokens, "max_tokens")

        echoed = None
        if body.echo and body.logprobs is not None:
            top = body.logprobs
            echoed, _ = await service.run(
                request, "/v1/completions", ("prompt_logprobs", top), prompts,
                lambda batch, cancelled: prompt_logprobs(engine.model, engine.tokenizer, batch, top),
            )
        samples = None
        if max_tokens > 0:
            sampling = body.sampling_config()
            samples, _ = await service.run(
                request, "/v1/completions", ("generate", n, astuple(sampling)), prompts, service.sampler(n, sampling),
                interruptible=True,
            )
        choices = await service.off_loop(_choices, service.tokenizer, body, prompts, n, echoed, samples)
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
            "usage": {"prompt_tokens": sum(counts), "completion_tokens": generated, "total_tokens": sum(counts) + generated},
        }


def _choices(tokenizer, body: CompletionRequest, prompts: list[str], n: int, echoed, samples) -> list[dict]:
    """OpenAI choices, ``n`` per prompt in prompt order (index = prompt * n + sample)."""
    as_ids = bool(body.return_tokens_as_token_ids)

    def token_text(token_id: int) -> str:
        return f"token_id:{token_id}" if as_ids else tokenizer.decode([token_id])

    choices = []
    for p, prompt in enumerate(prompts):
        for k in range(n if samples is not None else 1):
            text = prompt if body.echo else ""
            logprobs = None
            if body.logprobs is not None:
                logprobs = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
                if echoed is not None:
                    scored = echoed[p]
                    logprobs["tokens"] += [token_text(t) for t in scored.token_ids]
                    logprobs["token_logprobs"] += scored.logprobs
                    logprobs["top_logprobs"] += [None if top is None else {token_text(t): v for t, v in top.items()} for top in scored.top]
                    logprobs["text_offset"] += scored.offsets
            finish, stop_reason = "length", None
            if samples is not None:
                sample = samples[p]
                text += sample.texts[k]
                finish, stop_reason = _finish(tokenizer, sample.token_ids[k], sample.finish_reasons[k], body)
                if logprobs is not None:
                    offset = len(prompt) if body.echo else 0
                    for token_id, value in zip(sample.token_ids[k], sample.token_logprobs[k]):
                        logprobs["tokens"].append(token_text(token_id))
                        logprobs["token_logprobs"].append(value)
                        logprobs["top_logprobs"].append(None)
                        logprobs["text_offset"].append(offset)
                        offset += len(tokenizer.decode([token_id], skip_special_tokens=True))
            if logprobs is not None and body.logprobs == 0:
                logprobs["top_logprobs"] = None
            choices.append({"index": len(choices), "text": text, "logprobs": logprobs, "finish_reason": finish, "stop_reason": stop_reason})
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
