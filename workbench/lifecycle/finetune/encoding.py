"""Training examples as token ids: a task's zero-shot prompt, the gold answer and the end-of-turn
token, tokenised exactly as :meth:`workbench.inference.engine.HFEngine.score` reads them, and the
hash of an encoded set that a resumed run checks.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from workbench.lifecycle.finetune.config import FinetuneConfig, resolve_task, training_examples
from workbench.tasks import Example, Task


@dataclass
class Encoded:
    """One training example as token ids; the loss covers ``input_ids[answer_start:]``."""

    input_ids: list[int]
    answer_start: int
    task: str
    target: float = float("nan")


def encode(task: Task, example: Example, tokenizer) -> Encoded:
    """Zero-shot prompt + gold answer + end-of-turn token, tokenised as :meth:`HFEngine.score` does.

    The answer is tokenised in context (after the prompt) when that leaves the prompt tokens
    unchanged, so training and scoring see the same answer tokens.
    """
    prompt = task.prompt(example, tokenizer, shots=[])
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer = task.answer(example)
    joint = tokenizer(prompt + answer, add_special_tokens=False)["input_ids"]
    if joint[: len(prompt_ids)] == prompt_ids and len(joint) > len(prompt_ids):
        answer_ids = joint[len(prompt_ids) :]
    else:
        answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    target = float(example.target) if isinstance(example.target, (int, float)) else float("nan")
    return Encoded(prompt_ids + answer_ids + [tokenizer.eos_token_id], len(prompt_ids), task.name, target)


def training_set(
    config: FinetuneConfig, tokenizer, examples: dict[str, list[Example]] | None = None, split: str = "train"
) -> list[Encoded]:
    """Encoded examples of every task of ``config`` (seeded subset of ``max_examples`` each).

    Subsets of one seed are nested (:func:`~workbench.lifecycle.finetune.config.training_examples`): a run on
    400 examples per task trains on the first 400 of a 2,500-example run's, so it reads the frozen-trunk outputs
    that run cached.

    Args:
        config: the run settings.
        tokenizer: the model's tokenizer (its chat template shapes the prompt).
        examples: optional ``{task: examples}`` (e.g. cleaned by :mod:`workbench.lifecycle.dataprep`);
            by default each task's ``split``.
        split: the split read when ``examples`` is not given.
    """
    encoded = []
    for spec in config.tasks:
        task = resolve_task(spec)
        given = examples[task.name] if examples is not None else task.examples(split)
        pool = training_examples(config, task.name, given)
        encoded += [
            e for e in (encode(task, example, tokenizer) for example in pool) if len(e.input_ids) <= config.max_length
        ]
    if not encoded:
        raise ValueError("no training examples (all longer than max_length?)")
    return encoded


def data_sha256(encoded: list[Encoded]) -> str:
    """Hash of the encoded training set: a resumed run must train on the same data."""
    return hashlib.sha256(
        json.dumps([(e.task, e.answer_start, e.input_ids, e.target) for e in encoded]).encode()
    ).hexdigest()
