"""Fine-tune a causal LM to answer workbench tasks in the workbench's own prompt format.

A training example is a task's zero-shot chat prompt (:meth:`Task.prompt` with no shots), then the
gold answer (:meth:`Task.answer`) and the end-of-turn token. The loss covers only the answer and
the end token: exactly the probability that :meth:`workbench.inference.engine.HFEngine.score` reads,
so a lower loss means more mass on the right grid answer and less outside the grid.

What keeps a CPU run affordable (measured in ``benchmarks/finetune_throughput.py``):

* bf16 autocast (``precision="bf16"``): matrix products run in bf16 (AMX/AVX-512 on recent CPUs)
  while the weights and the optimizer stay in fp32;
* logits only at the answer positions (an LM head over the whole vocabulary at every position is
  a large share of a naive step);
* training only the top ``train_layers`` layers (full fine-tuning of those) or LoRA on the top
  ``lora_layers``: back-propagation stops where the first trainable weight sits; with the former and
  the cross-entropy objective, the frozen lower layers' outputs are computed once per example and
  reused by every later step, epoch, seed and search trial (``trunk_cache``,
  :mod:`~workbench.lifecycle.finetune.trunk`);
* a batch holds examples of one task, grouped by length, so its rows share the system prompt. That
  prefix is pushed through the model once per batch and its keys and values are expanded over the
  rows (gradients flow back through the expansion); it is about half of every sequence.

Objectives (``objective``): "ce", the answer tokens' cross-entropy; "mse", the squared error of
the model's exact predictive mean over the answer grid (:mod:`workbench.lifecycle.regression_loss`,
one tree forward pass per batch, as :meth:`HFEngine.score` does it); "mix" weighs both; "soft", the
ordinal objective: cross-entropy of the exact grid distribution against a Gaussian of sd
``soft_sd`` around the gold value; "soft_mix" weighs it with the squared error.

The public API is listed here; the parts, one concern each:

* :mod:`~workbench.lifecycle.finetune.config`: :class:`FinetuneConfig`, task resolution, the run key
  and cache folder (:func:`run_dir`);
* :mod:`~workbench.lifecycle.finetune.encoding`: examples as token ids (:func:`encoding.training_set`);
* :mod:`~workbench.lifecycle.finetune.batching`: the seeded, length-grouped batch order;
* :mod:`~workbench.lifecycle.finetune.loss`: the answer cross-entropy with a shared prefix, and the
  objective of a batch;
* :mod:`~workbench.lifecycle.finetune.model`: which weights train, autocast, in-memory models;
* :mod:`~workbench.lifecycle.finetune.trunk`: the frozen lower layers' outputs, computed once per
  example and reused (storage: :mod:`~workbench.lifecycle.finetune.trunk_store`);
* :mod:`~workbench.lifecycle.finetune.selection`: dev-metric model selection and early stopping;
* :mod:`~workbench.lifecycle.finetune.checkpoints`: atomic checkpoints, best weights, the final model;
* :mod:`~workbench.lifecycle.finetune.training`: the loop, :func:`finetune`.

The loss curve is drawn by :func:`workbench.lifecycle.plots.plot_losses`.
"""

from workbench.lifecycle.finetune.config import OBJECTIVES, FinetuneConfig, TaskNameOrOptions, resolve_task, run_dir
from workbench.lifecycle.finetune.training import FinetuneResult, finetune

__all__ = ["OBJECTIVES", "FinetuneConfig", "FinetuneResult", "TaskNameOrOptions", "finetune", "resolve_task", "run_dir"]
