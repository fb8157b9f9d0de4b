"""Readers that turn a data set on disk (or shipped with a package) into uint8 image tensors.

CIFAR-10 and CIFAR-100 are read from their python-pickle layouts, SVHN from its `.mat` files. We read the
pickles ourselves instead of through torchvision because torchvision insists on the archives' MD5 sums,
which would make it impossible to test the reader on files the project writes; the format is the same.
"""

from __future__ import annotations

import importlib.util
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


CIFAR100_MEAN = (0.50707516, 0.48654887, 0.44091784)
CIFAR100_STD = (0.26733429, 0.25643846, 0.27615047)
SVHN_MEAN = (0.4376821, 0.4437697, 0.47280442)
SVHN_STD = (0.19803012, 0.20101562, 0.19703614)


@dataclass(frozen=True)
class PickleLayout:
    """One of the CIFAR archives' python layouts: its folder, batch files, label key and class names."""

    name: str
    folder: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    labels: bytes
    classes: int


CIFAR10 = PickleLayout("CIFAR-10", "cifar-10-batches-py", CIFAR10_TRAIN, CIFAR10_TEST, b"labels", 10)
CIFAR100 = PickleLayout("CIFAR-100", "cifar-100-python", ("train",), ("test",), b"fine_labels", 100)


def load_cifar10(root: str | Path, train: bool = True) -> ImageSet:
    """CIFAR-10 from `root/cifar-10-batches-py` (or `root` itself if it is that folder)."""
    return load_cifar(root, CIFAR10, train, CIFAR10_MEAN, CIFAR10_STD)


def load_cifar100(root: str | Path, train: bool = True) -> ImageSet:
    """CIFAR-100's 100 fine classes from `root/cifar-100-python/{train,test}` (or that folder itself)."""
    return load_cifar(root, CIFAR100, train, CIFAR100_MEAN, CIFAR100_STD)


def load_cifar(root: str | Path, layout: PickleLayout, train: bool, mean, std) -> ImageSet:
    root = Path(root).expanduser()
    folder = root if root.name == layout.folder else root / layout.folder
    files = ", ".join(layout.train + layout.test)
    expected = f"ROOT/{layout.folder}/{{{files}}} (the python version of {layout.name})"
    if not folder.is_dir():
        raise DataError(f"{layout.name} folder {folder} does not exist; expected {expected}")
    images, labels = [], []
    for name in layout.train if train else layout.test:
        path = folder / name
        if not path.is_file():
            raise DataError(f"missing {layout.name} file {path}; expected {expected}")
        try:
            with open(path, "rb") as f:
                batch = pickle.load(f, encoding="bytes")
            data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            label = np.asarray(batch[layout.labels], dtype=np.int64)
        except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as err:
            raise DataError(
                f"{path} is not a {layout.name} python batch: {type(err).__name__}: {err}"
            ) from None
        if len(label) != len(data) or label.min() < 0 or label.max() >= layout.classes:
            raise DataError(f"{path}: {len(data)} images but {len(label)} labels in 0..{layout.classes - 1}")
        images.append(data)
        labels.append(label)
    return ImageSet(
        torch.from_numpy(np.concatenate(images)),
        torch.from_numpy(np.concatenate(labels)),
        mean,
        std,
        layout.classes,
    )


SVHN_FILES = {True: "train_32x32.mat", False: "test_32x32.mat"}


def load_svhn(root: str | Path, train: bool = True) -> ImageSet:
    """SVHN's cropped digits from `root/{train,test}_32x32.mat` (X: 32×32×3×N, y: N×1 in 1..10, where 10
    is the digit 0), read with SciPy (a dependency of cvxpy)."""
    from scipy.io import loadmat

    path = Path(root).expanduser() / SVHN_FILES[train]
    expected = "ROOT/{train_32x32.mat, test_32x32.mat} (SVHN's cropped digits, format 2)"
    if not path.is_file():
        raise DataError(f"missing SVHN file {path}; expected {expected}")
    try:
        mat = loadmat(path)
        x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1).astype(np.int64)
    except Exception as err:  # scipy raises ValueError, TypeError or its own MatReadError on damaged files
        raise DataError(f"{path} is not an SVHN .mat file: {type(err).__name__}: {err}") from None
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != len(y) or y.min() < 1 or y.max() > 10:
        raise DataError(
            f"{path}: X of shape {x.shape} and {len(y)} labels; expected 32×32×3×N and N labels in 1..10"
        )
    images = torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1)).astype(np.uint8))
    return ImageSet(images, torch.from_numpy(y % 10), SVHN_MEAN, SVHN_STD, 10)


DIGITS_TEST_PER_CLASS = 30  # the fixed test split: 30 images of each digit, 300 in all
DIGITS_SPLIT_SEED = 0


def digits_file() -> Path:
    """scikit-learn's digits.csv.gz, found without importing scikit-learn (a second per process: every rank
    of every demo run would pay it)."""
    spec = importlib.util.find_spec("sklearn")
    locations = spec.submodule_search_locations if spec else None
    path = Path(locations[0], "datasets", "data", "digits.csv.gz") if locations else None
    if path is None or not path.is_file():
        raise DataError("dataset=digits reads the digits scikit-learn ships: pip install scikit-learn")
    return path


def load_digits(train: bool | None = None) -> ImageSet:
    """scikit-learn's 1,797 real 8×8 handwritten digits (grey levels 0..16, stored as 0..255): all of them
    (`train=None`), or the fixed split: 30 test images per digit drawn with numpy seed 0 (300), the other
    1,497 for training, each in the original order. Normalised with the training split's mean and std."""
    data = np.loadtxt(digits_file(), delimiter=",")  # 64 grey levels and the digit, a row per image
    images = torch.from_numpy(np.round(data[:, :-1].reshape(-1, 1, 8, 8) * (255 / 16)).astype(np.uint8))
    labels = data[:, -1].astype(np.int64)
    rng = np.random.default_rng(DIGITS_SPLIT_SEED)
    test = np.zeros(len(labels), dtype=bool)
    for digit in range(10):  # stratified: the same share of every digit
        test[rng.permutation(np.flatnonzero(labels == digit))[:DIGITS_TEST_PER_CLASS]] = True
    fit = torch.from_numpy(~test)
    mean = float(images[fit].float().mean() / 255)
    std = float(images[fit].float().std() / 255)
    chosen = torch.ones(len(labels), dtype=torch.bool) if train is None else fit if train else ~fit
    return ImageSet(images[chosen], torch.from_numpy(labels)[chosen], (mean,), (std,), 10)
