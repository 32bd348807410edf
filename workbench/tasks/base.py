"""Tasks as data: a loader, a prompt template, an answer parser, a target grid and metrics.

A :class:`Task` turns examples into prompts (zero- or few-shot, through the model's chat template
when it has one) and answers back into numbers. Tasks are registered by name (:func:`register_task`),
or described by a spec file (:mod:`workbench.tasks.spec`); :func:`workbench.tasks.get_task` finds
either::

    task = get_task("sst5")                 # or get_task("my_reviews.yaml")
    shots = task.fewshot(5, seed=0)         # from the train split
    prompt = task.prompt(task.examples("test", limit=1)[0], tokenizer, shots)
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from workbench.tasks.loaders import Example

TASKS: dict[str, Callable[..., Task]] = {}


def register_task(name: str):
    """Register a factory that builds a :class:`Task` under ``name``."""

    def wrap(factory):
        TASKS[name] = factory
        return factory

    return wrap


def nested_sample(population: list, k: int, seed: int) -> list:
    """``k`` distinct elements drawn at random, each size's draw a prefix of every larger one's.

    The draws of :meth:`random.Random.sample` in its set-selection branch (uniform indices, a repeat
    drawn again), taken whatever ``k`` is: ``random.sample`` switches to another algorithm when ``k``
    is large for the population (e.g. 2,000 of 2,210), whose draws are no extension of the smaller
    ones. Where ``random.sample`` selects by set, both give the same elements in the same order.

    >>> import random
    >>> items = list(range(2210))
    >>> nested_sample(items, 2000, 0)[:300] == nested_sample(items, 300, 0) == random.Random(0).sample(items, 300)
    True
    >>> random.Random(0).sample(items, 2000)[:300] == random.Random(0).sample(items, 300)
    False
    """
    if not 0 <= k <= len(population):
        raise ValueError(f"cannot draw {k} distinct elements from {len(population)}")
    rng, chosen, drawn = random.Random(seed), set(), []
    for _ in range(k):
        index = rng.randrange(len(population))
        while index in chosen:
            index = rng.randrange(len(population))
        chosen.add(index)
        drawn.append(population[index])
    return drawn


@dataclass
class Task:
    """A task described as data.

    Attributes:
        name: registry name.
        load: split -> examples.
        instruction: the system prompt.
        render: example -> the user message.
        answer: example -> the gold answer as the model should write it (few-shot turns).
        parse: model text -> number, or None when no valid answer is found.
        grid: the values an answer can take (ratings 1..5, STS scores 0.0..5.0), or None for
            open numeric answers (GSM8K).
        grid_format: how a grid value is written as an answer string.
        metrics: default metric names.
        max_new_tokens: generation budget for one answer.
        stop: stop strings for sampling.
        fewshot_split: where few-shot examples come from.
        source: what the task was built from beyond its code (a spec's content and its data
            files' hashes), so that :attr:`identity` changes when they do.
    """

    name: str
    load: Callable[[str], list[Example]]
    instruction: str
    render: Callable[[Example], str]
    answer: Callable[[Example], str]
    parse: Callable[[str], float | None]
    grid: list[float] | None = None
    grid_format: str = "{:g}"
    metrics: tuple[str, ...] = ("squared_error", "absolute_error", "exact_match")
    max_new_tokens: int = 8
    stop: tuple[str, ...] = ()
    fewshot_split: str = "train"
    source: dict = field(default_factory=dict, repr=False)
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def identity(self) -> str:
        """A short hash of the name and :attr:`source`: equal for tasks built from equal specs and data."""
        blob = json.dumps({"name": self.name, "source": self.source}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def candidates(self) -> list[str]:
        """The grid as answer strings, for :meth:`workbench.inference.engine.HFEngine.score`."""
        if self.grid is None:
            raise ValueError(f"task {self.name!r} has no answer grid")
        return [self.grid_format.format(value) for value in self.grid]

    def examples(self, split: str, limit: int | None = None, seed: int = 0) -> list[Example]:
        """The examples of a split; with ``limit``, a seeded random subset of that size.

        Subsets of one seed are nested: the first ``m`` of a subset of size ``n > m`` are the subset of
        size ``m`` (:func:`nested_sample`), so a notebook that decodes 120 items finds them among the
        300 another notebook decoded, in the generation cache.
        """
        if split not in self._cache:
            self._cache[split] = self.load(split)
        examples = self._cache[split]
        if limit is None or limit >= len(examples):
            return list(examples)
        return nested_sample(examples, limit, seed)

    def off_grid(self, split: str) -> list[Example]:
        """The examples of ``split`` whose gold value is not on the answer grid (exact match can't hit them)."""
        if self.grid is None:
            return []
        return [
            ex
            for ex in self.examples(split)
            if min(abs(float(ex.target) - g) for g in self.grid) > 1e-9 * max(1.0, abs(float(ex.target)))
        ]

    def fewshot(self, k: int, seed: int = 0) -> list[Example]:
        """``k`` demonstration examples, spread over the answer range when there is a grid."""
        if k == 0:
            return []
        pool = self.examples(self.fewshot_split)
        order = random.Random(seed).sample(range(len(pool)), len(pool))
        if self.grid is None:
            return [pool[i] for i in order[:k]]
        # Round-robin over target bins (nearest integer), so demonstrations do not all share one label.
        bins: dict[int, list[Example]] = {}
        for i in order:
            bins.setdefault(round(float(pool[i].target)), []).append(pool[i])
        keys = sorted(bins, key=lambda b: random.Random(seed + b).random())
        chosen = []
        while len(chosen) < k:
            for b in keys:
                if bins[b] and len(chosen) < k:
                    chosen.append(bins[b].pop(0))
        return chosen

    def prompt(self, example: Example, tokenizer, shots: list[Example] = ()) -> str:
        """The full prompt for ``example``: chat template when the tokenizer has one, else plain text.

        Raises:
            ValueError: when ``example`` is one of its own demonstrations (its answer would be in the prompt).
        """
        if any(shot.id == example.id for shot in shots):
            raise ValueError(
                f"{self.name}: item {example.id!r} is one of its own few-shot demonstrations; "
                "draw shots from another split"
            )
        if getattr(tokenizer, "chat_template", None):
            messages = [{"role": "system", "content": self.instruction}]
            for shot in shots:
                messages += [
                    {"role": "user", "content": self.render(shot)},
                    {"role": "assistant", "content": self.answer(shot)},
                ]
            messages.append({"role": "user", "content": self.render(example)})
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        turns = [f"{self.render(shot)}\nAnswer: {self.answer(shot)}" for shot in shots]
        turns.append(f"{self.render(example)}\nAnswer:")
        return self.instruction + "\n\n" + "\n\n".join(turns)

    def prompts(self, examples: list[Example], tokenizer, shots: list[Example] = ()) -> list[str]:
        """:meth:`prompt` for many examples."""
        return [self.prompt(example, tokenizer, shots) for example in examples]
