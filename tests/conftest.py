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
# The thread count every test starts and ends with: the default, or what a module pinned (one_torch_thread).
_expected_threads = {"count": DEFAULT_TORCH_THREADS}


def _set_threads(count: int) -> None:
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """Every test starts at the process's default torch thread count (or its module's pinned one),
    whatever the tests before it set (``workbench.cli`` sets it for its run): sampled tokens depend
    on the thread count, so a leaked setting made a bitwise test pass in the suite and fail alone
    (issue 22)."""
    _set_threads(_expected_threads["count"])
    yield
    _set_threads(_expected_threads["count"])


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


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray instance with 2 CPUs for the module's tests (skipped without the ``ray`` extra)."""
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install -e .[ray]")
    # Ray gives its raylet a fixed 30 s to register; on a loaded 2-core machine that can pass, so
    # the start is tried again (a failed start leaves nothing behind after ray.shutdown()).
    for attempt in range(3):
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            break
        except Exception:
            ray.shutdown()
            if attempt == 2:
                raise
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for the module's tests, as on a one-CPU Ray actor: CPU kernels split
    their sums by thread count, so results compared bit for bit across processes need the same count."""
    _expected_threads["count"] = 1
    _set_threads(1)
    yield
    _expected_threads["count"] = DEFAULT_TORCH_THREADS
    _set_threads(DEFAULT_TORCH_THREADS)
