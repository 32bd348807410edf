"""Request and response bodies of the serving API (pydantic, strict: unknown fields are refused).

A request names its input either as ``prompts`` (fully formatted strings, the chat template
already applied, exactly what :class:`workbench.inference.engine.HFEngine` takes) or as ``messages`` (one
chat, which the server formats with the model's chat template).

Validation is strict, so that a client bug is an error and never a silent guess: ``"5"`` or
``true`` for an integer, ``"0.7"`` for a number and ``1`` for a boolean are refused (422), and so
are non-finite numbers (``NaN``, ``Infinity``). Temperatures are either 0 (greedy) or at least
:data:`MIN_TEMPERATURE`: below that, softmax(logits / T) overflows float32 (issue 10 saw token
49151 repeated at 1e-45 and ``null`` probabilities at 1e-300), and a temperature that small
is greedy decoding in all but name.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from workbench.inference.types import SamplingConfig

MIN_TEMPERATURE = 1e-4
"""The smallest positive temperature served; 0 means greedy decoding."""
SEED_RANGE = (-(2**63), 2**63 - 1)

NonEmptyText = Annotated[str, StringConstraints(min_length=1)]
Seed = Annotated[int, Field(ge=SEED_RANGE[0], le=SEED_RANGE[1])]


def _temperature_floor(value: float) -> float:
    if 0 < value < MIN_TEMPERATURE:
        raise ValueError(f"temperature must be 0 (greedy) or at least {MIN_TEMPERATURE}; got {value!r}")
    return value


SamplingTemperature = Annotated[float, Field(ge=0, allow_inf_nan=False), AfterValidator(_temperature_floor)]
"""0 (greedy) or a finite temperature >= MIN_TEMPERATURE."""
ScoringTemperature = Annotated[float, Field(ge=MIN_TEMPERATURE, allow_inf_nan=False)]
"""A finite temperature >= MIN_TEMPERATURE (scoring has no greedy case)."""
TopP = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]


class _Strict(BaseModel):
    # extra="forbid": a misspelt field ("temprature") is an error, not silently the default.
    # strict=True: no coercion between types ("5" is not 5, true is not 1).
    model_config = ConfigDict(extra="forbid", strict=True)


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
    """Sampling request; the settings mirror :class:`workbench.inference.types.SamplingConfig`."""

    n: int = Field(1, ge=1, description="samples per prompt")
    temperature: SamplingTemperature = Field(1.0, description=f"0 for greedy, else at least {MIN_TEMPERATURE}")
    top_p: TopP = 1.0
    top_k: int = Field(0, ge=0)
    max_new_tokens: int = Field(32, ge=1)
    stop: list[NonEmptyText] = Field(default_factory=list, max_length=16)
    seed: Seed = 0
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
    """Exact probabilities of candidate answers (see :meth:`workbench.inference.engine.HFEngine.score`)."""

    candidates: list[str] = Field(min_length=1)
    temperature: ScoringTemperature = Field(1.0, description=f"at least {MIN_TEMPERATURE}")


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
