"""The notebook runner (``scripts/main.sh`` runs ``scripts/run_notebooks.py``) killed mid-notebook and
started again (issue 22): finished training and decodes come back from the checkpoints and the
generation cache, the notebook runs to its end, and its results equal an uninterrupted run's.

The notebook is a small fixture in the shape of notebook 02 (fine-tune, then decode with the
fine-tuned model) on a tiny random Llama, run through the runner's ``run_one`` in a process group of
its own that the test kills (SIGKILL: no clean-up code runs, as in a crash or a power cut), once
while it trains and once while it decodes.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from make_tiny_model import make_tiny_model
from workbench.paths import PROJECT_ROOT

PARAMETERS = 'MODEL = ""\nWORK = ""\nOUT = ""'
TRAIN = """
from workbench.lifecycle.finetune import FinetuneConfig, finetune

config = FinetuneConfig(base=MODEL, tasks=("sst5",), method="full", lr=1e-2, batch_size=4, max_steps=12,
                        max_examples=16, device="cpu", save_every=2, output_dir=f"{WORK}/finetune")
trained = finetune(config, progress=False)
"""
DECODE = """
import json

from workbench.inference.engine import HFEngine
from workbench.inference.types import SamplingConfig

engine = HFEngine.load(str(trained.model_dir), device="cpu", batch_size=2, progress=False)
prompts = [f"<|im_start|>user\\nTell me about the number {i}.<|im_end|>\\n<|im_start|>assistant\\n" for i in range(16)]
samples = engine.sample(prompts, 4, SamplingConfig(temperature=1.0, max_new_tokens=32, seed=11))
with open(OUT, "w") as handle:
    token_ids = [s.token_ids for s in samples]
    json.dump({"losses": trained.losses, "resumed_from": trained.resumed_from, "token_ids": token_ids}, handle)
"""
RUN = """
import sys
from pathlib import Path
sys.path.insert(0, {scripts!r})
import run_notebooks
run_notebooks.ROOT = Path({root!r})  # the runner's runs/ folder goes to the test's folder
record = run_notebooks.run_one(Path({notebook!r}), "smoke", {params!r}, 600)
sys.exit(0 if record["status"] == "finished" else 1)
"""


@pytest.fixture(scope="module")
def fixture_notebook(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("notebook")
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(TRAIN),
        nbformat.v4.new_code_cell(DECODE),
    ]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / "90_interrupted.ipynb"
    nbformat.write(notebook, path)
    return path


def start(notebook: Path, model: str, work: Path) -> subprocess.Popen:
    """The runner on the fixture notebook, in a new process group, with its own cache under ``work``."""
    params = {"MODEL": model, "WORK": str(work), "OUT": str(work / "out.json")}
    script = RUN.format(scripts=str(PROJECT_ROOT / "scripts"), root=str(work), notebook=str(notebook), params=params)
    env = {**os.environ, "WORKBENCH_CACHE_DIR": str(work / "cache"), "WORKBENCH_TRACKING": "0"}
    return subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=PROJECT_ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process: subprocess.Popen) -> None:
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-3000:]


def kill_when(process: subprocess.Popen, ready, timeout_s: float = 600) -> None:
    """SIGKILL the runner's whole process group (runner and kernel) once ``ready()`` holds."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert process.poll() is None, "the run ended before the moment to interrupt it"
        assert time.monotonic() < deadline, "the moment to interrupt never came"
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)


def cache_lines(work: Path) -> int:
    return sum(len(path.read_text().splitlines()) for path in (work / "cache").rglob("sample.jsonl"))


def checkpoints(work: Path) -> list[Path]:
    return sorted((work / "finetune" / "checkpoints").glob("step-*.pt"))


def test_a_killed_notebook_run_resumes_from_its_checkpoints_and_cache_with_the_same_results(tmp_path, fixture_notebook):
    model = make_tiny_model(tmp_path / "tiny-llama", "llama")
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    started = time.perf_counter()
    finish(start(fixture_notebook, model, straight))
    straight_s = time.perf_counter() - started
    uninterrupted = json.loads((straight / "out.json").read_text())

    started = time.perf_counter()
    kill_when(start(fixture_notebook, model, broken), lambda: len(checkpoints(broken)) >= 2)  # while training
    steps_done = int(checkpoints(broken)[-1].stem.split("-")[1])
    kill_when(start(fixture_notebook, model, broken), lambda: cache_lines(broken) >= 4)  # while decoding
    cached = cache_lines(broken)
    finish(start(fixture_notebook, model, broken))
    broken_s = time.perf_counter() - started
    resumed = json.loads((broken / "out.json").read_text())

    assert resumed["token_ids"] == uninterrupted["token_ids"]
    assert resumed["losses"] == uninterrupted["losses"]  # every step's loss, bit for bit
    assert resumed["resumed_from"] == 12  # the third start found the training finished and reused it
    assert cache_lines(broken) == 16  # one line per prompt: no decode was written twice
    print(
        f"uninterrupted {straight_s:.1f} s; killed twice and resumed {broken_s:.1f} s; training killed after "
        f"step >= {steps_done} (checkpoint kept), decoding killed with {cached} of 16 prompts cached"
    )
