#!/usr/bin/env bash
# GPU figures in one go, in under 8 minutes on one GPU:
#   1. install the vLLM extra (INSTALL=0 skips it: an offline machine, or vLLM already there);
#   2. run the backend tests (architectures, HF engine; the vLLM tests skip themselves without vLLM);
#   3. time HF generate, the hand-written baselines, the HF engine and the vLLM engine at N=32 in
#      bf16 (short answers and one long-answer setting), appending to results/benchmarks.jsonl.
# Without a GPU it falls back to the CPU with small settings and no vLLM, so that the script itself
# is checked anywhere:  CHECK=cpu RECORD=/tmp/cpu_check.jsonl bash benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} TOKENIZERS_PARALLELISM=false PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
RECORD=${RECORD:-results/benchmarks.jsonl}  # where the benchmark records go
start=$SECONDS

if [[ "${CHECK:-auto}" != cpu ]] && "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    device=cuda dtype=${DTYPE:-bf16}
    "$PYTHON" -c "import torch; print('GPU:', torch.cuda.get_device_name())"
    if [[ "${INSTALL:-1}" == 1 ]]; then
        # vLLM pins its own torch: install it only where that is wanted (the GPU machine), never on CI.
        "$PYTHON" -m pip install -q -e ".[vllm]" || echo "pip install -e .[vllm] failed: the vLLM engine will be skipped"
    fi
    short=(--items 6 --n 32 --n-check 256 --repeats 2 --vllm)
    long=(--long --items 2 --n 32 --max-new-tokens 128 --repeats 1 --vllm)
    tests=(tests/test_architectures.py tests/test_decoding.py)
else
    device=cpu dtype=fp32
    echo "no GPU (or CHECK=cpu): CPU fallback with small settings, no vLLM"
    short=(--items 1 --n 8 --n-check 16 --modes batched)
    long=(--long --items 1 --n 4 --max-new-tokens 8 --modes batched)
    tests=(tests/test_architectures.py)
fi
if [[ -f tests/test_vllm.py ]]; then tests+=(tests/test_vllm.py); fi  # the vLLM backend's tests, where this checkout has them

echo "== tests: ${tests[*]}"
"$PYTHON" -m pytest -q -x "${tests[@]}"

echo "== decoding benchmark, short answers ($device, $dtype)"
timeout 300 "$PYTHON" benchmarks/decoding_speed.py --device "$device" --dtype "$dtype" "${short[@]}" --record "$RECORD"
echo "== decoding benchmark, long answers ($device, $dtype)"
timeout 200 "$PYTHON" benchmarks/decoding_speed.py --device "$device" --dtype "$dtype" "${long[@]}" --record "$RECORD"

echo "== done in $((SECONDS - start)) s; records appended to $RECORD"
tail -n 2 "$RECORD" | "$PYTHON" -c "
import json, sys
for line in sys.stdin:
    record = json.loads(line)
    print(record['benchmark'], record['device'], record['machine'].get('cuda'), json.dumps(record['ratios'])[:400])
"
