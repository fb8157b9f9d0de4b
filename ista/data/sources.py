"""Readers that turn a data set on disk (or shipped with a package) into uint8 image tensors.

CIFAR-10 is read from the standard python-pickle layout (`cifar-10-batches-py`). We read the pickles
ourselves instead of through torchvision because torchvision insists on the archive's MD5 sums, which
would make it impossible to test the reader on files the project writes; the format is the same.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

CIFAR10_MEAN = (0.49139968, 0.48215827, 0.44653124)
CIFAR10_STD = (0.24703233, 0.24348505, 0.26158768)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = ("test_batch",)


class DataError(ValueError):
    """A data set that is missing or not in the expected layout; the message names the file."""


@dataclass(frozen=True)
class ImageSet:
    """Images as uint8 N×C×H×W, labels as int64 N, and the per-channel mean/std to normalise with."""

    images: torch.Tensor
    labels: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int


def load_cifar10(root: str | Path, train: bool = True) -> ImageSet:
    """CIFAR-10 from `root/cifar-10-batches-py` (or `root` itself if it is that folder)."""
    root = Path(root).expanduser()
    folder = root if root.name == "cifar-10-batches-py" else root / "cifar-10-batches-py"
    layout = "ROOT/cifar-10-batches-py/{data_batch_1..5, test_batch} (the python version of CIFAR-10)"
    if not folder.is_dir():
        raise DataError(f"CIFAR-10 folder {folder} does not exist; expected {layout}")
    images, labels = [], []
    for name in CIFAR10_TRAIN if train else CIFAR10_TEST:
        path = folder / name
        if not path.is_file():
            raise DataError(f"missing CIFAR-10 file {path}; expected {layout}")
        try:
            with open(path, "rb") as f:
                batch = pickle.load(f, encoding="bytes")
            data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            label = np.asarray(batch[b"labels"], dtype=np.int64)
        except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as err:
            raise DataError(f"{path} is not a CIFAR-10 python batch: {type(err).__name__}: {err}") from None
        if len(label) != len(data) or label.min() < 0 or label.max() > 9:
            raise DataError(f"{path}: {len(data)} images but {len(label)} labels in 0..9")
        images.append(data)
        labels.append(label)
    return ImageSet(
        torch.from_numpy(np.concatenate(images)),
        torch.from_numpy(np.concatenate(labels)),
        CIFAR10_MEAN,
        CIFAR10_STD,
        10,
    )


DIGITS_TEST_PER_CLASS = 30  # the fixed test split: 30 images of each digit, 300 in all
DIGITS_SPLIT_SEED = 0


def load_digits(train: bool | None = None) -> ImageSet:
    """scikit-learn's 1,797 real 8×8 handwritten digits (grey levels 0..16, stored as 0..255): all of them
    (`train=None`), or the fixed split: 30 test images per digit drawn with numpy seed 0 (300), the other
    1,497 for training, each in the original order. Normalised with the training split's mean and std."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError:
        raise DataError("dataset=digits needs scikit-learn: pip install scikit-learn") from None
    digits = sklearn_digits()
    images = torch.from_numpy(np.round(digits.images * (255 / 16)).astype(np.uint8))[:, None]
    labels = digits.target.astype(np.int64)
    rng = np.random.default_rng(DIGITS_SPLIT_SEED)
    test = np.zeros(len(labels), dtype=bool)
    for digit in range(10):  # stratified: the same share of every digit
        test[rng.permutation(np.flatnonzero(labels == digit))[:DIGITS_TEST_PER_CLASS]] = True
    fit = torch.from_numpy(~test)
    mean = float(images[fit].float().mean() / 255)
    std = float(images[fit].float().std() / 255)
    chosen = torch.ones(len(labels), dtype=torch.bool) if train is None else fit if train else ~fit
    return ImageSet(images[chosen], torch.from_numpy(labels)[chosen], (mean,), (std,), 10)
