"""The fine-tuned model's siblings: the same recipe stopped at half the steps, and LoRA instead of the top layers.

Notebook 06 asks whether the fine-tuned model survives its own lifecycle. Besides precision, serving, batch size
and kernels (which reuse the registered weights), two stages need weights of their own:

* ``<prefix>-half-fp32``: the recipe's final run with ``max_steps`` set to half the steps of the kept model (its
  learning rate decays over those steps: an earlier model of the same recipe, not a saved intermediate
  checkpoint, which the trainer deletes once a run finishes);
* ``<prefix>-lora-fp32``: the same data, objective and steps with LoRA adapters on the same top layers instead
  of training those layers (the learning rate of :class:`~workbench.lifecycle.finetune.FinetuneConfig`'s LoRA
  default, since the searched one is for full weights).

Both go through :mod:`workbench.lifecycle.recipe` (the profile's data, search and final config), so they follow
whatever objective the recipe's default model uses, and both are cached like every run of the recipe.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from workbench.lifecycle import recipe
from workbench.lifecycle.finetune import FinetuneConfig
from workbench.lifecycle.stages import finetuned_prefix, get_stage, register_stage

SIBLINGS = ("half", "lora")


def sibling_stage(profile: str, sibling: str, dtype: str = "fp32") -> str:
    """The registry name of a sibling stage.

    >>> sibling_stage("default", "half"), sibling_stage("smoke", "lora")
    ('finetuned-half-fp32', 'finetuned-smoke-lora-fp32')
    """
    if sibling not in SIBLINGS:
        raise ValueError(f"sibling must be one of {SIBLINGS}, got {sibling!r}")
    return f"{finetuned_prefix(profile)}-{sibling}-{dtype}"


def register_siblings(
    profile: str, model: str, device: str = "auto", seed: int = 0, progress: bool = True
) -> dict[str, str]:
    """Train (or reuse from the cache) and register the two sibling stages of the profile's fine-tuned model.

    Returns:
        Empty when the profile's fine-tuned stage is not registered (nothing is trained then); else
        {sibling: a Markdown-ready note on how it was trained; it says so when the registered fine-tuned stage is not
        the model this recipe call gives (notebook 04 ran another recipe), as the siblings are this recipe's}.
    """
    try:
        registered = get_stage(f"{finetuned_prefix(profile)}-fp32", base_model=model).source
    except KeyError:  # no fine-tuned stage (notebook 04 has not run): no lifecycle of it to compare
        return {}
    splits, _ = recipe.prepared_splits()
    base = recipe.base_config(profile, model, device, seed)
    config = recipe.final_config(profile, base, recipe.search(profile, base, splits, seed))
    final = recipe.train_final(config, splits, progress)
    steps = final.best_step or final.steps
    same = Path(registered).resolve() == Path(final.model_dir).resolve()
    origin = (
        "" if same else f" **(the registered fine-tuned stage is {registered}, not this recipe's {final.model_dir})**"
    )
    configs = {
        "half": replace(config, max_steps=max(1, steps // 2), eval_every=0, patience=None),
        "lora": replace(
            config,
            method="lora",
            lora_layers=config.train_layers,
            lr=FinetuneConfig.lr,
            max_steps=steps,
            eval_every=0,
            patience=None,
        ),
    }
    notes = {}
    for sibling, sibling_config in configs.items():
        result = recipe.train_final(sibling_config, splits, progress)
        notes[sibling] = (
            f"{sibling_config.method}, {sibling_config.objective}, top {sibling_config.train_layers or 'all'} layers"
            f"{' (LoRA)' if sibling_config.method == 'lora' else ''}, {result.steps} steps "
            f"(the recipe's fine-tuned model kept step {steps}), lr={sibling_config.lr:.2e}{origin}"
        )
        register_stage(
            sibling_stage(profile, sibling),
            result.model_dir,
            task="+".join(config.tasks),
            notes=f"notebook 06 sibling of {finetuned_prefix(profile)}: {notes[sibling]}",
            base_model=model,
        )
    return notes
