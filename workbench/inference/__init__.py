"""Inference: the bottom layer every other part of the workbench decodes through.

* :mod:`~workbench.inference.models`: load a model (embedded, local folder or hub id) with its fingerprint;
* :mod:`~workbench.inference.engine`: ``Engine.sample`` / ``greedy`` / ``score`` with a shared prefill;
* :mod:`~workbench.inference.frontier`: the sample tree and per-row decoding frontiers;
* :mod:`~workbench.inference.attention`: exact attention over shared prompt keys (sliding windows included);
* :mod:`~workbench.inference.logits`: temperature, top-k and top-p filtering;
* :mod:`~workbench.inference.gencache`: the append-only, checksummed generation cache.

Backends behind one interface, the :class:`~workbench.inference.protocol.Engine` protocol:

* :mod:`~workbench.inference.openai_compat`: any OpenAI-compatible completions server;
* :mod:`~workbench.inference.vllm_engine`: vLLM in process (GPU, ``pip install -e .[vllm]``);
* :mod:`~workbench.inference.ray_engine`: prompts sharded over engine actors on Ray (``pip install -e .[ray]``);
* helpers: :mod:`~workbench.inference.end_of_turn`, :mod:`~workbench.inference.prompt_logprobs`
  (per-token log-probabilities, for echo scoring), :mod:`~workbench.inference.cachemap`.
"""
