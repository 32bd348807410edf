"""The LLM lifecycle: data preparation, fine-tuning, hyper-parameter search, evaluation and the
registry of stages (base, fine-tuned, exported variants) that later parts compare and serve.

* :mod:`~workbench.lifecycle.dataprep`: de-duplication, splits, length and label EDA, augmentation;
* :mod:`~workbench.lifecycle.finetune`: full, top-layer or LoRA fine-tuning in bf16 autocast, dev-metric
  model selection with early stopping, checkpoints and resume (a package, one module per concern);
* :mod:`~workbench.lifecycle.regression_loss`: the regression-aware objective (squared error of the exact
  grid mean, one tree forward pass);
* :mod:`~workbench.lifecycle.hpo`: grid, random and Bayesian (TPE) search on the dev objective;
* :mod:`~workbench.lifecycle.recipe`: the workbench's fine-tuned stage end to end, cached (notebooks 02-04);
* :mod:`~workbench.lifecycle.evaluation`: perplexity, classification metrics, calibration, slices;
* :mod:`~workbench.lifecycle.stages`: named stages with fingerprint checks;
* :mod:`~workbench.lifecycle.plots`: the fine-tuning loss curve.
"""
