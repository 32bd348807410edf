"""Request and response bodies of the serving API (pydantic; unknown fields are refused).

A request names its input either as ``prompts`` (fully formatted strings, the chat template
already applied, exactly what :class:`workbench.inference.engine.Engine` takes) or as ``messages`` (one
chat, which the server formats with the model's chat template).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from workbench.inference.engine import SamplingConfig

NonEmptyText = Annotated[str, StringConstraints(min_length=1)]


class _Strict(BaseModel):
    # extra="forbid": a misspelt field ("temprature") is an error, not silently the default.
    model_config = ConfigDict(extra="forbid")


class Message(_Strict):
    """One chat turn."""

    role: Literal["system", "user", "assistant"]
    content: str


class PromptInput(_Strict):
    """The input part shared by all requests."""

    prompts: list[NonEmptyText] | None = Field(None, min_length=1, description="formatted prompts")
    messages: list[Message] | None = Field(None, min_length=1, description="one chat, formatted by the server")
    request_id: str | None = Field(None, max_length=128, description="echoed back as 'id'")

    @model_validator(mode="after")
    def _exactly_one_input(self):
        if (self.prompts is None) == (self.messages is None):
            raise ValueError("give exactly one of 'prompts' (formatted strings) or 'messages' (one chat)")
        return self


class GenerateRequest(PromptInput):
    """Sampling request; the settings mirror :class:`workbench.inference.engine.SamplingConfig`."""

    n: int = Field(1, ge=1, description="samples per prompt")
    temperature: float = Field(1.0, ge=0, description="0 for greedy")
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0)
    max_new_tokens: int = Field(32, ge=1)
    stop: list[NonEmptyText] = Field(default_factory=list, max_length=16)
    seed: int = 0
    logprobs: bool = Field(False, description="also return token ids and per-token log-probabilities")

    def sampling_config(self) -> SamplingConfig:
        """The engine's settings for this request."""
        return SamplingConfig(
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            max_new_tokens=self.max_new_tokens,
            stop=tuple(self.stop),
            seed=self.seed,
        )


class ScoreRequest(PromptInput):
    """Exact probabilities of candidate answers (see :meth:`workbench.inference.engine.Engine.score`)."""

    candidates: list[str] = Field(min_length=1)
    temperature: float = Field(1.0, gt=0)


class Usage(BaseModel):
    """Token counts of one request."""

    prompt_tokens: int
    completion_tokens: int = 0


class Completion(BaseModel):
    """The samples of one prompt."""

    texts: list[str]
    finish_reasons: list[str]
    completion_tokens: list[int]
    token_ids: list[list[int]] | None = None
    token_logprobs: list[list[float]] | None = None


class _Answer(BaseModel):
    id: str = Field(description="the request_id sent, else one made up by the server")
    model: str = Field(description="fingerprint id of the model stage that answered")
    batch_size: int = Field(description="requests served by the same engine call (micro-batching)")
    usage: Usage


class GenerateResponse(_Answer):
    """One :class:`Completion` per prompt, in request order."""

    results: list[Completion]


class ScoreResponse(_Answer):
    """Distribution over the candidates, one row per prompt."""

    candidates: list[str]
    logprobs: list[list[float]]
    probs: list[list[float]]
    outside_mass: list[float]
