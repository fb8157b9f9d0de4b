"""ImageNet-style image folders (`SPLIT/<class>/<image>`), read with torchvision's transforms.

The classes are the sorted folder names of the training split, as torchvision's ImageFolder numbers them;
the validation split must use the same names, so its labels mean the same classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ista.data.loaders import BatchLoader
from ista.data.sources import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
LAYOUT = "SRC/{train,val}/<class>/<image>.JPEG (the ImageFolder layout)"


@dataclass(frozen=True)
class ImageFolder:
    root: Path
    classes: tuple[str, ...]
    samples: tuple[tuple[str, int], ...]  # (path, label)


def scan_image_folder(root: str | Path, classes: tuple[str, ...] | None = None) -> ImageFolder:
    """Lists a split folder; `classes` (from the training split) fixes the label numbering."""
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
    classes = classes or tuple(found)
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(f"{root} has classes not in the training split: {', '.join(unknown[:5])}")
    samples = []
    for label, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():
            continue
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        samples.extend((str(p), label) for p in files)
    if not samples:
        raise DataError(f"{root} holds no images with extensions {', '.join(IMAGE_EXTENSIONS)}")
    return ImageFolder(root, classes, tuple(samples))


def read_rgb(path: str):
    """An image as an RGB PIL image (grey and CMYK JPEGs exist in ImageNet); errors name the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise DataError(f"cannot read image {path}: {err}") from None


def folder_transform(train: bool, size: int = 224):
    """The ImageNet geometry (method.md §7): random-resized crop + flip, or resize 256 + centre crop."""
    from torchvision import transforms as T

    if train:
        return T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.PILToTensor()])
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
        return self.transform(read_rgb(path)), label


class FolderLoader(BatchLoader):
    """An image folder through torchvision transforms in DataLoader worker processes (`--loader torch`).

    The order comes from the loader's generators, and every image of a pass its own crop seed (from the
    seed, epoch, stream, rank and its place in the pass), so the random crops of an epoch are the same on a
    rerun, with any number of workers, and when a pass resumes in the middle.
    """

    def __init__(self, folder: ImageFolder, indices, batch_size: int, finish, *, train: bool, workers: int,
                 **kwargs):  # fmt: skip
        super().__init__(indices, batch_size, finish, **kwargs)
        self.dataset = _FolderDataset(folder, folder_transform(train))
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
