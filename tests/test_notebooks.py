"""Another model through a notebook: the runner passes MODEL, and the run lands in that model's own folder.

The model is a tiny randomly initialised Qwen2 (another architecture than the embedded Llama)
saved by the test; notebook 02 in its smoke profile fine-tunes it, decodes with it and writes its
tables into the run folder, never into results/.
"""

import json
import os
import subprocess
import sys

from make_tiny_model import make_tiny_model  # noqa: E402
from workbench.inference.models import model_id
from workbench.paths import PROJECT_ROOT, RESULTS_DIR


def test_notebook_02_runs_end_to_end_on_another_model(tmp_path):
    model = make_tiny_model(tmp_path / "tiny-qwen2", "qwen2")
    before = {p: p.stat().st_mtime for p in RESULTS_DIR.glob("*")}
    env = {**os.environ, "WORKBENCH_CACHE_DIR": str(tmp_path / "cache"), "WORKBENCH_TRACKING": "0"}
    done = subprocess.run(
        [sys.executable, "scripts/run_notebooks.py", "--profile", "smoke", "-p", "MODEL", model, "02"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    runs = sorted((PROJECT_ROOT / "runs" / "smoke" / model_id(model)).glob("*-02"))
    assert runs, "no run folder for the tiny model"
    manifest = json.loads((runs[-1] / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["parameters"]["MODEL"] == model
    assert manifest["runner"]["status"] == "finished" and manifest["runner"]["images"] >= 2
    assert {fp["name"] for fp in manifest["models"]} >= {model}
    table = runs[-1] / "results" / "02_metric_aware.csv"
    assert table.exists() and "prior mean" in table.read_text()
    assert {p: p.stat().st_mtime for p in RESULTS_DIR.glob("*")} == before  # the README's results are untouched
