#!/usr/bin/env bash
# Set up the environment and run the main job: execute the numbered notebooks on the embedded
# default model and data (default profile). Executed notebooks go to runs/default/, results to results/,
# the job's record (wall time from this line on, commit, load, machine) to results/main_run.json
# (workbench/main_job.py). Options go to scripts/run_notebooks.py (notebook numbers, --allow-dirty, ...).
# `main.sh --seeds N` runs the seeds command instead, beside the main job (after it): the ladder's fine-tuned
# arms at seeds 1..N-1, seed 0 read from results/ladder.csv (results/seeds*.csv, seeds_run.json with its wall time).
set -euo pipefail
export WORKBENCH_JOB_STARTED=$(date +%s.%N)
seeds=0
if [ "${1:-}" = "--seeds" ]; then seeds=${2:?--seeds needs a number}; shift 2; fi
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
[ -n "${WORKBENCH_DATA_DIR:-}" ] || { [ -d ../shared/data ] && export WORKBENCH_DATA_DIR=$(cd ../shared/data && pwd); }
if [ "$seeds" -gt 0 ]; then exec python -m workbench seeds --seeds "$seeds" --profile "${PROFILE:-default}" "$@"; fi
# A cell may run for hours on a cold 2-core machine (notebook 02 trains the ladder's three arms in one cell, over
# an hour there): the limit only stops a hung cell.
python scripts/run_notebooks.py --profile "${PROFILE:-default}" --timeout 14400 "$@"
