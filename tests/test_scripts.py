"""The shell scripts parse (their CPU paths run in CI: scripts/test.sh; benchmarks/gpu_check.sh by hand with CHECK=cpu)."""

import subprocess

import pytest

from workbench.paths import PROJECT_ROOT

SCRIPTS = ["scripts/setup.sh", "scripts/test.sh", "scripts/main.sh", "scripts/install_torch.sh", "benchmarks/gpu_check.sh", ".ci/run"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_parses(script):
    done = subprocess.run(["bash", "-n", str(PROJECT_ROOT / script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
