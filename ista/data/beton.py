"""Writes every data set ista reads as FFCV `.beton` files (images read one by one: with ffcv-imagenet's
settings).

ffcv's own writer waits forever when a worker dies (say, on an unreadable image); ours stops at the first
bad image and names it. Each file is written under a temporary name and renamed when it is complete, so
an interrupted write never leaves a file that looks finished; the manifest is written last.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from ffcv.fields import IntField, RGBImageField
from ffcv.memory_allocator import MemoryAllocator
from ffcv.writer import MIN_PAGE_SIZE, DatasetWriter

from ista import __version__
from ista.config.schema import DataConfig
from ista.data.datasets import Facts, dataset
from ista.data.folders import ImageFolder, read_rgb
from ista.data.sources import DataError, ImageSet
from ista.data.splits import MANIFEST, open_data
from ista.rundir.atomic import replacing, write_json

DEFAULT_PAGE_SIZE = 4 * MIN_PAGE_SIZE  # ffcv's default; tests use MIN_PAGE_SIZE (2 MiB)

S = TypeVar("S", ImageSet, ImageFolder)
Progress = Callable[[str, int, int], None]  # (file name, images done, images in all)


def default_workers() -> int:
    """The CPUs this process may use: under Slurm's CPU binding that is fewer than the machine has."""
    return len(os.sched_getaffinity(0))


def write_betons(
    name: str,
    src,
    out,
    *,
    size: int = 0,
    image_by_image: dict[str, Any] | None = None,
    workers: int = 0,
    page_size: int = DEFAULT_PAGE_SIZE,
    force: bool = False,
    progress: Progress | None = None,
) -> dict:
    """Data set `name` from `src` (as `data.root` would hold it) → train.beton, <test split>.beton and a
    manifest of its facts (classes, side, channels, normalisation) that the FFCV readers check.

    What the torch reader holds in memory is stored raw at its side (`size`: data.size's default, the
    images' own or their median); what it reads image by image is stored with ffcv-imagenet's RN-50
    settings, or `image_by_image`'s (longer side ≤ `max_res`, a share `compress_prob` as JPEG at
    `jpeg_quality`, the rest raw). Greyscale images are stored as RGB (FFCV's image field has three
    channels); the reader keeps one."""
    asked = image_by_image or {}
    chosen = {"max_res": 500, "jpeg_quality": 90, "compress_prob": 0.5, **asked}
    max_res, jpeg_quality, compress_prob = chosen["max_res"], chosen["jpeg_quality"], chosen["compress_prob"]
    if not 0 <= compress_prob <= 1 or not 1 <= jpeg_quality <= 100 or max_res < 8:
        raise DataError("need 0 ≤ compress-prob ≤ 1, 1 ≤ jpeg-quality ≤ 100 and max-res ≥ 8")
    declared = dataset(name)
    if not declared.beton:
        raise DataError(f"{name} is read from memory and has no .beton files")
    config = DataConfig(dataset=name, root=str(src), size=size, loader="torch")
    train, test = open_data(config, test=True)
    assert test is not None  # opened with test=True
    out = _prepare_out(out, ("train", declared.test_split), force)
    pairs = (("train", train.source), (declared.test_split, test.source))
    items: dict[str, _TensorItems | _FolderItems]
    if isinstance(train.source, ImageSet):
        if asked:
            flags = ", ".join(f"--{k.replace('_', '-')}" for k in asked)
            raise DataError(
                f"{flags}: {name} at {train.facts.size} px is stored raw, as it is read into memory; "
                "these settings are for images read one by one"
            )
        settings: dict[str, Any] = {"write_mode": "raw"}
        items = {split: _TensorItems(_as(ImageSet, s)) for split, s in pairs}
    else:
        settings = {"write_mode": "proportion", "max_resolution": max_res, "jpeg_quality": jpeg_quality,
                    "compress_probability": compress_prob}  # fmt: skip
        items = {split: _FolderItems(_as(ImageFolder, s).samples) for split, s in pairs}
    splits = {}
    for split, todo in items.items():
        path = out / f"{split}.beton"
        fields = {"image": RGBImageField(**settings), "label": IntField()}
        _write(path, fields, todo, workers, page_size, progress)
        splits[split] = {"file": path.name, "images": len(todo)}
    return _write_manifest(out, train.facts, src, splits, settings)


def _as(kind: type[S], source: object) -> S:
    """A split's source, of the kind the training split's is: the torch reader reads both splits alike."""
    assert isinstance(source, kind), source
    return source


class _TensorItems:
    def __init__(self, data: ImageSet):
        images = data.images.expand(-1, 3, -1, -1)  # greyscale as RGB
        self.images = np.ascontiguousarray(images.permute(0, 2, 3, 1).numpy())  # FFCV stores H×W×C
        self.labels = data.labels.numpy()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.images[i], int(self.labels[i])


class _FolderItems:
    def __init__(self, samples):
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        path, label = self.samples[i]
        return np.asarray(read_rgb(path)), label


def _prepare_out(out, splits: tuple[str, ...], force: bool) -> Path:
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    existing = [out / f"{s}.beton" for s in splits if (out / f"{s}.beton").exists()]
    if existing and not force:
        raise DataError(f"{existing[0]} already exists; pass --force to overwrite it")
    return out


def _write_manifest(out: Path, facts: Facts, src, splits, settings) -> dict:
    manifest = {
        "dataset": facts.dataset,
        "source": str(Path(src).expanduser().resolve()),
        "splits": splits,
        "num_classes": len(facts.classes),
        "classes": list(facts.classes),
        "facts": facts.to_dict(),
        "image_field": settings,
        "written_by": f"ista {__version__}",
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_json(out / MANIFEST, manifest)
    return manifest


def _write(path: Path, fields, items, workers: int, page_size: int, progress: Progress | None) -> None:
    workers = min(workers or default_workers(), max(1, len(items) // 100))
    with replacing(path) as partial:
        writer = _Writer(str(partial), fields, page_size=page_size, num_workers=workers)
        writer.progress = (lambda done, total: progress(path.name, done, total)) if progress else None
        writer.from_indexed_dataset(items, chunksize=100)


def _guarded(work: Callable, errors, *args) -> None:
    """Runs one of ffcv's writer workers; its error goes to the parent instead of a silent death."""
    try:
        work(*args)
    except BaseException as err:
        errors.put(str(err) if isinstance(err, DataError) else f"{type(err).__name__}: {err}")
        errors.close()
        errors.join_thread()
        sys.exit(1)


class _Writer(DatasetWriter):
    """ffcv 1.0.2's DatasetWriter with a parent loop that notices failed workers and reports progress."""

    progress: Callable[[int, int], None] | None = None

    def _write_common(self, num_samples, queue_content, work_fn, extra_worker_args):
        ctx = multiprocessing.get_context("fork")  # workers inherit the item list instead of pickling it
        self.num_samples = num_samples
        self.prepare()
        work, allocations, errors = ctx.Queue(), ctx.Queue(), ctx.Queue()
        for todo in queue_content:
            work.put(todo)
        for _ in range(self.num_workers):
            work.put(None)
        done = ctx.Value(ctypes.c_uint64, 0)
        allocator = MemoryAllocator(self.fname, self.data_region_start, self.page_size)
        args = (work, self.metadata_sm, self.metadata_type, self.fields, allocator, done, allocations)
        processes = [
            ctx.Process(target=_guarded, args=(work_fn, errors, *args, *extra_worker_args), daemon=True)
            for _ in range(self.num_workers)
        ]
        try:
            for p in processes:
                p.start()
            while done.value < num_samples:
                self._raise_if_failed(processes, errors)
                if self.progress:
                    self.progress(done.value, num_samples)
                time.sleep(0.05)
            if self.progress:
                self.progress(num_samples, num_samples)
            table: list[Any] = []
            for _ in processes:
                table.extend(allocations.get())
            self.finalize(table)
        finally:
            for p in processes:
                if p.is_alive():
                    p.terminate()
                p.join()
            self.metadata_sm.close()
            self.metadata_sm.unlink()

    @staticmethod
    def _raise_if_failed(processes, errors) -> None:
        failed = [p for p in processes if p.exitcode not in (None, 0)]
        if not failed and errors.empty():
            return
        try:
            message = errors.get(timeout=5)
        except Exception:
            message = f"a writer process ended with exit code {failed[0].exitcode} (out of memory?)"
        raise DataError(message)
