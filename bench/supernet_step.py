"""One search step (architecture step + weight step) of ISTA-NAS's sparse super-net against DARTS's dense one.

Both use the same super-net module (8 cells, C=16, CIFAR-shaped input) and the real search tasks of
`ista.search`; ISTA runs 2 candidates per node, DARTS all 98 per cell. The two are timed alternately in one
process, so the printed ratios are measured side by side. Memory: bytes of activations kept for the
backward pass (any device), and on CUDA the peak allocated memory of a step.

    python bench/supernet_step.py [--device cuda] [--batch 16 64] [--repeats 5] [--amp]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from ista.config import apply_overrides, preset
from ista.data.sources import ImageSet
from ista.data.splits import memory_split
from ista.runner import build_task


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "cpu"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def saved_activation_bytes(task, batch) -> int:
    """Bytes of the tensors autograd keeps for backward in one forward pass (parameters excluded)."""
    params = {p.untyped_storage().data_ptr() for p in task.model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits, _ = task.forward(task.model, batch[0], task.arch_weights())
    logits.sum().backward()
    task.model.zero_grad(set_to_none=True)
    return sum(seen.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast (amp=bf16; default: off)")
    args = parser.parse_args()
    device = torch.device(args.device)
    shape = [f"network.channels={args.channels}", f"network.layers={args.layers}", f"device={device.type}",
             f"amp={'bf16' if args.amp else 'off'}"]  # fmt: skip
    images = ImageSet(
        torch.zeros(1, 3, 32, 32, dtype=torch.uint8), torch.zeros(1, dtype=torch.long), (0,), (1,), 10
    )
    data = memory_split(images, device=device)
    tasks = {
        "sparse": build_task(apply_overrides(preset("cifar10-two-stage"), shape), data, device),
        "dense": build_task(apply_overrides(preset("cifar10-darts"), shape), data, device),
    }
    name = torch.cuda.get_device_name() if device.type == "cuda" else cpu_name()
    for batch_size in args.batch:
        g = torch.Generator().manual_seed(batch_size)
        x = torch.randn(batch_size, 3, 32, 32, generator=g).to(device)
        y = torch.randint(0, 10, (batch_size,), generator=g).to(device)
        times: dict[str, list[float]] = {k: [] for k in tasks}
        peak: dict[str, int] = {}
        for repeat in range(args.repeats + 1):  # round 0 warms up (allocator, cuDNN) and is not timed
            for kind, task in tasks.items():
                task.start_epoch(0)
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                sync(device)
                start = time.perf_counter()
                task.train_step((x, y), (x, y))
                sync(device)
                if repeat:
                    times[kind].append(time.perf_counter() - start)
                if device.type == "cuda":
                    peak[kind] = torch.cuda.max_memory_allocated()
        saved = {kind: saved_activation_bytes(task, (x, y)) for kind, task in tasks.items()}
        sparse_s, dense_s = (statistics.median(times[k]) for k in ("sparse", "dense"))
        row = {
            "bench": "supernet_step",
            "device": name,
            "torch": torch.__version__,
            "amp": args.amp,
            "batch": batch_size,
            "cells": args.layers,
            "channels": args.channels,
            "sparse_step_s": round(sparse_s, 4),
            "dense_step_s": round(dense_s, 4),
            "sparse_over_dense_time": round(sparse_s / dense_s, 3),
            "sparse_activations_mb": round(saved["sparse"] / 2**20, 1),
            "dense_activations_mb": round(saved["dense"] / 2**20, 1),
            "sparse_over_dense_activations": round(saved["sparse"] / saved["dense"], 3),
        }
        if peak:
            row |= {
                "sparse_peak_mb": round(peak["sparse"] / 2**20),
                "dense_peak_mb": round(peak["dense"] / 2**20),
            }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
