"""Fine-tune a causal LM to answer workbench tasks in the workbench's own prompt format.

A training example is a task's zero-shot chat prompt (:meth:`Task.prompt` with no shots), then the
gold answer (:meth:`Task.answer`) and the end-of-turn token. The loss covers only the answer and
the end token: exactly the probability that :meth:`workbench.inference.engine.HFEngine.score` reads, so a
lower loss means more mass on the right grid answer and less outside the grid.

What keeps a CPU run affordable (measured in ``benchmarks/finetune_throughput.py``):

* bf16 autocast (``precision="bf16"``): matrix products run in bf16 (AMX/AVX-512 on recent CPUs)
  while the weights and the optimizer stay in fp32;
* logits only at the answer positions (an LM head over the whole vocabulary at every position is
  a large share of a naive step);
* training only the top ``train_layers`` layers (full fine-tuning of those) or LoRA on the top
  ``lora_layers``: back-propagation stops where the first trainable weight sits;
* a batch holds examples of one task, grouped by length, so its rows share the system prompt. That
  prefix is pushed through the model once per batch and its keys and values are expanded over the
  rows (gradients flow back through the expansion); it is about half of every sequence.

Objectives (``objective``): "ce", the answer tokens' cross-entropy; "mse", the squared error of
the model's exact predictive mean over the answer grid (:mod:`workbench.lifecycle.regression_loss`,
one tree forward pass per batch, as :meth:`HFEngine.score` does it); "mix" weighs both; "soft", the
ordinal objective: cross-entropy of the exact grid distribution against a Gaussian of sd
``soft_sd`` around the gold value; "soft_mix" weighs it with the squared error.

Model selection is on dev task metrics, not on training loss: every ``eval_every`` steps the dev
examples are scored over the grid (:func:`workbench.lifecycle.evaluation.dev_scores`: accuracy of
the exact mode for rating tasks, RMSE of the exact mean for scores), the best weights are kept, and
training stops after ``patience`` evaluations without improvement.

Checkpoints (trainable weights, optimizer, scheduler, step, RNG, losses, dev history) are written
atomically every ``save_every`` steps, and :func:`finetune` resumes from the latest readable one (an
unreadable newest checkpoint is reported with a warning naming the file, and the previous is used). The batch order is a
function of the seed and the step, so an interrupted and resumed run ends with the same weights as
an uninterrupted one. The final model, LoRA merged, is an ordinary Hugging Face folder that
:func:`workbench.inference.models.load_model` opens.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import random
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.figure import Figure  # noqa: F401  (doctests)
from transformers import AutoTokenizer, DynamicCache, get_linear_schedule_with_warmup

from workbench import tracking
from workbench.inference.engine import HFEngine
from workbench.inference.models import DEFAULT_MODEL, LoadedModel, load_model, weights_sha256
from workbench.lifecycle.evaluation import dev_scores
from workbench.lifecycle.regression_loss import candidate_tokens, grid_logprobs, grid_loss
from workbench.paths import cache_dir
from workbench.progress import tqdm
from workbench.tasks import Example, Task, get_task

MIN_SHARED_PREFIX = 16  # below this, a separate prefix pass costs more than it saves
# Fields that do not change what is learned: a run may resume or be reused across them.
_BOOKKEEPING = ("output_dir", "save_every", "keep_checkpoints", "device")
OBJECTIVES = ("ce", "mse", "mix", "soft", "soft_mix")
TaskSpec = str | dict  # a registered name (or a spec file path), or {"task": name, **options} for get_task


def resolve_task(spec: TaskSpec) -> Task:
    """The :class:`Task` of a config entry: ``get_task(name)`` or ``get_task(spec["task"], **options)``.

    >>> resolve_task("sst5").name, resolve_task({"task": "stsb"}).name
    ('sst5', 'stsb')
    """
    if isinstance(spec, str):
        return get_task(spec)
    if isinstance(spec, dict) and "task" in spec:
        return get_task(spec["task"], **{k: v for k, v in spec.items() if k != "task"})
    raise ValueError(f"a task must be a name or a dict with a 'task' key, got {spec!r}")


def task_fingerprint(task: Task, split: str = "train") -> str:
    """Hash of what a task teaches: its instruction, grid and the content of a split.

    A table task read from a file that has changed gets a new fingerprint, so cached runs keyed on
    it are not reused for other data.
    """
    examples = [(e.id, e.text, e.text_b, e.target) for e in task.examples(split)]
    blob = json.dumps([task.name, task.instruction, task.grid, task.grid_format, examples], default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class FinetuneConfig:
    """What to train and how.

    Attributes:
        tasks: tasks whose training examples are mixed (each batch comes from one task): registered
            names, or ``{"task": "table", "path": ..., ...}`` dicts of :func:`get_task` options.
        base: the model to start from: embedded name, local folder or hub id.
        method: "lora" (adapters, merged at the end) or "full" (weights train directly).
        train_layers: with "full", train only the top N transformer layers and the final norm
            (None: every weight). Lower layers run without gradients.
        precision: "bf16" (autocast: bf16 matrix products, fp32 weights and optimizer) or "fp32".
        objective: "ce" (answer cross-entropy), "mse" (squared error of the exact grid mean), "mix"
            (both), "soft" (cross-entropy against a Gaussian soft target on the grid) or "soft_mix"
            (soft and squared error).
        mse_weight: weight of the squared error in "mix" and "soft_mix" (the cross-entropy gets 1 - mse_weight).
        soft_sd: standard deviation of the soft target of "soft" and "soft_mix", in answer units.
        lr: peak learning rate (linear warm-up, then linear decay to 0).
        batch_size: examples per step.
        epochs: passes over the training examples; ignored when ``max_steps`` is set.
        max_steps: number of optimisation steps (overrides ``epochs``).
        max_examples: a seeded subset of at most this many training examples per task (None: all),
            or ``{task name: at most}`` per task (tasks not named: all).
        warmup_fraction: share of the steps spent warming up.
        weight_decay: AdamW weight decay.
        max_grad_norm: gradient clipping norm.
        lora_r: LoRA rank.
        lora_alpha: LoRA scaling numerator (the update is scaled by alpha / r).
        lora_dropout: dropout on the LoRA input.
        lora_targets: module names that get adapters.
        lora_layers: adapt only the top N transformer layers (None: all layers).
        max_length: examples longer than this (tokens) are skipped.
        eval_every: steps between dev evaluations (0: evaluate only at the end when dev data is given).
        dev_examples: dev items per task (a seeded subset of the dev split) when no dev data is passed.
        patience: stop after this many dev evaluations without improvement (None: never stop early).
        seed: seeds the subset, the batch order and the adapter initialisation.
        output_dir: checkpoints and the final model; None trains in memory only (HPO trials).
        save_every: steps between checkpoints (0: none).
        keep_checkpoints: how many recent checkpoints to keep on disk.
        device: "auto", "cpu", "cuda", ...
    """

    tasks: tuple[str, ...] = ("sst5", "stsb")
    base: str = DEFAULT_MODEL
    method: str = "lora"
    train_layers: int | None = None
    precision: str = "bf16"
    objective: str = "ce"
    mse_weight: float = 0.5
    soft_sd: float = 0.4
    lr: float = 1e-3
    batch_size: int = 8
    epochs: float = 1.0
    max_steps: int | None = None
    max_examples: int | dict[str, int] | None = 512
    warmup_fraction: float = 0.1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    lora_layers: int | None = 8
    max_length: int = 384
    eval_every: int = 0
    dev_examples: int | None = 200
    patience: int | None = None
    seed: int = 0
    output_dir: str | None = None
    save_every: int = 25
    keep_checkpoints: int = 2
    device: str = "auto"

    def __post_init__(self):
        self.tasks = tuple(self.tasks)
        self.lora_targets = tuple(self.lora_targets)
        if self.method not in ("lora", "full"):
            raise ValueError(f"method must be 'lora' or 'full', got {self.method!r}")
        if self.precision not in ("bf16", "fp32"):
            raise ValueError(f"precision must be 'bf16' or 'fp32', got {self.precision!r}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.soft_sd <= 0:
            raise ValueError(f"soft_sd must be > 0, got {self.soft_sd}")
        if self.lr <= 0 or self.batch_size < 1 or (self.max_steps is None and self.epochs <= 0):
            raise ValueError(f"need lr > 0, batch_size >= 1 and epochs > 0 or max_steps: {self}")

    def examples_of(self, task_name: str) -> int | None:
        """The training-example limit of one task (None: all).

        >>> FinetuneConfig(max_examples={"sst5": 100}).examples_of("sst5"), FinetuneConfig(max_examples={"sst5": 100}).examples_of("stsb")
        (100, None)
        """
        return self.max_examples.get(task_name) if isinstance(self.max_examples, dict) else self.max_examples

    def training_key(self) -> dict:
        """The fields that determine the trained weights (bookkeeping fields left out, and
        ``soft_sd`` unless a soft objective reads it, so runs keyed before it existed stay valid)."""
        unused = () if self.objective.startswith("soft") else ("soft_sd",)
        return {k: v for k, v in asdict(self).items() if k not in _BOOKKEEPING + unused}

    def run_id(self) -> str:
        """A short hash of :meth:`training_key`, for run folders.

        >>> FinetuneConfig(lr=1e-3).run_id() == FinetuneConfig(lr=1e-3, save_every=5).run_id()
        True
        """
        return hashlib.sha256(json.dumps(self.training_key(), sort_keys=True).encode()).hexdigest()[:12]

    @classmethod
    def from_dict(cls, values: dict) -> FinetuneConfig:
        """Rebuild a config from :func:`dataclasses.asdict` output (e.g. a JSON file), ignoring extra keys."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


def run_dir(config: FinetuneConfig, examples: dict[str, list[Example]] | None = None, root: Path | None = None,
            dev: dict[str, list[Example]] | None = None) -> Path:
    """A folder for one training run, ``<cache>/finetuned/<hash>``: reruns of the same config and data share it.

    The key covers the config, each resolved task's content (instruction, grid, and the training
    examples: the given ones, else a hash of the task's train split), the hashes of the files a
    table task reads, and the dev examples used for model selection.

    Args:
        config: the run settings (bookkeeping fields such as ``save_every`` do not count).
        examples: the ``{task: examples}`` that will be passed to :func:`finetune`, if any.
        root: parent folder (default ``<cache>/finetuned``).
        dev: the ``{task: dev examples}`` that will be passed to :func:`finetune`, if any.
    """
    tasks = [resolve_task(spec) for spec in config.tasks]
    content = [[t.name, t.instruction, t.grid, t.grid_format] for t in tasks]
    if examples is not None:
        content += [(name, e.id, e.text, e.text_b, e.target) for name in sorted(examples) for e in examples[name]]
    else:
        content += [task_fingerprint(t) for t in tasks]
    # A task read from files is also keyed on the files: a changed dev or test row changes which
    # checkpoint model selection keeps, or at least what the run claims to have been trained on.
    content += [("files", t.name, t.source["data_sha256"]) for t in tasks if "data_sha256" in t.source]
    if dev is not None:
        content += [("dev", name, e.id, e.text, e.text_b, e.target) for name in sorted(dev) for e in dev[name]]
    key = hashlib.sha256(json.dumps([config.run_id(), content], default=str).encode()).hexdigest()[:12]
    return (root or cache_dir() / "finetuned") / key


# ---------------------------------------------------------------------------------------- data


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


def training_set(config: FinetuneConfig, tokenizer, examples: dict[str, list[Example]] | None = None, split: str = "train") -> list[Encoded]:
    """Encoded examples of every task of ``config`` (seeded subset of ``max_examples`` each).

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
        pool = list(examples[task.name]) if examples is not None else task.examples(split)
        limit = config.examples_of(task.name)
        if limit is not None and limit < len(pool):
            pool = random.Random(config.seed).sample(pool, limit)
        encoded += [e for e in (encode(task, example, tokenizer) for example in pool) if len(e.input_ids) <= config.max_length]
    if not encoded:
        raise ValueError("no training examples (all longer than max_length?)")
    return encoded


def data_sha256(encoded: list[Encoded]) -> str:
    """Hash of the encoded training set: a resumed run must train on the same data."""
    return hashlib.sha256(json.dumps([(e.task, e.answer_start, e.input_ids, e.target) for e in encoded]).encode()).hexdigest()


def steps_per_epoch(encoded: list[Encoded], batch_size: int) -> int:
    """Batches in one pass (batches never mix tasks, so each task rounds up on its own)."""
    counts: dict[str, int] = {}
    for e in encoded:
        counts[e.task] = counts.get(e.task, 0) + 1
    return sum(math.ceil(n / batch_size) for n in counts.values())


def batch_schedule(encoded: list[Encoded], batch_size: int, steps: int, seed: int, group_by_length: bool = True) -> list[list[int]]:
    """The example indices of every step: per epoch, each task shuffled into batches, batches shuffled.

    With ``group_by_length``, each task's shuffled examples are cut into chunks of 50 batches that
    are sorted by length before being split into batches: rows of a batch have similar lengths, so
    little padding is computed, while the order stays random at the scale of an epoch.
    It depends only on its arguments, so a resumed run picks up the same batches.

    >>> data = [Encoded([1, 2], 1, t) for t in "aaab"]
    >>> schedule = batch_schedule(data, batch_size=2, steps=4, seed=0)
    >>> len(schedule), all(len({data[i].task for i in batch}) == 1 for batch in schedule)
    (4, True)
    """
    schedule: list[list[int]] = []
    epoch = 0
    while len(schedule) < steps:
        rng = random.Random(f"{seed}:{epoch}")
        batches = []
        for task in sorted({e.task for e in encoded}):
            indices = [i for i, e in enumerate(encoded) if e.task == task]
            rng.shuffle(indices)
            if group_by_length:
                chunk = 50 * batch_size
                indices = [i for s in range(0, len(indices), chunk) for i in sorted(indices[s : s + chunk], key=lambda i: len(encoded[i].input_ids))]
            batches += [indices[s : s + batch_size] for s in range(0, len(indices), batch_size)]
        rng.shuffle(batches)
        schedule += batches
        epoch += 1
    return schedule[:steps]


# ---------------------------------------------------------------------------------------- loss


def answer_nll(model, batch: list[Encoded], pad_id: int, share_prefix: bool = True) -> tuple[torch.Tensor, int]:
    """Summed negative log-likelihood of the answer tokens of ``batch``, and their number.

    Layout (as in :mod:`workbench.inference.engine`): ``[shared prefix][left pad][rest of each row]``, with
    positions counted over real tokens. Answers are then right-aligned, so the logits of only the
    last ``longest answer + 1`` columns are computed.
    """
    device = next(model.parameters()).device
    rows = [e.input_ids for e in batch]
    prefix_len = 0
    if share_prefix and len(rows) > 1:
        # Every row keeps its last prompt token out of the prefix: its logits predict the answer.
        limit = min(e.answer_start for e in batch) - 1
        prefix_len = min(_common_prefix_len(rows), limit)
        prefix_len = prefix_len if prefix_len >= MIN_SHARED_PREFIX else 0
    cache = None
    if prefix_len:
        cache = DynamicCache()
        model(input_ids=torch.tensor([rows[0][:prefix_len]], device=device), past_key_values=cache, use_cache=True, logits_to_keep=1)
        cache = DynamicCache(ddp_cache_data=[(layer.keys.expand(len(rows), -1, -1, -1), layer.values.expand(len(rows), -1, -1, -1)) for layer in cache.layers])
    suffixes = [r[prefix_len:] for r in rows]
    width = max(len(s) for s in suffixes)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, suffix in enumerate(suffixes):
        input_ids[i, width - len(suffix) :] = torch.tensor(suffix)
        mask[i, width - len(suffix) :] = 1
    positions = prefix_len + (mask.cumsum(-1) - 1).clamp(min=0)
    full_mask = torch.cat([torch.ones((len(rows), prefix_len), dtype=torch.long), mask], dim=1)
    answer_lens = torch.tensor([len(e.input_ids) - e.answer_start for e in batch])
    longest = int(answer_lens.max())
    input_ids, full_mask, positions = (t.to(device) for t in (input_ids, full_mask, positions))
    out = model(
        input_ids=input_ids,
        attention_mask=full_mask,
        position_ids=positions,
        past_key_values=cache,
        use_cache=cache is not None,
        logits_to_keep=longest + 1,
    )
    logits = out.logits[:, :-1].float()  # column c predicts the token in column c + 1
    targets = input_ids[:, width - longest :].clone()
    is_answer = torch.arange(longest)[None, :] >= (longest - answer_lens)[:, None]
    targets[~is_answer.to(device)] = -100
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100, reduction="sum")
    return nll, int(is_answer.sum())


@torch.inference_mode()
def mean_answer_loss(model, tokenizer, encoded: list[Encoded], batch_size: int = 8) -> float:
    """Token-weighted mean answer NLL over ``encoded`` (a dev-set loss), batched within tasks."""
    was_training = model.training
    model.eval()
    order = sorted(range(len(encoded)), key=lambda i: (encoded[i].task, len(encoded[i].input_ids)))
    total, count = 0.0, 0
    for task in sorted({e.task for e in encoded}):
        indices = [i for i in order if encoded[i].task == task]
        for start in range(0, len(indices), batch_size):
            nll, n = answer_nll(model, [encoded[i] for i in indices[start : start + batch_size]], tokenizer.pad_token_id)
            total, count = total + float(nll), count + n
    model.train(was_training)
    return total / count


def _common_prefix_len(rows: list[list[int]]) -> int:
    length = min(len(r) for r in rows)
    for r in rows[1:]:
        length = next((i for i in range(length) if r[i] != rows[0][i]), length)
    return length


# ---------------------------------------------------------------------------------------- training


@dataclass
class FinetuneResult:
    """What a run produced.

    Attributes:
        config: the settings.
        losses: training loss of every step (answer NLL per token for "ce", the batch's grid loss
            otherwise), resumed steps included.
        steps: optimisation steps done (fewer than planned when early stopping fired).
        resumed_from: the step the run resumed from (0: fresh start; ``steps``: a finished run reused).
        examples: number of training examples.
        seconds: wall time of this call.
        model_dir: the saved model folder (None for in-memory runs).
        model: the trained model in eval mode (LoRA merged); None when a finished run was reused.
        tokenizer: its tokenizer.
        dev_history: one record per dev evaluation: step, per-task scores and the selection loss.
        best_step: the step whose weights were kept (the best dev evaluation; the last step without dev data).
        throughput: training examples/s, tokens/s, wall seconds and process CPU seconds (user + system, all
            threads: what the steps would take on an idle machine) of this call's steps (dev evaluations excluded).
    """

    config: FinetuneConfig
    losses: list[float]
    steps: int
    resumed_from: int
    examples: int
    seconds: float
    model_dir: Path | None = None
    model: torch.nn.Module | None = field(default=None, repr=False)
    tokenizer: object = field(default=None, repr=False)
    dev_history: list[dict] = field(default_factory=list)
    best_step: int | None = None
    throughput: dict = field(default_factory=dict)

    @property
    def best_objective(self) -> float:
        """The lowest dev selection loss seen (NaN without dev evaluations)."""
        return min((record["objective"] for record in self.dev_history), default=float("nan"))

    def loaded(self) -> LoadedModel:
        """The in-memory model as a :class:`LoadedModel` (for :class:`workbench.inference.engine.HFEngine`)."""
        if self.model is None:
            return load_model(str(self.model_dir), device=self.config.device)
        return _as_loaded(self.model, self.tokenizer, f"finetune:{self.config.run_id()}")


def _as_loaded(model, tokenizer, name: str) -> LoadedModel:
    device = next(model.parameters()).device
    fingerprint = {"name": name, "dtype": "fp32", "quantization": None, "weights_sha256": weights_sha256(model)}
    return LoadedModel(model, tokenizer, name, device, "fp32", None, fingerprint)


def dev_sets(config: FinetuneConfig, dev: dict[str, list[Example]] | None = None) -> dict[str, tuple[Task, list[Example]]]:
    """``{task name: (task, dev examples)}``: the given ones, or a seeded subset of each task's dev split."""
    sets = {}
    for spec in config.tasks:
        task = resolve_task(spec)
        examples = dev[task.name] if dev is not None else task.examples("dev", limit=config.dev_examples, seed=config.seed)
        sets[task.name] = (task, list(examples))
    return sets


class _Trainer:
    """One optimisation step of either objective; the grid objective needs each task's candidates."""

    def __init__(self, model, tokenizer, config: FinetuneConfig):
        self.model, self.tokenizer, self.config = model, tokenizer, config
        self.tasks = {t.name: t for t in (resolve_task(spec) for spec in config.tasks)}
        self._candidates: dict[str, tuple[list[list[int]], torch.Tensor]] = {}

    def candidates(self, batch: list[Encoded]) -> tuple[list[list[int]], torch.Tensor]:
        name = batch[0].task
        if name not in self._candidates:
            task = self.tasks[name]
            tokens = candidate_tokens(self.tokenizer, batch[0].input_ids[: batch[0].answer_start], task.candidates)
            self._candidates[name] = (tokens, torch.tensor(task.grid, dtype=torch.float32))
        return self._candidates[name]

    def loss(self, batch: list[Encoded]) -> tuple[torch.Tensor, int]:
        """The step's loss and the number of answer tokens it covers."""
        pad = self.tokenizer.pad_token_id
        if self.config.objective == "ce":
            nll, count = answer_nll(self.model, batch, pad)
            return nll / count, count
        tokens, grid = self.candidates(batch)
        logprobs = grid_logprobs(self.model, [e.input_ids[: e.answer_start] for e in batch], tokens, pad)
        gold_index = torch.tensor([tokens.index(e.input_ids[e.answer_start :]) for e in batch], device=logprobs.device)
        weight = {"mse": 1.0, "soft": 0.0}.get(self.config.objective, self.config.mse_weight)
        soft_sd = self.config.soft_sd if self.config.objective.startswith("soft") else None
        gold = torch.tensor([e.target for e in batch]).to(logprobs.device)
        loss, _ = grid_loss(logprobs, grid.to(logprobs.device), gold, gold_index, weight, soft_sd=soft_sd)
        return loss, sum(len(e.input_ids) - e.answer_start for e in batch)


def _autocast(device: torch.device, precision: str):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def evaluate_dev(model, tokenizer, sets: dict[str, tuple[Task, list[Example]]], precision: str = "bf16", name: str = "dev") -> tuple[dict, float]:
    """Dev task scores and selection loss of an in-memory model (exact grid scoring, no disk cache)."""
    was_training = model.training
    model.eval()
    engine = HFEngine(_as_loaded(model, tokenizer, name), cache=None, progress=False)
    with _autocast(engine.device, precision):
        scores, objective = dev_scores(engine, sets)
    model.train(was_training)
    return scores, objective


def finetune(
    config: FinetuneConfig,
    examples: dict[str, list[Example]] | None = None,
    callback: Callable[[int, float], None] | None = None,
    progress: bool = True,
    dev: dict[str, list[Example]] | None = None,
) -> FinetuneResult:
    """Train, checkpointing and resuming under ``config.output_dir``, and save the final model there.

    Args:
        config: the run settings.
        examples: optional ``{task: training examples}``; by default each task's train split.
        callback: called as ``callback(step, loss)`` after every step; raising stops the run
            (an optuna pruner, or a test simulating an interruption).
        progress: show a tqdm bar with the running loss.
        dev: optional ``{task: dev examples}`` for model selection; by default, when
            ``config.eval_every`` is set, a seeded subset of ``config.dev_examples`` of each dev split.

    Returns:
        A :class:`FinetuneResult`. When ``output_dir`` already holds the finished run, it is
        reused without training (``model`` is then None; open ``model_dir`` with ``load_model``).
    """
    started = time.time()
    out = Path(config.output_dir) if config.output_dir else None
    if out is not None and (out / "model" / "config.json").exists():
        log = json.loads((out / "training.json").read_text())
        encoded = training_set(config, AutoTokenizer.from_pretrained(out / "model"), examples)
        if log["key"] != _jsonable(config.training_key()) or log["data"] != data_sha256(encoded):
            raise ValueError(f"{out} holds a different finished run (config or data); use run_dir(config, examples) or a new output_dir")
        return FinetuneResult(config, log["losses"], log["steps"], log["steps"], log["examples"], 0.0, out / "model",
                              dev_history=log.get("dev_history", []), best_step=log.get("best_step"), throughput=log.get("throughput", {}))

    torch.manual_seed(config.seed)
    lm = load_model(config.base, device=config.device)
    tokenizer, model = lm.tokenizer, _prepare(lm.model, config)
    encoded = training_set(config, tokenizer, examples)
    total = config.max_steps or math.ceil(config.epochs * steps_per_epoch(encoded, config.batch_size))
    schedule = batch_schedule(encoded, config.batch_size, total, config.seed)
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW(trainable.values(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, round(config.warmup_fraction * total), total)
    key = {"config": _jsonable(config.training_key()), "data": data_sha256(encoded)}
    evaluations = dev_sets(config, dev) if (config.eval_every or dev is not None) else {}
    trainer = _Trainer(model, tokenizer, config)

    start, losses, history, best = 0, [], [], None  # best: (objective, step)
    checkpoint, state = load_latest_checkpoint(out) if out is not None else (None, None)
    if state is not None:
        if state["key"] != key:
            raise ValueError(f"checkpoint {checkpoint} belongs to a different run (config or data changed)")
        with torch.no_grad():
            for name, value in state["trainable"].items():
                trainable[name].copy_(value)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        start, losses, history = state["step"], list(state["losses"]), list(state.get("dev_history", []))
        best = tuple(state["best"]) if state.get("best") else None
    best_weights = _load_best(out) if best is not None else None

    device = lm.device
    model.train()
    bar = tqdm(total=total, initial=start, desc=f"finetune {config.method}", disable=not progress)
    train_seconds, train_cpu, train_examples, train_tokens, done, stale = 0.0, 0.0, 0, 0, start, _stale(history, best)
    # One MLflow run per training call (nested under the notebook's run, if any): the loss curve,
    # the dev metrics of every evaluation, and the throughput. A resumed run re-logs the steps it
    # restored, so its curve is whole.
    params = {**config.training_key(), "examples": len(encoded), "steps": total, "resumed_at_step": start, "output_dir": str(out)}
    with tracking.run(f"finetune {config.method} {config.objective}", experiment="finetune", params=params) as tracker:
        for step, value in enumerate(losses, start=1):
            tracker.log_metrics({"train_loss": value}, step=step)
        for record in history:
            tracker.log_metrics({"dev_selection_loss": record["objective"], **_dev_metrics(record["scores"])}, step=record["step"])
        for step in range(start, total):
            batch = [encoded[i] for i in schedule[step]]
            tick, tick_cpu = time.time(), time.process_time()
            with _autocast(device, config.precision):
                loss, _ = trainer.loss(batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable.values(), config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            train_seconds, train_cpu = train_seconds + time.time() - tick, train_cpu + time.process_time() - tick_cpu
            train_examples, train_tokens = train_examples + len(batch), train_tokens + sum(len(e.input_ids) for e in batch)
            step_loss = float(loss.detach())
            losses.append(step_loss)
            tracker.log_metrics({"train_loss": step_loss}, step=step + 1)
            bar.update(1)
            bar.set_postfix(loss=f"{sum(losses[-10:]) / len(losses[-10:]):.3f}", ex_s=f"{train_examples / train_seconds:.2f}")
            done = step + 1
            if evaluations and ((config.eval_every and done % config.eval_every == 0) or done == total):
                scores, objective = evaluate_dev(model, tokenizer, evaluations, config.precision)
                history.append({"step": done, "scores": scores, "objective": objective})
                tracker.log_metrics({"dev_selection_loss": objective, **_dev_metrics(scores)}, step=done)
                bar.write(f"step {done}: dev selection loss {objective:.4f} " + " ".join(f"{t}: acc {s['accuracy']:.3f} rmse {s['rmse']:.3f} spearman {s['spearman']:.3f}" for t, s in scores.items()))
                if best is None or objective < best[0]:
                    best, stale = (objective, done), 0
                    best_weights = {n: p.detach().cpu().clone() for n, p in trainable.items()}
                    if out is not None:
                        _save_best(out, best_weights)
                else:
                    stale += 1
            stopping = config.patience is not None and stale >= config.patience
            if out is not None and config.save_every and (done % config.save_every == 0 or stopping) and done < total:
                state = {"step": done, "key": key, "losses": losses, "rng": torch.get_rng_state(), "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict(), "trainable": {n: p.detach().cpu() for n, p in trainable.items()},
                         "dev_history": history, "best": list(best) if best else None}
                save_checkpoint(out, state, config.keep_checkpoints)
            if callback is not None:
                callback(done, step_loss)
            if stopping:
                bar.write(f"early stop at step {done}: no dev improvement in {stale} evaluations; keeping step {best[1]}")
                break
        bar.close()

        if best_weights is not None:  # model selection: the best dev evaluation's weights
            with torch.no_grad():
                for name, value in best_weights.items():
                    trainable[name].copy_(value)
        if config.method == "lora":
            model = model.merge_and_unload()
        model.eval()
        throughput = {"examples_per_s": train_examples / train_seconds, "tokens_per_s": train_tokens / train_seconds, "train_seconds": train_seconds,
                      "train_cpu_seconds": train_cpu} if train_seconds else {}
        tracker.log_metrics({f"throughput_{k}": v for k, v in throughput.items()})
        tracker.set_tags({"best_step": best[1] if best else done})
    result = FinetuneResult(config, losses, done, start, len(encoded), time.time() - started, model=model, tokenizer=tokenizer,
                            dev_history=history, best_step=best[1] if best else done, throughput=throughput)
    if out is not None:
        log = {"key": key["config"], "data": key["data"], "losses": losses, "steps": done, "examples": len(encoded),
               "dev_history": history, "best_step": result.best_step, "throughput": throughput}
        result.model_dir = _save_final(out, model, tokenizer, log)
    return result


def _dev_metrics(scores: dict[str, dict[str, float]]) -> dict[str, float]:
    """One dev evaluation's per-task scores as flat MLflow metric names.

    >>> _dev_metrics({"sst5": {"accuracy": 0.4, "rmse": 1.1}})
    {'dev_sst5_accuracy': 0.4, 'dev_sst5_rmse': 1.1}
    """
    return {f"dev_{task}_{name}": value for task, metrics in scores.items() for name, value in metrics.items()}


def _stale(history: list[dict], best) -> int:
    """Evaluations since the best one (for early stopping after a resume)."""
    return 0 if best is None else sum(1 for record in history if record["step"] > best[1])


def _prepare(model, config: FinetuneConfig):
    """Wrap the model with LoRA adapters, or make the top ``train_layers`` layers (or every weight) trainable."""
    if config.method == "full":
        top = config.train_layers
        for p in model.parameters():
            p.requires_grad_(top is None)
        if top is not None:
            for layer in model.model.layers[-top:]:
                layer.requires_grad_(True)
            model.model.norm.requires_grad_(True)
        return model
    from peft import LoraConfig, get_peft_model

    layers = model.config.num_hidden_layers
    top = None if config.lora_layers is None else list(range(max(0, layers - config.lora_layers), layers))
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.lora_targets),
        layers_to_transform=top,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


# ---------------------------------------------------------------------------------------- files


def save_checkpoint(output_dir: Path, state: dict, keep: int = 2) -> Path:
    """Write ``checkpoints/step-NNNNNN.pt`` atomically and prune all but the ``keep`` latest.

    Raises:
        OSError: the write failed (a full disk, say), naming the checkpoint; the partial file is
            removed and the previous checkpoints stay as they were.
    """
    folder = Path(output_dir) / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step-{state['step']:06d}.pt"
    tmp = path.with_suffix(".tmp")
    try:
        torch.save(state, tmp)  # a full disk raises OSError, or torch's RuntimeError "file write failed"
    except (OSError, RuntimeError) as error:
        tmp.unlink(missing_ok=True)
        raise OSError(getattr(error, "errno", None) or errno.EIO, f"could not write checkpoint {path} ({error}); "
                      f"the previous checkpoints in {folder} are intact") from error
    os.replace(tmp, path)  # an interruption mid-write leaves the previous checkpoint intact
    for old in sorted(folder.glob("step-*.pt"))[:-keep]:
        old.unlink()
    return path


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The checkpoint with the highest step, or None."""
    found = sorted((Path(output_dir) / "checkpoints").glob("step-*.pt"))
    return found[-1] if found else None


def load_latest_checkpoint(output_dir: Path) -> tuple[Path | None, dict | None]:
    """The newest checkpoint that loads, newest first: an unreadable one is skipped with a warning naming it.

    Returns:
        ``(path, state)``, or ``(None, None)`` when there is no readable checkpoint.
    """
    for path in sorted((Path(output_dir) / "checkpoints").glob("step-*.pt"), reverse=True):
        try:
            return path, torch.load(path, weights_only=True)
        except Exception as error:  # truncated file, bad zip, unpickling error: fall back to an older one
            warnings.warn(f"checkpoint {path} is unreadable ({type(error).__name__}: {error}); falling back to the previous checkpoint", stacklevel=2)
    return None, None


def _save_best(output_dir: Path, weights: dict) -> None:
    tmp = Path(output_dir) / "best.pt.tmp"
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    torch.save(weights, tmp)
    os.replace(tmp, Path(output_dir) / "best.pt")


def _load_best(output_dir: Path | None) -> dict | None:
    path = None if output_dir is None else Path(output_dir) / "best.pt"
    return torch.load(path, weights_only=True) if path is not None and path.exists() else None


def _save_final(out: Path, model, tokenizer, log: dict) -> Path:
    target, tmp = out / "model", out / "model.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    log_tmp = out / "training.json.tmp"
    log_tmp.write_text(json.dumps(log))
    os.replace(log_tmp, out / "training.json")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)  # the model folder appears complete or not at all
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    (out / "best.pt").unlink(missing_ok=True)
    return target


def _jsonable(value):
    """Tuples become lists, as after a JSON round trip, so stored and live keys compare equal."""
    return json.loads(json.dumps(value))


def plot_losses(axes: Axes, losses: list[float], window: int = 5, title: str = "Training loss") -> Axes:
    """Per-step training loss with its running mean over ``window`` steps.

    >>> plot_losses(Figure().add_subplot(), [3.0, 2.0, 1.5, 1.0], window=2).get_lines()[1].get_ydata().tolist()
    [3.0, 2.5, 1.75, 1.25]
    """
    steps = list(range(1, len(losses) + 1))
    running = []
    for i in range(len(losses)):
        recent = losses[max(0, i + 1 - window) : i + 1]
        running.append(sum(recent) / len(recent))
    axes.plot(steps, losses, ".", alpha=0.5, label="step")
    axes.plot(steps, running, "-", label=f"running mean ({window})")
    axes.set(title=title, xlabel="step", ylabel="answer NLL / token")
    axes.legend()
    return axes
