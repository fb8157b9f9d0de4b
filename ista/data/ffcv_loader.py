"""Loaders over `.beton` files: FFCV decodes, crops and flips in compiled threads; the rest is `Finish`.

The three FFCV traps of field-notes.md §4 are handled here: the order's seed is always passed (with
`distributed=True` FFCV would silently use 0 for every run), the thread count comes from the CPUs this
process may use (FFCV's default breaks under Slurm's CPU binding), and the OS page cache is used only when
the file fits comfortably in free memory.

Reproducibility: the order of every epoch is a function of (seed, epoch) as on the other paths; FFCV's
random crops and flips come from per-thread generators and are not (cutout and colour jitter are, being
done in `Finish`). Use `data.loader=torch` to repeat a run bit for bit.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from ffcv.fields.basics import IntDecoder
from ffcv.fields.rgb_image import (
    CenterCropRGBImageDecoder,
    RandomResizedCropRGBImageDecoder,
    SimpleRGBImageDecoder,
)
from ffcv.loader import Loader, OrderOption
from ffcv.reader import Reader
from ffcv.transforms import RandomHorizontalFlip, RandomTranslate, Squeeze, ToDevice, ToTensor, ToTorchImage

from ista.data.loaders import BatchLoader
from ista.data.sources import DataError

CROPS = ("pad", "resized", "centre", "none")  # CIFAR train, ImageNet train, ImageNet val, CIFAR test


def beton_size(path: str | Path) -> int:
    """Images in the file; a file that is not a complete .beton is a DataError naming it."""
    try:
        return int(Reader(str(path)).num_samples)
    except FileNotFoundError:
        raise DataError(f"{path} does not exist; write it with `ista data`") from None
    except Exception as err:  # ffcv raises AssertionError, ValueError or numpy errors on damaged files
        raise DataError(f"{path} is not a readable .beton file ({type(err).__name__}: {err})") from None


def beton_labels(path: str | Path) -> torch.Tensor:
    """The labels of a .beton file `ista data` wrote, from its metadata table (no image is read)."""
    beton_size(path)
    return torch.from_numpy(np.array(Reader(str(path)).metadata["f1"], dtype=np.int64))


def fits_in_page_cache(path: str | Path, share: float = 0.5) -> bool:
    available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return os.path.getsize(path) < share * available


class FfcvLoader(BatchLoader):
    def __init__(self, path: str | Path, indices, batch_size: int, finish, *, crop: str, workers: int,
                 size: int = 224, padding: int = 4, flip: bool = True, channels: int = 3,
                 **kwargs):  # fmt: skip
        super().__init__(indices, batch_size, finish, **kwargs)
        if crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}, not {crop!r}")
        self.path, self.crop, self.workers, self.size = str(path), crop, workers, size
        self.padding, self.flip, self.channels = padding, flip, channels
        self.os_cache = fits_in_page_cache(path)
        self._loaders: dict[int, Loader] = {}

    def _loader(self, seed: int) -> Loader:
        """One FFCV loader per seed (FFCV fixes it at construction); the epoch is set through `next_epoch`."""
        if seed not in self._loaders:
            to_device = [ToDevice(self.device, non_blocking=True)] if self.device.type == "cuda" else []
            image = [*self._decode(), ToTensor(), *to_device, ToTorchImage(channels_last=False)]
            self._loaders[seed] = Loader(
                self.path,
                batch_size=self.batch_size,
                num_workers=self.workers,
                os_cache=self.os_cache,
                order=OrderOption.RANDOM if self.shuffle else OrderOption.SEQUENTIAL,
                distributed=self.world > 1 and self.shuffle,  # evaluation: this rank's slice, unpadded
                seed=hash((seed, self.stream)) % 2**31,
                indices=np.asarray(self.indices if self.shuffle else self._order(None), dtype=np.uint64),
                pipelines={"image": image, "label": [IntDecoder(), ToTensor(), Squeeze(), *to_device]},
                drop_last=False,
            )
        return self._loaders[seed]

    def _decode(self) -> list:
        flip = [RandomHorizontalFlip()] if self.flip else []
        if self.crop == "pad":
            return [SimpleRGBImageDecoder(), *flip, RandomTranslate(padding=self.padding)]
        if self.crop == "resized":
            return [RandomResizedCropRGBImageDecoder((self.size, self.size)), *flip]
        if self.crop == "centre":  # = resize the short side to size·256/224, then a centre crop of `size`
            return [CenterCropRGBImageDecoder((self.size, self.size), ratio=224 / 256)]
        return [SimpleRGBImageDecoder()]

    def plan(self, order_g):
        return None  # FFCV orders the pass itself, from (seed, epoch)

    def order(self, seed: int, epoch: int) -> np.ndarray:
        """The indices this rank reads in an epoch, in FFCV's order."""
        loader = self._loader(seed)
        loader.next_epoch = epoch
        return np.asarray(loader.next_traversal_order())[: len(loader) * self.batch_size]

    def _batches(self, seed, epoch, order, augment_g, start):
        loader = self._loader(seed)
        loader.next_epoch = epoch
        if start:  # a resumed pass: exactly the indices the interrupted pass had still to read, in order
            rest = self.order(seed, epoch)[start * self.batch_size :]
            loader = Loader(**{**loader._args, "indices": rest, "order": OrderOption.SEQUENTIAL,
                               "distributed": False})  # fmt: skip
        batches = iter(loader)
        try:
            for x, y in batches:  # FFCV reuses its buffers: `Finish` copies x out, and y is copied here
                yield x[:, : self.channels], y.to(torch.int64, copy=True)  # greyscale is stored as RGB
        finally:
            batches.close()  # stops FFCV's thread when a cycled held-out stream is abandoned mid-epoch
