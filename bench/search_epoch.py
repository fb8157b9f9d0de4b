"""One full epoch of the paper's two-stage search (cifar10-two-stage) on synthetic CIFAR-shaped images.

Random bytes stand in for CIFAR-10 (no data set can be downloaded where this runs); the arithmetic per
image is the same. Prints the epoch time, images per second and the recovery time, as one JSON line.

    python bench/search_epoch.py [--device cuda] [--images 50000] [--method ista|darts]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from ista.config import apply_overrides, preset
from ista.data.sources import CIFAR10_MEAN, CIFAR10_STD, ImageSet
from ista.data.splits import memory_split
from ista.report.console import RunProgress
from ista.runner import build_task
from ista.train.engine import build_loaders, run_epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--method", choices=["ista", "darts"], default="ista")
    args = parser.parse_args()
    name = "cifar10-two-stage" if args.method == "ista" else "cifar10-darts"
    config = apply_overrides(preset(name), [f"device={torch.device(args.device).type}", "epochs=50"])
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (args.images,), generator=g)
    device = torch.device(args.device)
    images = ImageSet(images, labels, CIFAR10_MEAN, CIFAR10_STD, 10)
    data = memory_split(images, device=device)
    task = build_task(config, data, device)
    loaders = build_loaders(config, data)
    results = {}
    started = time.perf_counter()
    with RunProgress(config.epochs, enabled=False) as progress:
        record = lambda epoch, metrics: results.update(metrics)  # noqa: E731
        run_epochs(task, loaders, seed=0, start_epoch=0, epochs=1, on_epoch_end=record, progress=progress)
    seconds = time.perf_counter() - started
    row = {
        "bench": "search_epoch",
        "preset": name,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "images": args.images,
        "batch": config.batch_size,
        "amp": str(task.dtype),
        "channels_last": task.channels_last,
        "epoch_s": round(seconds, 2),
        "train_images_per_s": round(len(loaders.train.indices) / seconds),
        "recovery_s": results.get("recovery_s"),
        "projected_50_epochs_h": round(50 * seconds * 50_000 / args.images / 3600, 3),
    }
    print(json.dumps(row))


if __name__ == "__main__":
    main()
