"""Sparse (2 ops per node, ISTA-NAS) versus dense (all 98 candidates, DARTS-style) super-net training step.

Both nets are the same module (8 cells, C=16 unless overridden); only the active index lists differ. The
two are timed alternately in one process, so the printed ratio is measured side by side.

    python bench/supernet_step.py [--device cuda] [--batch 64] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from ista.space.encoding import CODE_SIZE, DENSE_SUPPORT, NODE_SIZES
from ista.space.networks import build_search_network


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "cpu"


def step_seconds(net, x, y, weights, device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    logits, _ = net(x, weights)
    torch.nn.functional.cross_entropy(logits, y).backward()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    torch.manual_seed(0)
    net = build_search_network("cifar10", args.channels, args.layers).to(args.device)
    x = torch.randn(args.batch, 3, 32, 32, device=args.device)
    y = torch.randint(0, 10, (args.batch,), device=args.device)
    generator = torch.Generator().manual_seed(0)
    sparse = [[int(k) for k in torch.randperm(n, generator=generator)[:2]] for n in NODE_SIZES]
    weights = (torch.randn(CODE_SIZE, device=args.device), torch.randn(CODE_SIZE, device=args.device))

    times: dict[str, list[float]] = {"sparse": [], "dense": []}
    for repeat in range(args.repeats + 1):  # the first round warms up (allocator, cuDNN) and is dropped
        for name, support in (("sparse", sparse), ("dense", DENSE_SUPPORT)):
            net.set_support(support, support)
            t = step_seconds(net, x, y, weights, args.device)
            if repeat:
                times[name].append(t)
    sparse_s, dense_s = (statistics.median(times[k]) for k in ("sparse", "dense"))
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else cpu_name()
    print(
        json.dumps(
            {
                "bench": "supernet_step",
                "device": device_name,
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "batch": args.batch,
                "cells": args.layers,
                "channels": args.channels,
                "sparse_step_s": round(sparse_s, 4),
                "dense_step_s": round(dense_s, 4),
                "dense_over_sparse": round(dense_s / sparse_s, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
