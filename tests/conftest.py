"""Shared fixtures. Tests never touch the hub and read data from ../shared/data by default."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))  # make_tiny_model, run_notebooks
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WORKBENCH_TRACKING", "0")  # tests of tracking turn it on against a temporary store

import pytest  # noqa: E402
import torch  # noqa: E402

DEFAULT_TORCH_THREADS = torch.get_num_threads()


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """Every test starts at the process's default torch thread count, whatever the tests before it
    set (``workbench.cli`` sets it for its run): sampled tokens depend on the thread count, so a
    leaked setting made a bitwise test pass in the suite and fail alone (issue 22)."""
    yield
    if torch.get_num_threads() != DEFAULT_TORCH_THREADS:
        torch.set_num_threads(DEFAULT_TORCH_THREADS)


@pytest.fixture(scope="session")
def lm():
    from workbench.inference.models import load_model

    return load_model(device="cpu")


@pytest.fixture(scope="session")
def sst5():
    from workbench.tasks import get_task

    return get_task("sst5")


@pytest.fixture(scope="session")
def sst5_prompts(lm, sst5):
    shots = sst5.fewshot(5, seed=0)
    return sst5.prompts(sst5.examples("test", limit=3, seed=1), lm.tokenizer, shots)
