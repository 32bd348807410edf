"""Inference: the bottom layer every other part of the workbench decodes through.

* :mod:`~workbench.inference.models`: load a model (embedded, local folder or hub id) with its fingerprint;
* :mod:`~workbench.inference.engine`: ``Engine.sample`` / ``greedy`` / ``score`` with a shared prefill;
* :mod:`~workbench.inference.frontier`: the sample tree and per-row decoding frontiers;
* :mod:`~workbench.inference.attention`: exact attention over shared prompt keys (sliding windows included);
* :mod:`~workbench.inference.logits`: temperature, top-k and top-p filtering;
* :mod:`~workbench.inference.gencache`: the append-only, checksummed generation cache.
"""
