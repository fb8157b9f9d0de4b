"""Stand-ins in the real on-disk layouts, for tests and benchmarks on machines without the data sets."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np

from ista.data.sources import CIFAR10_CLASSES, CIFAR10_TEST, CIFAR10_TRAIN


class _Py2Pickler(pickle._Pickler):
    """Pickles bytes as Python 2 `str`, as the official CIFAR-10 batches were written: Python 3 reads their
    keys as bytes with encoding="bytes" (our reader) and as str with encoding="latin1" (torchvision's)."""

    def save_bytes(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch = pickle._Pickler.dispatch.copy()
    dispatch[bytes] = save_bytes


def _dump(obj, path: Path) -> None:
    with open(path, "wb") as f:
        _Py2Pickler(f, protocol=2).dump(obj)


def write_cifar10_folder(root: str | Path, per_batch: int = 20, seed: int = 0) -> Path:
    """`root/cifar-10-batches-py` as in the official archive (5 training batches, a test batch and
    batches.meta), holding random images and labels; returns that folder."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in CIFAR10_TRAIN + CIFAR10_TEST:
        images = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        batch = {
            b"batch_label": name.encode(),
            b"labels": rng.integers(0, 10, per_batch).tolist(),
            b"data": images,
            b"filenames": [f"{name}_{i}.png".encode() for i in range(per_batch)],
        }
        _dump(batch, folder / name)
    meta = {b"label_names": [c.encode() for c in CIFAR10_CLASSES], b"num_cases_per_batch": per_batch}
    _dump(meta, folder / "batches.meta")
    return folder
