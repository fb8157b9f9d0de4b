"""Opens a split of the configured data set through the chosen reader, behind one loader interface.

Readers: `ffcv` (`.beton` files written by `ista data`), `torch` (the raw data: CIFAR-10's python
batches read into memory, ImageNet folders through torchvision), and scikit-learn's digits in memory.
`data.loader=auto` takes FFCV when `data.beton` is set and ffcv imports, and says so when it falls back.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from ista.config.schema import DataConfig
from ista.data.augment import Finish
from ista.data.folders import FolderLoader, ImageFolder, scan_image_folder
from ista.data.loaders import BatchLoader, ImageLoader
from ista.data.sources import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    DataError,
    ImageSet,
    load_cifar10,
    load_digits,
)

NORMALISATION = {"cifar10": (CIFAR10_MEAN, CIFAR10_STD), "imagenet": (IMAGENET_MEAN, IMAGENET_STD)}
CLASSES = {"cifar10": 10, "imagenet": 1000}
SPLIT_NAMES = {"cifar10": ("train", "test"), "imagenet": ("train", "val")}


@functools.cache
def ffcv_import_error() -> str | None:
    """Why ffcv cannot be used here, or None when it imports."""
    try:
        import ffcv.loader  # noqa: F401
    except Exception as err:  # an ImportError, or a missing libturbojpeg/OpenCV shared library
        return f"{type(err).__name__}: {err}"
    return None


def choose_reader(data: DataConfig) -> str:
    if data.dataset == "digits" or data.loader == "torch":
        return "torch"
    if data.loader == "ffcv":
        if error := ffcv_import_error():
            raise DataError(f"data.loader=ffcv but ffcv does not import ({error}); {INSTALL_FFCV}")
        if not data.beton:
            raise DataError("data.loader=ffcv needs data.beton, the folder `ista data` wrote")
        return "ffcv"
    if not data.beton:
        return "torch"  # without importing ffcv: its import compiles numba code for seconds
    error = ffcv_import_error()
    if error is None:
        return "ffcv"
    if not data.root:
        raise DataError(f"data.beton needs ffcv, which does not import ({error}); {INSTALL_FFCV}")
    _notice(f"ffcv is not available ({error}); reading {data.root} with the torch loader instead")
    return "torch"


INSTALL_FFCV = "install it with `pip install 'ista[ffcv]'` (needs libopencv-dev libturbojpeg0-dev pkg-config)"


@functools.cache
def _notice(message: str) -> None:
    print(f"ista: {message}", file=sys.stderr)


@dataclass(frozen=True)
class Split:
    """One split of a data set, opened; `loader` makes batch loaders over index lists of it."""

    dataset: str
    source: ImageSet | ImageFolder | Path  # in memory, an image folder, or a .beton file
    size: int
    num_classes: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    device: torch.device
    rank: int = 0
    world: int = 1
    workers: int = 1

    @property
    def reader(self) -> str:
        return "ffcv" if isinstance(self.source, Path) else "torch"

    def loader(
        self,
        indices: torch.Tensor,
        batch_size: int,
        *,
        augment: bool,
        shuffle: bool = True,
        stream: int = 0,
        cutout: int = 0,
        jitter: bool = False,
    ) -> BatchLoader:
        """`augment`: the data set's training augmentation (CIFAR: pad-4 crop + flip; ImageNet: random-resized
        crop + flip) plus cutout/jitter if asked; otherwise the evaluation view (ImageNet: centre crop)."""
        finish = Finish(self.mean, self.std, cutout if augment else 0, jitter and augment)
        common = {"device": self.device, "shuffle": shuffle, "stream": stream, "rank": self.rank,
                  "world": self.world}  # fmt: skip
        if isinstance(self.source, ImageSet):
            return ImageLoader(self.source, indices, batch_size, finish, crop=augment, **common)
        if isinstance(self.source, ImageFolder):
            return FolderLoader(self.source, indices, batch_size, finish, train=augment, workers=self.workers,
                                **common)  # fmt: skip
        from ista.data.ffcv_loader import FfcvLoader

        if self.dataset == "cifar10":
            crop = "pad" if augment else "none"
        else:
            crop = "resized" if augment else "centre"
        return FfcvLoader(self.source, indices, batch_size, finish, crop=crop, workers=self.workers, **common)


def open_split(
    data: DataConfig, train: bool, device: torch.device | str = "cpu", rank: int = 0, world: int = 1
) -> Split:
    """The training (`train=True`) or test/validation split; `data.subset` shortens the training split."""
    device = torch.device(device)
    workers = data.workers or len(os.sched_getaffinity(0))
    common = {"device": device, "rank": rank, "world": world, "workers": workers}
    if data.dataset == "digits":
        digits = load_digits(train)
        digits = _on(_first(digits, data.subset) if train else digits, device)
        return Split("digits", digits, len(digits.labels), 10, 1, digits.mean, digits.std, **common)
    mean, std = NORMALISATION[data.dataset]
    name = SPLIT_NAMES[data.dataset][0 if train else 1]
    if choose_reader(data) == "ffcv":
        from ista.data.ffcv_loader import beton_size

        path = Path(data.beton).expanduser() / f"{name}.beton"
        size = beton_size(path)
        size = min(size, data.subset) if train and data.subset else size
        classes = _beton_classes(path.parent, data.dataset)
        return Split(data.dataset, path, size, classes, 3, mean, std, **common)
    if data.dataset == "cifar10":
        images = load_cifar10(data.root, train=train)
        images = _on(_first(images, data.subset) if train else images, device)
        return Split("cifar10", images, len(images.labels), 10, 3, mean, std, **common)
    root = Path(data.root).expanduser()
    classes = tuple(sorted(p.name for p in (root / "train").iterdir() if p.is_dir())) if not train else None
    folder = scan_image_folder(root / name, classes)
    size = min(len(folder.samples), data.subset) if train and data.subset else len(folder.samples)
    return Split("imagenet", folder, size, len(folder.classes), 3, mean, std, **common)


def _first(data: ImageSet, n: int) -> ImageSet:
    if not n:
        return data
    return ImageSet(data.images[:n], data.labels[:n], data.mean, data.std, data.num_classes)


def _on(data: ImageSet, device: torch.device) -> ImageSet:
    """An in-memory set on the device, once for all its loaders (CIFAR-10's 50,000 images: 154 MB)."""
    return ImageSet(data.images.to(device), data.labels.to(device), data.mean, data.std, data.num_classes)


def _beton_classes(folder: Path, dataset: str) -> int:
    """From the manifest `ista data` writes; the data set's usual number for files written by other tools."""
    manifest = folder / "manifest.json"
    if not manifest.exists():
        return CLASSES[dataset]
    written = json.loads(manifest.read_text())
    if written.get("dataset") != dataset:
        raise DataError(f"{folder} holds {written.get('dataset')!r} files, not {dataset!r} (see {manifest})")
    return int(written["num_classes"])
