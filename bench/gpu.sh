#!/usr/bin/env bash
# The GPU check in one call: every CUDA path of ista within 8 minutes on one H100/H200, from the source tree
# with the machine's own PyTorch (no install, no network). Each check has its own time budget; the log,
# the summary and JSON lines go to $OUT (default /tmp/ista-gpu). `--dry-run` lists the checks and budgets.
# See bench/gpu_check.py.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "${PYTHON:-python3}" bench/gpu_check.py "$@"
