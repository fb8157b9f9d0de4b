#!/usr/bin/env bash
# The GPU benchmarks, in one call (the device tool lends a GPU for a few minutes per session).
# Sets up the environment, then prints one JSON line per measurement.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv && .venv/bin/pip install -q torch==2.14.1 torchvision==0.29.1 -e .
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
for batch in 64 256; do
  .venv/bin/python bench/supernet_step.py --device cuda --batch "$batch" --repeats 10
done
.venv/bin/python -m pytest -q tests/space/test_networks.py -k host_sync
