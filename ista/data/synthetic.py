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


def write_cifar10_folder(root: str | Path, per_batch: int = 20, seed: int = 0, digits: bool = False) -> Path:
    """`root/cifar-10-batches-py` as in the official archive (5 training batches, a test batch and
    batches.meta), holding random images and labels, or with `digits` scikit-learn's real handwritten
    digits scaled to 32×32 RGB (a learnable stand-in); returns that folder."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    if digits:
        from ista.data.sources import load_digits

        real = load_digits()
        pixels = np.kron(real.images[:, 0].numpy(), np.ones((4, 4), np.uint8))  # 8×8 → 32×32
        pool = (np.repeat(pixels[:, None], 3, 1).reshape(len(pixels), -1), real.labels.numpy())
    for i, name in enumerate(CIFAR10_TRAIN + CIFAR10_TEST):
        if digits:
            chosen = np.arange(i * per_batch, (i + 1) * per_batch) % len(pool[1])
            images, labels = pool[0][chosen], pool[1][chosen].tolist()
        else:
            images = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
            labels = rng.integers(0, 10, per_batch).tolist()
        batch = {
            b"batch_label": name.encode(),
            b"labels": labels,
            b"data": images,
            b"filenames": [f"{name}_{i}.png".encode() for i in range(per_batch)],
        }
        _dump(batch, folder / name)
    meta = {b"label_names": [c.encode() for c in CIFAR10_CLASSES], b"num_cases_per_batch": per_batch}
    _dump(meta, folder / "batches.meta")
    return folder
