#!/usr/bin/env bash
# Set up the environment, lint, run the test suite, then execute every numbered notebook headless in its
# smoke profile (same code path, few items), on the embedded model and on a second, tiny model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
[ -n "${WORKBENCH_DATA_DIR:-}" ] || { [ -d ../shared/data ] && export WORKBENCH_DATA_DIR=$(cd ../shared/data && pwd); }
ruff check .            # lint rules and their exceptions: [tool.ruff] in pyproject.toml
ruff format --check .   # the formatter's layout, notebooks included
python -m pytest -q
# Order dependence: each test file that claims bitwise-equal results (docs/reproducibility.md), run alone,
# so a claim that holds only after what an earlier test left behind (a thread count, a cache) fails here.
for claim in tests/test_ray.py tests/test_cancellation.py tests/test_decoding.py tests/test_openai_compat.py \
             tests/test_experiments_over_backends.py "tests/test_finetune.py -k resume" tests/test_trunk.py; do
    python -m pytest -q -p no:randomly $claim
done
python scripts/run_notebooks.py --profile smoke --timeout 900
# A second model through every notebook: a tiny randomly initialised Qwen2 (another architecture than
# the embedded Llama), with a cache of its own; its runs land in runs/smoke/<its id>/, never in results/.
tiny=$(mktemp -d)
python scripts/make_tiny_model.py "$tiny/tiny-qwen2" --architecture qwen2
WORKBENCH_CACHE_DIR="$tiny/cache" python scripts/run_notebooks.py --profile smoke --timeout 900 -p MODEL "$tiny/tiny-qwen2"
