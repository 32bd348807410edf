"""The ``Engine`` protocol: what every decoding backend offers, and what code above it relies on.

Notebooks, SimCT and the cost code call an engine through four members only, so any backend that
has them can stand in for another:

* ``sample(prompts, n, config) -> list[SampleSet]``: ``n`` samples per formatted prompt;
* ``greedy(prompts, max_new_tokens, stop) -> list[str]``: the argmax answer per prompt;
* ``score(prompts, candidates, temperature) -> GridScore``: the exact probability of each
  candidate as a *complete* answer (candidate, then the end-of-turn token), per prompt;
* ``fingerprint``: a dict naming the model stage (and backend) the results come from; generation
  caches key on it and result files carry it.

Implementations:

===========================================================  ==================================================
:class:`workbench.inference.engine.HFEngine`                 HF model in process (CPU/GPU); the exact reference
:class:`workbench.serving.client.RemoteEngine`               the workbench server's own API over HTTP
:class:`workbench.inference.openai_compat.OpenAIEngine`      any OpenAI-compatible completions server
:class:`workbench.inference.llamacpp_engine.LlamaCppEngine`  GGUF models through llama.cpp (extra ``llama``)
:class:`workbench.inference.vllm_engine.VLLMEngine`          vLLM in process (extra ``vllm``, GPU)
:class:`workbench.inference.ray_engine.RayEngine`            prompts sharded over engine actors on Ray
===========================================================  ==================================================

An engine may also offer ``sample_grid(prompts, n, candidates, config)``, samples and the exact grid
distribution together (:mod:`workbench.inference.grid_sampler`); code above calls it through
:func:`~workbench.inference.grid_sampler.sample_with_grid`, which falls back to ``sample`` and ``score``.

The protocol is structural (:pep:`544`): a class need not inherit from it, and
``isinstance(x, Engine)`` checks that the four members exist.

>>> class Constant:
...     fingerprint = {"name": "constant"}
...     def sample(self, prompts, n, config=None): ...
...     def greedy(self, prompts, max_new_tokens=32, stop=()): ...
...     def score(self, prompts, candidates, temperature=1.0): ...
>>> isinstance(Constant(), Engine)
True
"""

from __future__ import annotations

import hashlib
from typing import Protocol, runtime_checkable

from workbench.inference.types import GridScore, SampleSet, SamplingConfig


@runtime_checkable
class Engine(Protocol):
    """A decoding backend: ``sample``, ``greedy``, ``score`` and ``fingerprint``.

    Prompts are fully formatted strings (chat template already applied). Results come back in the
    order of the prompts. See :class:`workbench.inference.engine.HFEngine` for the reference
    semantics of each method.
    """

    @property
    def fingerprint(self) -> dict:
        """The model stage (name, dtype, weights hash where known) and the backend that serves it."""
        ...

    def sample(self, prompts: list[str], n: int, config: SamplingConfig | None = None) -> list[SampleSet]:
        """``n`` samples for each of B prompts: B :class:`SampleSet`."""
        ...

    def greedy(self, prompts: list[str], max_new_tokens: int = 32, stop: tuple[str, ...] = ()) -> list[str]:
        """The greedy answer for each of B prompts."""
        ...

    def score(self, prompts: list[str], candidates: list[str], temperature: float = 1.0) -> GridScore:
        """(B, K) log-probabilities of K candidates as complete answers, and the mass outside them."""
        ...


@runtime_checkable
class ChatEngine(Engine, Protocol):
    """An :class:`Engine` that also carries its model's tokenizer, whose chat template formats the
    prompts it is given (``task.prompts(examples, engine.tokenizer, shots)``).

    The HF and vLLM engines have one; an :class:`~workbench.inference.openai_compat.OpenAIEngine`
    has one when it was given ``tokenizer=``.
    """

    tokenizer: object


def sampling_seed(seed: int, prompt: str) -> int:
    """A per-prompt seed derived from the run seed, for backends that take an integer seed.

    A prompt's samples then depend on the run seed and the prompt only, not on which other prompts
    share its batch or its worker, so sharded and single-process runs draw the same samples.

    >>> sampling_seed(0, "a") == sampling_seed(0, "a") != sampling_seed(1, "a")
    True
    """
    digest = hashlib.sha256(f"{seed}\0{prompt}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def greedy_by_sampling(engine, prompts: list[str], max_new_tokens: int = 32, stop: tuple[str, ...] = ()) -> list[str]:
    """Greedy answers as each prompt's one temperature-0 sample: ``greedy`` of every backend.

    Args:
        engine: anything with the protocol's ``sample``.
        prompts: B formatted prompts.
        max_new_tokens: most tokens per answer.
        stop: strings that end an answer.

    Returns:
        B answer texts.
    """
    config = SamplingConfig(temperature=0.0, max_new_tokens=max_new_tokens, stop=stop)
    return [result.texts[0] for result in engine.sample(prompts, 1, config)]
