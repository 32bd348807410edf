"""The stages of notebook 07's scorecard: enough of them, varying one thing at a time, to test the Costly Dilemma.

A stage is one weight set in one precision, answering with a stated number of demonstrations. The
weight sets are the base model, the notebook-04 model (when registered) and *arms*: short fine-tuning
runs of ``finetune.arm_examples`` examples per task (``workbench.lifecycle.recipe.train_arm``), each
changing one field of it (objective, seed, LoRA instead of the top layers, a quarter or half of its steps,
one task instead of all). The arms go through the recipe and its run cache, so each trains once however
often it is asked for; their precision variants are registered stages.

The profile section ``07_cost_generalization_evaluation`` names them::

    arms: {ce: {objective: ce}, ce-seed1: {objective: ce, seed: 1}, ce-stsb: {objective: ce, tasks: [stsb]}}
    arm_variants: {ce: [fp32, bf16, int8]}   # the others: fp32 only
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from workbench.lifecycle import recipe
from workbench.lifecycle.stages import VARIANTS, finetuned_prefix, get_stage, list_stages, register_variants

# Arm fields a profile may change (the rest of the arm is recipe.arm_config's small run).
ARM_FIELDS = ("objective", "seed", "method", "lr", "tasks", "train_layers", "lora_layers", "fraction")


@dataclass(frozen=True)
class ScoredStage:
    """One row of the scorecard and what sets it apart.

    Attributes:
        name: the registered stage name.
        weights: the weight set (one training run, or the base model); its precision variants share it.
        family: "base" or "fine-tuned".
        precision: the variant (fp32, bf16, int8).
        shots: demonstrations in every prompt (the base model few-shot, the fine-tuned ones as trained).
        trained_on: the tasks it was fine-tuned on ("" for the base model).
    """

    name: str
    weights: str
    family: str
    precision: str
    shots: int
    trained_on: str = ""


def arm_changes(spec: Mapping) -> dict:
    """An arm's changes from the profile, checked: unknown fields are an error naming them.

    >>> arm_changes({"objective": "soft", "tasks": ["stsb"]})
    {'objective': 'soft', 'tasks': ('stsb',)}
    >>> arm_changes({"objectve": "soft"})
    Traceback (most recent call last):
    ...
    ValueError: arm field(s) ['objectve'] unknown; known: objective, seed, method, lr, tasks, train_layers, \
lora_layers, fraction
    """
    unknown = sorted(set(spec) - set(ARM_FIELDS))
    if unknown:
        raise ValueError(f"arm field(s) {unknown} unknown; known: {', '.join(ARM_FIELDS)}")
    return {key: tuple(value) if key == "tasks" else value for key, value in spec.items()}


def train_arms(
    profile: str, model: str, device: str, arms: Mapping[str, Mapping], variants: Mapping[str, Sequence[str]], seed=0
) -> pd.DataFrame:
    """Train (or reuse) every arm through the recipe and register its variants as stages ``<prefix>-arm-<arm>-<v>``.

    Args:
        profile: the profile (its ``finetune`` section sizes the arms; its prefix names the stages).
        model: the base model.
        device: where to train.
        arms: arm name -> changes (:func:`arm_changes`).
        variants: arm name -> precisions to register (default fp32 only).
        seed: the search's and the dev items' seed.

    Returns:
        One row per arm: its changes, steps, examples, the training's measured wall and CPU seconds (from the
        run's record, so a reused run reports the time it took when it was trained), and the stage names.
    """
    splits, _ = recipe.prepared_splits()
    base = recipe.base_config(profile, model, device, seed)
    table = recipe.search(profile, base, splits, seed)
    registered = list_stages(base_model=model).set_index("name")
    rows = []
    for arm, spec in arms.items():
        result = recipe.train_arm(profile, base, table, splits, seed, **arm_changes(spec))
        prefix = f"{finetuned_prefix(profile)}-arm-{arm}"
        wanted = list(variants.get(arm, ("fp32",)))
        source = str(Path(result.model_dir).resolve())
        stale = [v for v in wanted if registered["source"].get(f"{prefix}-{v}") != source]
        if stale:
            notes = f"notebook 07 arm {arm} ({dict(spec)}), {result.steps} steps, profile {profile}"
            task = "+".join(result.config.tasks)
            register_variants(prefix, result.model_dir, task=task, notes=notes, variants=stale, base_model=model)
        rows.append(
            {
                "arm": arm,
                "changes": dict(spec),
                "tasks": "+".join(result.config.tasks),
                "steps": result.steps,
                "examples": result.examples,
                "train_seconds (measured)": result.throughput.get("train_seconds"),
                "train_cpu_seconds (measured)": result.throughput.get("train_cpu_seconds"),
                "stages": [f"{prefix}-{v}" for v in wanted],
            }
        )
    return pd.DataFrame(rows)


def scorecard_grid(
    profile: str, model: str, arms: pd.DataFrame, base_shots: int, base_variants: Sequence[str], finetuned_variants
) -> tuple[list[ScoredStage], str]:
    """The scorecard's stages: the base model few-shot, notebook 04's model (when registered) and the arms.

    Returns:
        (the stages, a Markdown note saying which were left out and why).
    """
    stages = [ScoredStage(f"base-{v}", "base", "base", v, base_shots) for v in base_variants]
    prefix = finetuned_prefix(profile)
    registered = set(list_stages(base_model=model).name)
    missing = [f"{prefix}-{v}" for v in finetuned_variants if f"{prefix}-{v}" not in registered]
    stages += [
        ScoredStage(f"{prefix}-{v}", prefix, "fine-tuned", v, 0, get_stage(f"{prefix}-{v}", base_model=model).task)
        for v in finetuned_variants
        if f"{prefix}-{v}" not in missing
    ]
    for arm in arms.itertuples():
        stages += [
            ScoredStage(name, f"arm {arm.arm}", "fine-tuned", name.rsplit("-", 1)[1], 0, arm.tasks)
            for name in arm.stages
        ]
    unknown = [s.precision for s in stages if s.precision not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown precision(s) {unknown}; known: {list(VARIANTS)}")
    note = f"{len(stages)} stages over {len({s.weights for s in stages})} weight sets"
    if missing:
        note += f"; notebook 04's stages {missing} are not registered for {model} (run notebook 04 first)"
    return stages, note


def stage_table(stages: Sequence[ScoredStage]) -> pd.DataFrame:
    """One row per stage: what sets it apart."""
    return pd.DataFrame([s.__dict__ for s in stages]).set_index("name")
