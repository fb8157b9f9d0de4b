#!/usr/bin/env bash
# The GPU benchmarks in one call, within about 8 minutes on one modern GPU (the device tool lends a GPU for
# a few minutes per session, on a machine with PyTorch but no network). Runs from the source tree with the
# machine's python3 (or $PYTHON); prints JSON lines and, if $OUT is set, also writes them to $OUT/gpu.jsonl.
set -uo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
out="${OUT:-/tmp}/gpu.jsonl"
: >"$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$out"
# Sparse vs dense search step at the paper's batch sizes, fp32 and bf16 autocast.
timeout 150 "$py" bench/supernet_step.py --device cuda --batch 64 256 --repeats 10 | tee -a "$out"
timeout 90 "$py" bench/supernet_step.py --device cuda --batch 256 --repeats 10 --amp | tee -a "$out"
# One full-size two-stage search epoch (50,000 CIFAR-shaped images, batch 256).
timeout 150 "$py" bench/search_epoch.py --device cuda | tee -a "$out"
# Recovery of all 8 nodes (CPU work on rank 0; cvxpy is usually absent there).
timeout 30 "$py" bench/recovery.py --rounds 50 | tee -a "$out"
# The sparse super-net and a whole search step never synchronise with the host.
timeout 90 "$py" -m pytest -q -p no:cacheprovider tests/space/test_networks.py tests/search/test_search.py -k host_sync 2>&1 | tail -2 | tee -a "$out"
