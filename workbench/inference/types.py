"""The value types every decoding backend speaks: what to sample, what comes back, exact grid scores.

They live apart from any backend so that the :class:`~workbench.inference.protocol.Engine` protocol,
and code above it, never import a concrete engine.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import numpy as np

from workbench.inference.logits import check_temperature


@dataclass
class SamplingConfig:
    """Decoding settings. ``temperature=0`` means greedy decoding.

    Attributes:
        temperature: softmax temperature; 0 for argmax. Positive temperatures below
            :data:`~workbench.inference.logits.MIN_TEMPERATURE` (1e-300) are refused; tiny ones
            above it are computed exactly and draw the argmax (ties split evenly).
        top_p: nucleus mass, 1 disables.
        top_k: keep the k most likely tokens, 0 disables.
        max_new_tokens: generation budget per sample.
        stop: strings that end a sample; the returned text stops before them.
        seed: random seed; the same seed gives the same samples on the same device and dtype.
    """

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 32
    stop: tuple[str, ...] = ()
    seed: int = 0

    def __post_init__(self):
        self.stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)
        for name in ("temperature", "top_p"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ValueError(f"SamplingConfig.{name} must be a finite number, got {value!r}")
        for name in ("top_k", "max_new_tokens", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ValueError(f"SamplingConfig.{name} must be an integer, got {value!r}")
        if self.temperature != 0:
            check_temperature(self.temperature)
        if not 0 < self.top_p <= 1 or self.top_k < 0 or self.max_new_tokens < 1:
            raise ValueError(f"invalid sampling settings: {self}")
        if not all(isinstance(s, str) and s for s in self.stop):
            raise ValueError(f"stop strings must be non-empty strings, got {self.stop!r}")
        # One spelling per setting, so that 1 and 1.0 make the same cache key.
        self.temperature, self.top_p = float(self.temperature), float(self.top_p)
        self.top_k, self.max_new_tokens, self.seed = int(self.top_k), int(self.max_new_tokens), int(self.seed)


@dataclass
class SampleSet:
    """The N samples drawn for one prompt.

    Attributes:
        texts: N decoded answers (special tokens removed, cut before any stop string).
        token_ids: N lists of generated token ids (the end-of-turn token included when hit).
        token_logprobs: N lists, the model's log-probability (temperature 1, unfiltered) of each
            generated token.
        finish_reasons: N of "eos", "stop" or "length".
    """

    texts: list[str]
    token_ids: list[list[int]]
    token_logprobs: list[list[float]]
    finish_reasons: list[str]


@dataclass
class GridScore:
    """Exact distribution over a grid of candidate answers, for B prompts and K candidates.

    Attributes:
        candidates: the K candidate strings.
        logprobs: (B, K) log P(candidate, then end of answer | prompt).
        probs: (B, K) the same, renormalised over the grid.
        outside_mass: (B,) probability of all answers not on the grid.
    """

    candidates: list[str]
    logprobs: np.ndarray
    probs: np.ndarray = field(init=False)
    outside_mass: np.ndarray = field(init=False)

    def __post_init__(self):
        self.logprobs = np.asarray(self.logprobs, dtype=np.float64)
        if np.isnan(self.logprobs).any() or np.isposinf(self.logprobs).any():
            raise ValueError("GridScore log-probabilities must not be NaN or +inf")
        top = self.logprobs.max(axis=1, keepdims=True)
        # A row whose every candidate has probability 0 renormalises to uniform, never to NaN.
        weights = np.where(np.isneginf(top), 1.0, np.exp(self.logprobs - np.where(np.isneginf(top), 0.0, top)))
        self.probs = weights / weights.sum(axis=1, keepdims=True)
        self.outside_mass = np.clip(1.0 - np.exp(self.logprobs).sum(axis=1), 0.0, 1.0)
