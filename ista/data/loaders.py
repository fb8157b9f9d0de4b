"""In-memory loaders: a seeded order per epoch and augmentation applied to whole batches.

Everything random is drawn from generators seeded by (seed, epoch), not from global state, so an epoch's
batches are the same whether the run went straight through or was resumed from a checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from ista.data.sources import ImageSet

Batch = tuple[torch.Tensor, torch.Tensor]


def split_indices(n: int, train_portion: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The two-stage split by index (method.md §3.2): the first part trains W, the rest trains b."""
    cut = int(n * train_portion)
    if not 0 < cut < n:
        raise ValueError(f"train_portion {train_portion} leaves an empty half of {n} images")
    return torch.arange(cut), torch.arange(cut, n)


def epoch_generator(seed: int, epoch: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed(((seed * 1_000_003 + epoch) * 8 + stream) % (2**63))


class ImageLoader:
    """Batches of `data.images[indices]`, shuffled, augmented (pad-4 crop + flip) and normalised."""

    def __init__(
        self,
        data: ImageSet,
        indices: torch.Tensor,
        batch_size: int,
        device: torch.device | str = "cpu",
        augment: bool = False,
        shuffle: bool = True,
        stream: int = 0,
    ):
        self.data, self.indices, self.batch_size = data, indices, batch_size
        self.device, self.augment, self.shuffle, self.stream = torch.device(device), augment, shuffle, stream
        self.mean = torch.tensor(data.mean, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(data.std, device=self.device).view(1, -1, 1, 1)

    def __len__(self) -> int:
        return -(-len(self.indices) // self.batch_size)

    def epoch(self, seed: int, epoch: int) -> Iterator[Batch]:
        g = epoch_generator(seed, epoch, self.stream)
        order = self.indices[torch.randperm(len(self.indices), generator=g)] if self.shuffle else self.indices
        for start in range(0, len(order), self.batch_size):
            chosen = order[start : start + self.batch_size]
            x = self.data.images[chosen].to(self.device, non_blocking=True).float().div_(255)
            if self.augment:
                x = random_crop_flip(x, g)
            yield (x - self.mean) / self.std, self.data.labels[chosen].to(self.device, non_blocking=True)

    def forever(self, seed: int, epoch: int) -> Iterator[Batch]:
        """Cycles through the set, a new order each pass (the b-half in Algorithm 1)."""
        rounds = 0
        while True:
            yield from self.epoch(seed, epoch * 1000 + rounds)
            rounds += 1


def random_crop_flip(x: torch.Tensor, g: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Zero-pad by `padding`, crop back at a random offset, flip half of the images (§11.9)."""
    n, _, h, w = x.shape
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=g).to(x.device)
    flip = (torch.rand(n, generator=g) < 0.5).to(x.device)
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    rows = (offsets[0, :, None] + torch.arange(h, device=x.device))[:, :, None]  # n×h×1
    cols = (offsets[1, :, None] + torch.arange(w, device=x.device))[:, None, :]  # n×1×w
    cropped = padded.permute(0, 2, 3, 1)[torch.arange(n, device=x.device)[:, None, None], rows, cols]
    cropped = cropped.permute(0, 3, 1, 2)
    return torch.where(flip[:, None, None, None], cropped.flip(-1), cropped)
