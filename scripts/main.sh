#!/usr/bin/env bash
# Set up the environment and run the main job: execute the numbered notebooks on the embedded
# default model and data (default profile). Executed notebooks go to runs/default/, results to results/,
# the job's record (wall time from this line on, commit, load, machine) to results/main_run.json
# (workbench/main_job.py). Options go to scripts/run_notebooks.py (notebook numbers, --allow-dirty, ...).
set -euo pipefail
export WORKBENCH_JOB_STARTED=$(date +%s.%N)
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
[ -n "${WORKBENCH_DATA_DIR:-}" ] || { [ -d ../shared/data ] && export WORKBENCH_DATA_DIR=$(cd ../shared/data && pwd); }
python scripts/run_notebooks.py --profile "${PROFILE:-default}" --timeout 3600 "$@"
