"""Stand-ins in the real on-disk layouts, for tests and benchmarks on machines without the data sets."""

from __future__ import annotations

import pickle
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ista.data.sources import CIFAR10_CLASSES, CIFAR10_TEST, CIFAR10_TRAIN


class _Py2Pickler(pickle._Pickler):
    """Pickles bytes as Python 2 `str`, as the official CIFAR-10 batches were written: Python 3 reads their
    keys as bytes with encoding="bytes" (our reader) and as str with encoding="latin1" (torchvision's)."""

    # pickle._Pickler's, undocumented: typeshed leaves them out
    write: Callable[[bytes], object]
    memoize: Callable[[object], None]

    def save_bytes(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch = pickle._Pickler.dispatch.copy()
    dispatch[bytes] = save_bytes  # type: ignore[assignment]  # typeshed: dispatch takes an Unpickler


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


def write_digits_tree(root: str | Path, test: bool = False) -> Path:
    """scikit-learn's 1,797 real 8×8 digits as greyscale PNGs in `root/train/<digit>/` (and, with `test`,
    its fixed test split in `root/test/<digit>/`): a folder of the user's own images, small and grey."""
    from PIL import Image

    from ista.data.sources import load_digits

    root = Path(root)
    for split, train in (("train", True), *((("test", False),) if test else ())):
        digits = load_digits(train if test else None)
        for i, (image, label) in enumerate(
            zip(digits.images[:, 0].numpy(), digits.labels.tolist(), strict=True)
        ):
            folder = root / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image, mode="L").save(folder / f"{i:04d}.png")
    return root


def write_photo_tree(
    root: str | Path, classes: int = 3, per_class: int = 6, side: int = 40, seed: int = 0
) -> Path:
    """Colour tiles of scikit-learn's two sample photographs as PNGs in `root/train/<class>/`, class c cut
    from its own band of rows: a folder of the user's own colour images."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(seed)
    photos = load_sample_images().images
    root = Path(root)
    for c in range(classes):
        folder = root / "train" / f"class_{c}"
        folder.mkdir(parents=True, exist_ok=True)
        photo = photos[c % len(photos)]
        band = photo.shape[0] // classes
        for i in range(per_class):
            y = c * band + int(rng.integers(0, max(1, band - side)))
            x = int(rng.integers(0, photo.shape[1] - side))
            Image.fromarray(photo[y : y + side, x : x + side]).save(folder / f"{i}.png")
    return root


def write_cifar100_folder(root: str | Path, train: int = 200, test: int = 50, seed: int = 0) -> Path:
    """`root/cifar-100-python/{train,test,meta}` in the official layout with random images and fine labels."""
    from ista.data.datasets import CIFAR100_CLASSES

    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, n in (("train", train), ("test", test)):
        batch = {
            b"filenames": [f"{name}_{i}.png".encode() for i in range(n)],
            b"batch_label": f"{name} batch".encode(),
            b"fine_labels": rng.integers(0, 100, n).tolist(),
            b"coarse_labels": rng.integers(0, 20, n).tolist(),
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        }
        _dump(batch, folder / name)
    _dump({b"fine_label_names": [c.encode() for c in CIFAR100_CLASSES]}, folder / "meta")
    return folder


def write_svhn_files(root: str | Path, train: int = 120, test: int = 40, seed: int = 0) -> Path:
    """`root/{train,test}_32x32.mat` as SVHN ships them (MATLAB 5: X 32×32×3×N uint8, y N×1 in 1..10)."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", train), ("test", test)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        savemat(root / f"{name}_32x32.mat", {"X": x, "y": rng.integers(1, 11, (n, 1)).astype(np.uint8)})
    return root
