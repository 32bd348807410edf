#!/usr/bin/env bash
# Install the pinned torch into the active Python environment, as the right build for this machine:
# the CPU build where there is no NVIDIA GPU (a bare `pip install torch` on Linux pulls the multi-GB
# CUDA build), the CUDA build where there is one. Nothing happens when torch is already installed.
#
#   TORCH_VERSION=2.13.0      the pin (default)
#   TORCH_BUILD=auto|cpu|cuda which build (default auto: cuda when `nvidia-smi -L` lists a GPU)
#   TORCH_SPEC=...            a pip requirement that replaces all of the above (e.g. "torch==2.14.1")
set -euo pipefail
PYTHON=${PYTHON:-python}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
TORCH_BUILD=${TORCH_BUILD:-auto}

if "$PYTHON" -c "import torch" 2>/dev/null; then
  exit 0
fi
pip_install() { "$PYTHON" -m pip install -q "$@"; }

if [ -n "${TORCH_SPEC:-}" ]; then
  pip_install "$TORCH_SPEC"
  exit 0
fi
if [ "$TORCH_BUILD" = auto ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then TORCH_BUILD=cuda; else TORCH_BUILD=cpu; fi
fi
echo "installing torch $TORCH_VERSION ($TORCH_BUILD build)"
case "$TORCH_BUILD:$(uname -s)" in
  cuda:*)
    pip_install "torch==$TORCH_VERSION" ;;  # PyPI's Linux wheels are the CUDA builds
  cpu:Darwin)
    pip_install "torch==$TORCH_VERSION" ;;  # macOS wheels on PyPI are CPU (and MPS) builds
  cpu:*)
    # A CPU wheel that pip finds locally (a wheel folder in pip's find-links) is used as it is,
    # and its dependencies come from the usual index; otherwise everything comes from PyTorch's
    # CPU index.
    if pip_install --no-index --no-deps "torch==$TORCH_VERSION+cpu" 2>/dev/null; then
      pip_install "torch==$TORCH_VERSION+cpu"
    else
      pip_install "torch==$TORCH_VERSION+cpu" --index-url https://download.pytorch.org/whl/cpu
    fi ;;
  *)
    echo "TORCH_BUILD must be auto, cpu or cuda, got $TORCH_BUILD" >&2; exit 2 ;;
esac
