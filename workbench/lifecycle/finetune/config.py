"""What a fine-tuning run is: its settings (:class:`FinetuneConfig`), the tasks they name, and the
hash that keys a run's cache folder (:func:`run_dir`).

The key covers only what changes the trained weights, so bookkeeping fields (where checkpoints go,
how often) can change without retraining. Cached runs, the default profile's final model among
them, are found by this key: changing what it hashes retrains them (``tests/test_finetune.py``
pins it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from workbench.inference.models import DEFAULT_MODEL
from workbench.paths import cache_dir
from workbench.tasks import Example, Task, get_task
from workbench.tasks.base import nested_sample

# Fields that do not change what is learned: a run may resume or be reused across them.
# trunk_cache changes only where the frozen layers' outputs come from (the same numbers up to rounding).
_BOOKKEEPING = ("output_dir", "save_every", "keep_checkpoints", "device", "trunk_cache")
OBJECTIVES = ("ce", "mse", "mix", "soft", "soft_mix")
# One entry of FinetuneConfig.tasks: a registered name (or a spec file path), or
# {"task": name, **options} for get_task. (Not a workbench.tasks.TaskSpec, the parsed spec file.)
TaskNameOrOptions = str | dict


def resolve_task(spec: TaskNameOrOptions) -> Task:
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
            0.9 by default: RAFT's squared error with a light cross-entropy anchor. The pure squared error ("mse")
            started from SmolLM2 fits the constant on SST-5 (its mean on the renormalised grid gives the 98-99.9% of
            mass off the grid no gradient); the anchor keeps it learning (docs/findings.md, "RAFT from the base").
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
        trunk_cache: when only the top layers train (``method="full"`` with ``train_layers``) or carry
            adapters (``method="lora"`` with ``lora_layers``), compute the frozen lower layers' outputs
            once per example and reuse them (:mod:`~workbench.lifecycle.finetune.trunk`); False runs the
            whole model every step.
    """

    tasks: tuple[str, ...] = ("sst5", "stsb")
    base: str = DEFAULT_MODEL
    method: str = "lora"
    train_layers: int | None = None
    precision: str = "bf16"
    objective: str = "ce"
    mse_weight: float = 0.9
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
    trunk_cache: bool = True

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

        >>> config = FinetuneConfig(max_examples={"sst5": 100})
        >>> config.examples_of("sst5"), config.examples_of("stsb")
        (100, None)
        """
        return self.max_examples.get(task_name) if isinstance(self.max_examples, dict) else self.max_examples

    def training_key(self) -> dict:
        """The fields that determine the trained weights: bookkeeping fields left out, and the weights of
        objectives that are not trained (``soft_sd`` unless a soft objective reads it, ``mse_weight`` unless a
        mixed one does), so changing them retrains only the runs that read them.

        >>> "mse_weight" in FinetuneConfig(objective="ce").training_key()
        False
        >>> FinetuneConfig(objective="mix").training_key()["mse_weight"]
        0.9
        """
        unused = () if self.objective.startswith("soft") else ("soft_sd",)
        unused += () if self.objective in ("mix", "soft_mix") else ("mse_weight",)
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


def training_examples(config: FinetuneConfig, task_name: str, pool: list[Example]) -> list[Example]:
    """The examples of ``pool`` a run of ``config`` trains on for one task: all of them, or a seeded subset of
    ``config.examples_of(task_name)``, nested across sizes (:func:`~workbench.tasks.base.nested_sample`).

    >>> pool = [Example(id=str(i), text="x", target=1.0) for i in range(10)]
    >>> small, large = (FinetuneConfig(max_examples=n, seed=0) for n in (3, 6))
    >>> ids = [[e.id for e in training_examples(config, "sst5", pool)] for config in (small, large)]
    >>> ids[0] == ids[1][:3]
    True
    """
    limit = config.examples_of(task_name)
    return nested_sample(list(pool), limit, config.seed) if limit is not None and limit < len(pool) else list(pool)


def run_dir(
    config: FinetuneConfig,
    examples: dict[str, list[Example]] | None = None,
    root: Path | None = None,
    dev: dict[str, list[Example]] | None = None,
) -> Path:
    """A folder for one training run, ``<cache>/finetuned/<hash>``: reruns of the same config and data share it.

    The key covers the config, each resolved task's content (instruction, grid, and the training
    examples: those :func:`training_examples` keeps of the given ones, else a hash of the task's train
    split and the ids of the subset drawn from it), the hashes of the files a table task reads, and the
    dev examples used for model selection. Keying on the subset drawn, not on the pool it is drawn from,
    makes a change in how subsets are drawn a new run rather than a clash with the cached one.

    Args:
        config: the run settings (bookkeeping fields such as ``save_every`` do not count).
        examples: the ``{task: examples}`` that will be passed to :func:`finetune`, if any.
        root: parent folder (default ``<cache>/finetuned``).
        dev: the ``{task: dev examples}`` that will be passed to :func:`finetune`, if any.
    """
    tasks = {t.name: t for t in (resolve_task(spec) for spec in config.tasks)}
    content = [[t.name, t.instruction, t.grid, t.grid_format] for t in tasks.values()]
    if examples is not None:
        chosen = {
            name: training_examples(config, name, pool) if name in tasks else pool for name, pool in examples.items()
        }
        content += [(name, e.id, e.text, e.text_b, e.target) for name in sorted(chosen) for e in chosen[name]]
    else:
        content += [task_fingerprint(t) for t in tasks.values()]
        # a subset of the split: its examples, so that a change in how subsets are drawn is a new run
        content += [
            ("subset", name, [e.id for e in training_examples(config, name, t.examples("train"))])
            for name, t in tasks.items()
            if config.examples_of(name) is not None
        ]
    # A task read from files is also keyed on the files: a changed dev or test row changes which
    # checkpoint model selection keeps, or at least what the run claims to have been trained on.
    content += [("files", t.name, t.source["data_sha256"]) for t in tasks.values() if "data_sha256" in t.source]
    if dev is not None:
        content += [("dev", name, e.id, e.text, e.text_b, e.target) for name in sorted(dev) for e in dev[name]]
    key = hashlib.sha256(json.dumps([config.run_id(), content], default=str).encode()).hexdigest()[:12]
    return (root or cache_dir() / "finetuned") / key
