"""Image folders (`SPLIT/<class>/<image>`): ImageNet's and the user's own, read with torchvision's
transforms or, small images, into memory.

The classes are the sorted folder names of the training split, as torchvision's ImageFolder numbers them;
the validation split must use the same names, so its labels mean the same classes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ista.data.loaders import BatchLoader
from ista.data.sources import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
LAYOUT = "SRC/train/<class>/<image> and optionally SRC/val/<class>/<image> (the ImageFolder layout)"
TEST_SHARE, SPLIT_SEED = 0.1, 0  # without val/ or test/: 10% of each class is held out, drawn with seed 0
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")  # PIL modes of one-channel images (LA: with alpha)


@dataclass(frozen=True)
class ImageFolder:
    root: Path
    classes: tuple[str, ...]
    samples: tuple[tuple[str, int], ...]  # (path, label)
    channels: int = 3  # 1: read as greyscale
    median_side: int = 0  # of the images' shorter sides, from their headers (0: not read)

    @property
    def labels(self) -> torch.Tensor:
        return torch.tensor([label for _, label in self.samples], dtype=torch.int64)


def scan_image_folder(
    root: str | Path, classes: tuple[str, ...] | None = None, strict: bool = False
) -> ImageFolder:
    """Lists a split folder; `classes` (from the training split) fixes the label numbering. `strict` (a
    training split whose classes are the data set's): every class folder holds images, and there are two
    or more."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist; expected {LAYOUT}")
    found = sorted(p.name for p in root.iterdir() if p.is_dir())
    loose = sorted(p.name for p in root.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if loose:  # ImageNet's val archive unpacks flat: say so instead of reading no images from it
        raise DataError(
            f"{root} holds {len(loose)} images outside class folders (e.g. {loose[0]}): sort them into "
            f"{root}/<class>/ folders; expected {LAYOUT}"
        )
    if not found:
        raise DataError(f"{root} has no class folders; expected {LAYOUT}")
    if strict and len(found) < 2:
        raise DataError(f"{root} has a single class folder ({found[0]}); a classifier needs two or more")
    classes = classes or tuple(found)
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(f"{root} has classes not in the training split: {', '.join(unknown[:5])}")
    samples: list[tuple[str, int]] = []
    for label, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():
            continue
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if strict and not files:
            raise DataError(
                f"class folder {folder} holds no images with extensions {', '.join(IMAGE_EXTENSIONS)}"
            )
        samples.extend((str(p), label) for p in files)
    if not samples:
        raise DataError(f"{root} holds no images with extensions {', '.join(IMAGE_EXTENSIONS)}")
    return ImageFolder(root, classes, tuple(samples))


def split_folder(root: str | Path) -> tuple[ImageFolder, ImageFolder, str]:
    """The training and test split of a tree, and where the test split comes from: `val/`, else `test/`,
    else a fixed, stratified, seeded share of `train/` (as the digits' test split is drawn)."""
    root = Path(root).expanduser()
    train = scan_image_folder(root / "train", strict=True)
    for name in ("val", "test"):
        if (root / name).is_dir():
            test = scan_image_folder(root / name, train.classes)
            channels, side = read_headers(train.samples, test.samples)
            return replace(train, channels=channels, median_side=side), replace(test, channels=channels), name
    labels = train.labels.numpy()
    rng = np.random.default_rng(SPLIT_SEED)
    held = np.zeros(len(labels), dtype=bool)
    for label, name in enumerate(train.classes):
        members = np.flatnonzero(labels == label)
        if len(members) < 2:
            raise DataError(
                f"{root / 'train' / name} holds one image; without a val/ or test/ folder every class needs "
                f"two or more ({TEST_SHARE:.0%} of each is held out for testing)"
            )
        held[rng.permutation(members)[: max(1, round(TEST_SHARE * len(members)))]] = True
    kept = tuple(s for s, h in zip(train.samples, held, strict=True) if not h)
    held_out = tuple(s for s, h in zip(train.samples, held, strict=True) if h)
    channels, side = read_headers(kept, held_out)
    return (
        replace(train, samples=kept, channels=channels, median_side=side),
        replace(train, samples=held_out, channels=channels),
        "train",
    )


def read_headers(train, test) -> tuple[int, int]:
    """From the files' headers alone, in one pass: the channels (1 when every image is greyscale, 3 when
    every one is in colour; mixed counts are an error naming one of each) and the median of the training
    images' shorter sides (a folder's default resolution)."""
    from PIL import Image, UnidentifiedImageError

    first: dict[int, str] = {}
    sides = []
    for path, _ in (*train, *test):
        try:
            with Image.open(path) as image:
                channels, side = (1 if image.mode in GREY_MODES else 3), min(image.size)
        except (OSError, UnidentifiedImageError, ValueError) as err:
            raise DataError(f"cannot read image {path}: {err}") from None
        first.setdefault(channels, path)
        if len(first) == 2:
            raise DataError(
                f"images of mixed channel counts: {first[1]} is greyscale and {first[3]} is in colour; "
                "convert them to one kind (all greyscale or all RGB)"
            )
        sides.append(side)
    return next(iter(first)), int(np.median(sides[: len(train)]))


def read_image(path: str, channels: int = 3):
    """An image as a greyscale (`channels=1`) or RGB PIL image (grey and CMYK JPEGs exist in ImageNet);
    errors, a truncated file's among them, name the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.convert("L" if channels == 1 else "RGB")
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise DataError(f"cannot read image {path}: {err}") from None


def read_rgb(path: str):
    return read_image(path, 3)


def load_images(folder: ImageFolder, size: int) -> torch.Tensor:
    """Every image of the folder in memory, uint8 N×C×size×size: one that is not size×size already is
    centre-cropped to a square and resized to it."""
    out = torch.empty(len(folder.samples), folder.channels, size, size, dtype=torch.uint8)
    for i, (path, _) in enumerate(folder.samples):
        out[i] = small_view(read_image(path, folder.channels), size)
    return out


def small_view(image, size: int) -> torch.Tensor:
    """A small image as the network sees it, uint8 C×size×size: centre-cropped to a square and resized to
    `size` unless it is that size already."""
    from PIL import Image, ImageOps

    if image.size != (size, size):
        image = ImageOps.fit(image, (size, size), Image.Resampling.BILINEAR)
    pixels = torch.from_numpy(np.asarray(image).copy())
    return pixels[None] if pixels.ndim == 2 else pixels.permute(2, 0, 1)


def evaluation_view(image, size: int, small: bool) -> torch.Tensor:
    """One image's evaluation view, uint8 C×size×size, as the test split is read: small images (the CIFAR
    stem) by `small_view`, larger ones by `folder_transform`'s resize and centre crop."""
    return small_view(image, size) if small else folder_transform(False, size)(image)


def folder_transform(train: bool, size: int = 224, flip: bool = True):
    """The ImageNet geometry (method.md §7): random-resized crop + flip, or resize to size·256/224 + centre
    crop."""
    from torchvision import transforms as T

    if train:
        return T.Compose(
            [T.RandomResizedCrop(size), *([T.RandomHorizontalFlip()] if flip else []), T.PILToTensor()]
        )
    return T.Compose([T.Resize(round(size * 256 / 224)), T.CenterCrop(size), T.PILToTensor()])


class _FolderDataset(torch.utils.data.Dataset):
    def __init__(self, folder: ImageFolder, transform):
        self.folder, self.transform = folder, transform

    def __len__(self) -> int:
        return len(self.folder.samples)

    def __getitem__(self, item: tuple[int, int]):
        """Image i with its random crop and flip drawn from its own seed, whichever worker reads it."""
        i, seed = item
        path, label = self.folder.samples[i]
        torch.manual_seed(seed)  # this worker's global generator, which torchvision's transforms draw from
        return self.transform(read_image(path, self.folder.channels)), label


class FolderLoader(BatchLoader):
    """An image folder through torchvision transforms in DataLoader worker processes (`--loader torch`).

    The order comes from the loader's generators, and every image of a pass its own crop seed (from the
    seed, epoch, stream, rank and its place in the pass), so the random crops of an epoch are the same on a
    rerun, with any number of workers, and when a pass resumes in the middle.
    """

    def __init__(self, folder: ImageFolder, indices, batch_size: int, finish, *, train: bool, workers: int,
                 size: int = 224, flip: bool = True, **kwargs):  # fmt: skip
        super().__init__(indices, batch_size, finish, **kwargs)
        self.dataset = _FolderDataset(folder, folder_transform(train, size, flip))
        self.workers = workers

    def _batches(self, seed, epoch, order, augment_g, start):
        base = hash((seed, epoch, self.stream, self.rank)) % 2**62  # int hashes are stable
        items = [(i, base + place) for place, i in enumerate(order.tolist())]
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=items[start * self.batch_size :],
            num_workers=max(1, self.workers),  # in-process transforms would draw from the global RNG
            generator=torch.Generator().manual_seed(base),  # else its worker seeds come from the global RNG
            pin_memory=self.device.type == "cuda",
        )
        for x, y in loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
