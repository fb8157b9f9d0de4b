"""Loaders: one interface (`epoch(seed, epoch)`, `forever`, `len`) over in-memory tensors, image folders
and FFCV files.

Everything random is drawn from generators seeded by (seed, epoch, stream), never from global state, so an
epoch's batches are the same whether the run went straight through or was resumed from a checkpoint. With
several processes every rank draws the same order and reads its own shard of it (padded like PyTorch's
DistributedSampler, so all ranks take the same number of steps); augmentation draws differ per rank.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from ista.data.augment import Finish, random_crop_flip
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


def rank_generator(seed: int, epoch: int, stream: int, rank: int) -> torch.Generator:
    return torch.Generator().manual_seed(hash((seed, epoch, stream, rank)) % (2**63))  # int hashes are stable


def rank_shard(order: torch.Tensor, rank: int, world: int, pad: bool = True) -> torch.Tensor:
    """This rank's part of a global order. Training orders are padded by wrapping around, as
    DistributedSampler does, so every rank takes the same number of steps; evaluation orders are not, so
    that no image is counted twice."""
    if world == 1:
        return order
    if pad:
        order = torch.cat([order, order[: (-len(order)) % world]])
    return order[rank::world]


class BatchLoader:
    """Shared part of all loaders: per-epoch generators, rank sharding, and the device-side `Finish`."""

    def __init__(
        self,
        indices: torch.Tensor,
        batch_size: int,
        finish: Finish,
        device: torch.device | str = "cpu",
        *,
        shuffle: bool = True,
        stream: int = 0,
        rank: int = 0,
        world: int = 1,
    ):
        self.indices, self.batch_size, self.finish = torch.as_tensor(indices), batch_size, finish
        self.device, self.shuffle, self.stream = torch.device(device), shuffle, stream
        self.rank, self.world = rank, world

    def __len__(self) -> int:
        return -(-len(rank_shard(self.indices, self.rank, self.world, self.shuffle)) // self.batch_size)

    def epoch(self, seed: int, epoch: int) -> Iterator[Batch]:
        order_g = epoch_generator(seed, epoch, self.stream)
        # rank 0 continues the order's stream, so a 1-process run is unchanged by the sharding
        augment_g = order_g if self.rank == 0 else rank_generator(seed, epoch, self.stream, self.rank)
        for x, y in self._batches(seed, epoch, order_g, augment_g):
            yield self.finish(x, augment_g), y

    def forever(self, seed: int, epoch: int) -> Iterator[Batch]:
        """Cycles through the set, a new order each pass (the b-half in Algorithm 1)."""
        rounds = 0
        while True:
            yield from self.epoch(seed, epoch * 1000 + rounds)
            rounds += 1

    def _order(self, order_g: torch.Generator) -> torch.Tensor:
        order = self.indices
        if self.shuffle:
            order = order[torch.randperm(len(order), generator=order_g)]
        return rank_shard(order, self.rank, self.world, pad=self.shuffle)

    def _batches(
        self, seed: int, epoch: int, order_g: torch.Generator, augment_g: torch.Generator
    ) -> Iterator[Batch]:
        """uint8 N×C×H×W images and int64 labels, both on the device."""
        raise NotImplementedError


class ImageLoader(BatchLoader):
    """Batches of `data.images[indices]` from memory; `crop` adds pad-4 random crop + flip (§11.9)."""

    def __init__(self, data: ImageSet, indices, batch_size: int, finish: Finish, *, crop=False, **kwargs):
        super().__init__(indices, batch_size, finish, **kwargs)
        self.data, self.crop = data, crop

    def _batches(self, seed, epoch, order_g, augment_g):
        order = self._order(order_g)
        for start in range(0, len(order), self.batch_size):
            chosen = order[start : start + self.batch_size]
            x = self.data.images[chosen].to(self.device, non_blocking=True)
            if self.crop:
                x = random_crop_flip(x, augment_g)
            yield x, self.data.labels[chosen].to(self.device, non_blocking=True)
