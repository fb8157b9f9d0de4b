"""The data sets ista reads, one declaration each: everything that asks "which data set" reads it here.

A declaration says how the raw data is read, what it holds where that is fixed (classes, image size,
channels, normalisation) and what is read from the data where it is not (a folder of the user's images),
and its training augmentation. What a data set turned out to hold is its `Facts`: recorded in the run
directory (data.json) and in a `.beton` folder's manifest. The image side decides the network's stem and
the augmentation: small images (up to `SMALL` px) get the CIFAR stem and pad-and-crop, larger ones the
ImageNet stem and random-resized crops.

Adding a data set is one `Dataset` in `DATASETS` and, if its files are in a new format, one reader that
returns an `ImageSet` (in memory) or an `ImageFolder` (read image by image).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from ista.data import sources
from ista.data.folders import ImageFolder, scan_image_folder, split_folder
from ista.data.sources import DataError, ImageSet

SMALL = 64  # the largest side that gets the CIFAR stem

Source = ImageSet | ImageFolder
# data.root → the training and test split as stored, and the name of the test split
Reader = Callable[[str], tuple[Source, Source, str]]


@dataclass(frozen=True)
class Dataset:
    name: str
    about: str  # one line for help texts
    layout: str  # what `data.root` (or `ista data --src`) holds
    read: Reader
    classes: tuple[str, ...] | None = None  # fixed names; None: the training split's class folders
    size: int | None = None  # the stored side; None: read from the images (their median)
    channels: int | None = 3  # None: read from the images (greyscale stays one channel)
    mean: tuple[float, ...] | None = None  # fixed normalisation; None: from the training split
    std: tuple[float, ...] | None = None
    flip: bool = True  # horizontal flips when augmenting (not for digits)
    # Stored in random order: without `data.subset` a two-stage search's halves are the first and the
    # second half, as in the official code. Otherwise the images are put in a stratified order first.
    mixed: bool = True
    beton: bool = True  # `ista data NAME` writes it as .beton files
    needs_root: bool = True  # its files are read from `data.root` (the digits ship with scikit-learn)
    test_split: str = "test"  # the test split's name: its .beton file (and folder, for image trees)
    usual_classes: int | None = None  # where the names come from the data: their usual number (ista params)

    @property
    def num_classes(self) -> int | None:
        return len(self.classes) if self.classes else self.usual_classes


@dataclass(frozen=True)
class Facts:
    """What a data set holds, once read: the network's input and output and the normalisation."""

    dataset: str
    classes: tuple[str, ...]
    size: int  # the side the network sees
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    test_split: str  # where the test images come from (a folder tree: "train" when held out of it)

    @property
    def stem(self) -> str:
        return stem_for(self.size)

    @property
    def padding(self) -> int:
        """Pad-and-crop's padding: DARTS' 4 px at 32 px, in proportion elsewhere."""
        return max(1, self.size // 8)

    def to_dict(self) -> dict:
        return {**asdict(self), "num_classes": len(self.classes), "stem": self.stem}

    @classmethod
    def from_dict(cls, d: dict) -> Facts:
        return cls(d["dataset"], tuple(d["classes"]), int(d["size"]), int(d["channels"]), tuple(d["mean"]),
                   tuple(d["std"]), d["test_split"])  # fmt: skip


def stem_for(size: int) -> str:
    return "cifar" if size <= SMALL else "imagenet"


def _pickles(load) -> Reader:
    return lambda root: (load(root, True), load(root, False), "test")


def _digits(root: str) -> tuple[Source, Source, str]:
    if root:
        raise DataError(f"dataset=digits ships with scikit-learn and reads no files; drop data.root={root}")
    return sources.load_digits(True), sources.load_digits(False), "test"


def _imagenet(root: str) -> tuple[Source, Source, str]:
    train = scan_image_folder(Path(root).expanduser() / "train")
    return train, scan_image_folder(Path(root).expanduser() / "val", train.classes), "val"


CIFAR100_CLASSES = (  # the fine label names of cifar-100-python/meta, in label order
    "apple",
    "aquarium_fish",
    "baby",
    "bear",
    "beaver",
    "bed",
    "bee",
    "beetle",
    "bicycle",
    "bottle",
    "bowl",
    "boy",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "can",
    "castle",
    "caterpillar",
    "cattle",
    "chair",
    "chimpanzee",
    "clock",
    "cloud",
    "cockroach",
    "couch",
    "crab",
    "crocodile",
    "cup",
    "dinosaur",
    "dolphin",
    "elephant",
    "flatfish",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lawn_mower",
    "leopard",
    "lion",
    "lizard",
    "lobster",
    "man",
    "maple_tree",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak_tree",
    "orange",
    "orchid",
    "otter",
    "palm_tree",
    "pear",
    "pickup_truck",
    "pine_tree",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "possum",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "sweet_pepper",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trout",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow_tree",
    "wolf",
    "woman",
    "worm",
)
DIGITS = tuple(str(d) for d in range(10))

DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            "cifar10",
            "CIFAR-10: 50,000 + 10,000 32×32 colour images, 10 classes",
            "ROOT/cifar-10-batches-py/ (the python version)",
            _pickles(sources.load_cifar10),
            classes=sources.CIFAR10_CLASSES,
            size=32,
            mean=sources.CIFAR10_MEAN,
            std=sources.CIFAR10_STD,
        ),
        Dataset(
            "cifar100",
            "CIFAR-100: 50,000 + 10,000 32×32 colour images, 100 fine classes",
            "ROOT/cifar-100-python/ (the python version)",
            _pickles(sources.load_cifar100),
            classes=CIFAR100_CLASSES,
            size=32,
            mean=sources.CIFAR100_MEAN,
            std=sources.CIFAR100_STD,
        ),
        Dataset(
            "svhn",
            "SVHN: 73,257 + 26,032 32×32 house-number digits, 10 classes",
            "ROOT/{train,test}_32x32.mat (the cropped digits)",
            _pickles(sources.load_svhn),
            classes=DIGITS,
            size=32,
            mean=sources.SVHN_MEAN,
            std=sources.SVHN_STD,
            flip=False,
        ),
        Dataset(
            "imagenet",
            "ImageNet-1k: train/ and val/ folders of JPEGs, seen as 224×224 crops",
            "ROOT/{train,val}/<wnid>/*.JPEG",
            _imagenet,
            size=224,
            mean=sources.IMAGENET_MEAN,
            std=sources.IMAGENET_STD,
            mixed=False,
            test_split="val",
            usual_classes=1000,
        ),
        Dataset(
            "digits",
            "scikit-learn's 1,797 real 8×8 handwritten digits (it ships them)",
            "nothing: scikit-learn holds them",
            _digits,
            classes=DIGITS,
            size=8,
            channels=1,
            flip=False,
            beton=False,
            needs_root=False,
        ),
        Dataset(
            "folder",
            "any tree of train/<class>/* images (+ val/ or test/), greyscale or colour, of any size",
            "ROOT/train/<class>/*, and optionally ROOT/val/<class>/* or ROOT/test/<class>/*",
            split_folder,
            channels=None,
            mixed=False,
        ),
    )
}


def dataset(name: str) -> Dataset:
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[name]
