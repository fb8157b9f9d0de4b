"""Opens the splits of the configured data set through the chosen reader, behind one loader interface.

Readers: `ffcv` (`.beton` files written by `ista data`) and `torch` (the raw data: pickles and .mat files
read into memory, folders of small images decoded into memory, folders of large ones read image by image
through torchvision). What the data set is comes from its declaration (`ista.data.datasets`);
`data.loader=auto` takes FFCV when `data.beton` is set and ffcv imports, and says so when it falls back.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from ista.config.schema import DataConfig
from ista.data.augment import Finish
from ista.data.datasets import SMALL, Dataset, Facts, Source, dataset
from ista.data.folders import (
    FolderLoader,
    ImageFolder,
    folder_transform,
    load_images,
    read_image,
)
from ista.data.loaders import BatchLoader, ImageLoader
from ista.data.sources import DataError, ImageSet

MANIFEST = "manifest.json"


@functools.cache
def ffcv_import_error() -> str | None:
    """Why ffcv cannot be used here, or None when it imports."""
    try:
        import ffcv.loader  # noqa: F401
    except Exception as err:  # an ImportError, or a missing libturbojpeg/OpenCV shared library
        return f"{type(err).__name__}: {err}"
    return None


def choose_reader(data: DataConfig) -> str:
    if not dataset(data.dataset).beton or data.loader == "torch":
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
    """One split of a data set, opened; `loader` makes batch loaders over positions in its `indices`."""

    facts: Facts
    source: ImageSet | ImageFolder | Path  # in memory, an image folder, or a .beton file
    indices: torch.Tensor  # the images the split uses (positions in `source`), in its order
    crop: str  # the training crop: "pad" (pad-and-crop, stored sizes) or "resized" (random-resized)
    flip: bool
    device: torch.device
    rank: int = 0
    world: int = 1
    workers: int = 1

    @property
    def reader(self) -> str:
        return "ffcv" if isinstance(self.source, Path) else "torch"

    @property
    def size(self) -> int:
        return len(self.indices)

    @property
    def num_classes(self) -> int:
        return len(self.facts.classes)

    @property
    def channels(self) -> int:
        return self.facts.channels

    @property
    def mean(self) -> tuple[float, ...]:
        return self.facts.mean

    @property
    def std(self) -> tuple[float, ...]:
        return self.facts.std

    def loader(
        self,
        positions: torch.Tensor,
        batch_size: int,
        *,
        augment: bool,
        shuffle: bool = True,
        stream: int = 0,
        cutout: int = 0,
        jitter: bool = False,
    ) -> BatchLoader:
        """`augment`: the training augmentation (`crop`, and flips where the data set has them) plus
        cutout/jitter if asked; otherwise the evaluation view (images read one by one: resized and
        centre-cropped). `positions` index the split's `indices`."""
        finish = Finish(self.mean, self.std, cutout if augment else 0, jitter and augment)
        indices = self.indices[torch.as_tensor(positions)]
        common = {
            "device": self.device,
            "shuffle": shuffle,
            "stream": stream,
            "rank": self.rank,
            "world": self.world,
        }
        size, flip, padding = self.facts.size, self.flip, self.facts.padding
        if isinstance(self.source, ImageSet):  # stored at `size`: pad-and-crop
            return ImageLoader(
                self.source, indices, batch_size, finish, crop=augment, padding=padding, flip=flip, **common
            )
        if isinstance(self.source, ImageFolder):
            return FolderLoader(
                self.source,
                indices,
                batch_size,
                finish,
                train=augment,
                workers=self.workers,
                size=size,
                flip=flip,
                **common,
            )
        from ista.data.ffcv_loader import FfcvLoader

        crop = self.crop if augment else {"pad": "none", "resized": "centre"}[self.crop]
        return FfcvLoader(
            self.source,
            indices,
            batch_size,
            finish,
            crop=crop,
            workers=self.workers,
            size=size,
            padding=padding,
            flip=flip,
            channels=self.channels,
            **common,
        )


def open_data(
    data: DataConfig, test: bool = True, device: torch.device | str = "cpu", rank: int = 0, world: int = 1
) -> tuple[Split, Split | None]:
    """The training split (`data.subset` shortens it) and, with `test`, the test split of `data.dataset`,
    through the reader `choose_reader` picks. Bad data is a `DataError` before anything is written."""
    device = torch.device(device)
    common: dict[str, Any] = {
        "device": device,
        "rank": rank,
        "world": world,
        "workers": data.workers or len(os.sched_getaffinity(0)),
    }
    declared = dataset(data.dataset)
    if data.size and data.size < MIN_SIZE:
        raise DataError(
            f"data.size={data.size} is too small: the two reduction cells need {MIN_SIZE} px or more"
        )
    if choose_reader(data) == "ffcv":
        facts, sources, crop = _open_betons(data, declared, test)
    else:
        facts, sources, crop = _open_raw(data, declared, test)
    if data.jitter and facts.channels != 3:
        raise DataError(f"data.jitter=true needs colour images; {facts.dataset} is greyscale here")
    train, test_source = (_on(s, device) if isinstance(s, ImageSet) else s for s in sources)
    order = training_order(_labels(train), data.subset, declared.mixed)
    splits = [Split(facts, train, order, crop, declared.flip, **common)]
    if test_source is not None:
        everything = torch.arange(len(_labels(test_source)))
        splits.append(Split(facts, test_source, everything, crop, declared.flip, **common))
    return splits[0], splits[1] if test_source is not None else None


def memory_split(data: ImageSet, name: str = "cifar10", device: torch.device | str = "cpu") -> Split:
    """A training split of images already in memory (benchmarks, tests), with data set `name`'s classes
    and augmentation."""
    declared, device = dataset(name), torch.device(device)
    classes = declared.classes or tuple(map(str, range(data.num_classes)))
    side, channels = data.images.shape[-1], data.images.shape[1]
    facts = Facts(name, classes, side, channels, data.mean, data.std, declared.test_split)
    return Split(facts, _on(data, device), torch.arange(len(data.labels)), "pad", declared.flip, device)


def open_split(
    data: DataConfig, train: bool, device: torch.device | str = "cpu", rank: int = 0, world: int = 1
) -> Split:
    """The training (`train=True`) or test split alone."""
    train_split, test_split = open_data(data, not train, device, rank, world)
    if train:
        return train_split
    assert test_split is not None  # opened with test=True
    return test_split


MIN_SIZE = 4  # the CIFAR stem keeps the side; two reduction cells halve it twice
SUBSET_SEED = 0  # `data.subset` is the same images for every run seed


def training_order(labels: torch.Tensor, subset: int, mixed: bool) -> torch.Tensor:
    """The training images a run uses, in the order whose halves a two-stage search splits: all in stored
    order where that is random and no subset is asked (the official code's halves), else a stratified order
    cut to `subset`, so that every class keeps its share in the subset and in both halves (to one image)."""
    n = len(labels)
    if mixed and not (subset and subset < n):
        return torch.arange(n)
    order = stratified_order(labels, SUBSET_SEED)
    return order[:subset] if subset else order


def stratified_order(labels: torch.Tensor, seed: int) -> torch.Tensor:
    """Every class's images in a seeded random order, interleaved in proportion: image r of a class of n
    comes at (r + ½)/n of the way, so any prefix holds each class in its share (to one image)."""
    g = torch.Generator().manual_seed(seed)
    shuffled = torch.randperm(len(labels), generator=g)
    y = labels[shuffled]
    counts = torch.bincount(y)
    by_class = torch.argsort(y, stable=True)
    rank = torch.empty(len(y), dtype=torch.float64)
    rank[by_class] = (torch.arange(len(y)) - (torch.cumsum(counts, 0) - counts)[y[by_class]]).double()
    return shuffled[torch.argsort((rank + 0.5) / counts[y], stable=True)]


def _labels(source: ImageSet | ImageFolder | Path) -> torch.Tensor:
    if isinstance(source, Path):
        from ista.data.ffcv_loader import beton_labels

        return beton_labels(source)
    return source.labels


def _open_raw(data: DataConfig, declared: Dataset, test: bool):
    """Reads the raw files, resolves what the declaration leaves to the data, puts small images in memory."""
    if not data.root and declared.needs_root:
        raise DataError(f"dataset={declared.name} needs data.root (holding {declared.layout}) or data.beton")
    train, test_source, test_split = declared.read(data.root)
    channels = declared.channels or _folder(train).channels
    size = data.size or declared.size or _folder(train).median_side
    classes = declared.classes or _folder(train).classes
    if isinstance(train, ImageFolder) and declared.size is None and size <= SMALL:
        assert isinstance(test_source, ImageFolder)  # one reader reads both splits alike
        train, test_source = _in_memory(train, size), _in_memory(test_source, size)  # small images in memory
    elif isinstance(train, ImageSet) and size != train.images.shape[-1]:
        assert isinstance(test_source, ImageSet)
        train, test_source = _resized(train, size), _resized(test_source, size)  # asked: data.size
    if declared.mean is not None:
        assert declared.std is not None  # declared with the mean
        mean, std = declared.mean, declared.std
    else:
        mean, std = normalisation(train, size)
    facts = Facts(declared.name, tuple(classes), size, channels, tuple(mean), tuple(std), test_split)
    crop = "pad" if isinstance(train, ImageSet) else "resized"
    return facts, (train, test_source if test else None), crop


def _folder(source: Source) -> ImageFolder:
    """A split whose declaration leaves its classes, side or channels to the data: a folder's, read image
    by image (the declarations of data sets in memory fix all three)."""
    assert isinstance(source, ImageFolder), source
    return source


def _on(data: ImageSet, device: torch.device) -> ImageSet:
    """An in-memory set on the device, once for all its loaders (CIFAR-10's 50,000 images: 154 MB)."""
    return replace(data, images=data.images.to(device), labels=data.labels.to(device))


def _in_memory(folder: ImageFolder, size: int) -> ImageSet:
    return ImageSet(load_images(folder, size), folder.labels, (), (), len(folder.classes))


def _resized(data: ImageSet, size: int) -> ImageSet:
    """An in-memory set at another side, as asked with data.size (bilinear, antialiased when shrinking)."""
    x = torch.nn.functional.interpolate(
        data.images.float(), size=(size, size), mode="bilinear", antialias=True
    )
    return replace(data, images=x.round_().clamp_(0, 255).to(torch.uint8))


NORMALISATION_SAMPLE = 512  # images of a folder read one by one that its normalisation is computed from


def normalisation(train: ImageSet | ImageFolder, size: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1] of the training split (in memory: all of it; read image by image:
    a seeded sample of its evaluation views)."""
    if isinstance(train, ImageSet):
        x = train.images
    else:
        g = torch.Generator().manual_seed(SUBSET_SEED)
        chosen = torch.randperm(len(train.samples), generator=g)[:NORMALISATION_SAMPLE].tolist()
        view = folder_transform(False, size)
        x = torch.stack([view(read_image(train.samples[i][0], train.channels)) for i in chosen])
    # numpy's sums do not depend on torch's thread count, so every rank and every resume gets the same
    pixels = x.transpose(0, 1).flatten(1).numpy().astype(np.float64) / 255
    mean, std = pixels.mean(1), pixels.std(1, ddof=1)
    return tuple(round(float(v), 8) for v in mean), tuple(round(float(v), 8) for v in std)


def _open_betons(data: DataConfig, declared: Dataset, test: bool):
    """The .beton files `ista data` wrote, checked against what the run asks for: the manifest's data set,
    image side and classes. Files of CIFAR-10 or ImageNet written by other tools (no manifest) take the
    declaration's facts."""
    from ista.data.ffcv_loader import beton_size

    folder = Path(data.beton).expanduser()
    path = folder / MANIFEST
    if path.exists():
        written = json.loads(path.read_text())
        if written.get("dataset") != declared.name:
            raise DataError(
                f"{folder} holds {written.get('dataset')!r} files, not {declared.name!r} (see {path})"
            )
        facts = (
            Facts.from_dict(written["facts"]) if "facts" in written else _declared_facts(declared, written)
        )
        stored = written.get("image_field", {}).get("write_mode", "raw")
    elif declared.mean is None or (declared.classes is None and not data.root):
        raise DataError(f"{folder} has no {MANIFEST}: write the files with `ista data {declared.name}`")
    else:
        classes = declared.classes or _folder(declared.read(data.root)[0]).classes
        facts = _declared_facts(declared, {"classes": classes})
        stored = "raw" if facts.size <= SMALL else "proportion"
    if stored == "raw" and data.size and data.size != facts.size:
        raise DataError(
            f"{folder} holds {facts.size}×{facts.size} images and data.size={data.size}: write them "
            f"again with `ista data {declared.name} --size {data.size}` or leave data.size out"
        )
    if stored != "raw" and data.size:
        facts = replace(facts, size=data.size)  # stored at their own sizes: crops of any side
    if declared.classes is not None and facts.classes and facts.classes != declared.classes:
        raise DataError(f"{folder} was written with other classes than {declared.name}'s (see {path})")
    if data.root and declared.classes is None:
        train = _folder(declared.read(data.root)[0])
        if facts.classes and tuple(train.classes) != facts.classes:
            raise DataError(
                f"{folder} was written for the classes {_few(facts.classes)}, and {data.root} has "
                f"{_few(train.classes)}: write it again with `ista data {declared.name}`"
            )
    files = [folder / "train.beton", *([folder / f"{declared.test_split}.beton"] if test else [])]
    for file in files:
        beton_size(file)  # a missing or damaged file is an error naming it
    crop = "pad" if stored == "raw" else "resized"
    return facts, (files[0], files[1] if test else None), crop


def _declared_facts(declared: Dataset, written: dict) -> Facts:
    """CIFAR-10 and ImageNet .beton files of earlier releases or other tools: the declaration's facts."""
    classes = declared.classes or tuple(written["classes"])
    # their declarations fix the side, channels and normalisation
    return Facts(
        declared.name,
        tuple(classes),
        cast(int, declared.size),
        cast(int, declared.channels),
        cast(tuple[float, ...], declared.mean),
        cast(tuple[float, ...], declared.std),
        declared.test_split,
    )


def _few(names) -> str:
    names = list(names)
    return ", ".join(names[:4]) + (f" … ({len(names)})" if len(names) > 4 else "")
