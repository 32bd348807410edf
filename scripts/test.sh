#!/usr/bin/env bash
# Set up the environment, run the test suite, then execute every numbered notebook headless in its
# smoke profile (same code path, few items).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
[ -n "${WORKBENCH_DATA_DIR:-}" ] || { [ -d ../shared/data ] && export WORKBENCH_DATA_DIR=$(cd ../shared/data && pwd); }
python -m pytest -q
python scripts/run_notebooks.py --profile smoke --timeout 900
