"""The LLM lifecycle: data preparation, fine-tuning, hyper-parameter search, evaluation and the
registry of stages (base, fine-tuned, exported variants) that later parts compare and serve.

* :mod:`~workbench.lifecycle.dataprep`: de-duplication, splits, length and label EDA, augmentation;
* :mod:`~workbench.lifecycle.finetune`: full or LoRA fine-tuning with checkpoints and resume;
* :mod:`~workbench.lifecycle.hpo`: grid, random and Bayesian (TPE) search;
* :mod:`~workbench.lifecycle.evaluation`: perplexity, classification metrics, calibration, slices;
* :mod:`~workbench.lifecycle.stages`: named stages with fingerprint checks.
"""
