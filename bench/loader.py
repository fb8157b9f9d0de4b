"""Images/s of CIFAR-10 training pipelines with the same augmentation on the same cores, side by side.

Pipelines (pad-4 random crop + flip + normalise + cutout 16, batch 256, all usable CPUs):
  torchvision  DARTS' pipeline: torchvision's CIFAR10 reader, per-image transforms, DataLoader workers
  ffcv         our FFCV loader on a raw .beton written by `ista data cifar10`
  memory       our in-memory torch loader (data.loader=torch): batched crops on the device
The data are CIFAR-format batches made by `ista.data.synthetic` (random pixels; decoding raw images
does not depend on them). The pipelines run in turn, round after round, so each ratio compares runs
under the same load.

    python bench/loader.py [--images 50000] [--rounds 3] [--batch 256]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ista.config.schema import DataConfig
from ista.data.sources import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD
from ista.data.splits import open_split
from ista.data.synthetic import write_cifar10_folder


class Cutout:
    """DARTS' utils.Cutout, for the torchvision pipeline."""

    def __init__(self, length: int):
        self.length = length

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[1:]
        y, x = np.random.randint(h), np.random.randint(w)
        mask = torch.ones(h, w)
        half = self.length // 2
        mask[max(0, y - half) : min(h, y + half), max(0, x - half) : min(w, x + half)] = 0
        return img * mask


def torchvision_loader(root: Path, batch: int, workers: int):
    import torchvision
    from torchvision import transforms as T

    class Cifar(torchvision.datasets.CIFAR10):
        def _check_integrity(self):  # the MD5 sums are the official archive's; these files are made here
            return True

        def _load_meta(self):
            self.classes = list(CIFAR10_CLASSES)

    transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize(CIFAR10_MEAN, CIFAR10_STD), Cutout(16)])  # fmt: skip
    data = Cifar(str(root), train=True, transform=transform)
    loader = torch.utils.data.DataLoader(data, batch_size=batch, shuffle=True, num_workers=workers)
    return lambda epoch: iter(loader)


def ista_loader(config: DataConfig, batch: int):
    split = open_split(config, train=True)
    loader = split.loader(torch.arange(split.size), batch, augment=True, cutout=16)
    return lambda epoch: loader.epoch(seed=0, epoch=epoch)


def images_per_s(epoch_iter, epoch: int) -> float:
    started, n = time.perf_counter(), 0
    for x, _ in epoch_iter(epoch):
        n += len(x)
    return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    workers = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_cifar10_folder(root / "raw", per_batch=args.images // 5)
        from ista.data.beton import write_betons

        write_betons("cifar10", root / "raw", root / "beton", workers=workers)
        pipelines = {
            "torchvision": torchvision_loader(root / "raw", args.batch, workers),
            "ffcv": ista_loader(DataConfig(beton=str(root / "beton"), loader="ffcv"), args.batch),
            "memory": ista_loader(DataConfig(root=str(root / "raw"), loader="torch"), args.batch),
        }
        for run in pipelines.values():
            images_per_s(run, 0)  # warm-up: worker start, FFCV's JIT compilation, page cache
        rates: dict[str, list[float]] = {name: [] for name in pipelines}
        for r in range(args.rounds):
            for name, run in pipelines.items():
                rates[name].append(images_per_s(run, r + 1))
    median = {name: statistics.median(values) for name, values in rates.items()}
    print(json.dumps({
        "bench": "loader",
        "images": args.images,
        "batch": args.batch,
        "cpus": workers,
        "images_per_s": {name: round(v) for name, v in median.items()},
        "ffcv_over_torchvision": round(median["ffcv"] / median["torchvision"], 2),
        "memory_over_torchvision": round(median["memory"] / median["torchvision"], 2),
        "rounds": {name: [round(v) for v in values] for name, values in rates.items()},
    }))  # fmt: skip


if __name__ == "__main__":
    main()
