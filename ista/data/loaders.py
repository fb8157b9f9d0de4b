"""Loaders: one interface (`epoch(seed, epoch)`, `cycle`, `len`) over in-memory tensors, image folders and
FFCV files.

Everything random is drawn from generators seeded by (seed, epoch, stream), never from global state, so an
epoch's batches are the same whether the run went straight through or was resumed from a checkpoint. A
pass can say where it is (`Pass.state`: batches taken, the augmentation generator's state), and a pass
started from that state yields exactly the batches the interrupted one would have: a mid-epoch resume. With
several processes every rank draws the same order and reads its own shard of it (padded like PyTorch's
DistributedSampler, so all ranks take the same number of steps); augmentation draws differ per rank.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from ista.data.augment import Finish, random_crop_flip
from ista.data.sources import ImageSet

Batch = tuple[torch.Tensor, torch.Tensor]
State = torch.Tensor  # a generator's state


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

    def epoch(
        self,
        seed: int,
        epoch: int,
        batches: int = 0,
        generator: State | None = None,
        device_generator: State | None = None,
    ) -> Pass:
        """The epoch's batches, from batch `batches` on with the augmentation generators in the states of
        an interrupted pass (`Pass.state`), or from the start."""
        return Pass(self, seed, epoch, batches, generator, device_generator)

    def cycle(self, seed: int, epoch: int, state: dict[str, Any] | None = None) -> Cycle:
        """Cycles through the set, a new order each round (the b-half in Algorithm 1)."""
        return Cycle(self, seed, epoch, state)

    def plan(self, order_g: torch.Generator) -> torch.Tensor | None:
        """This rank's order of a pass, drawn from `order_g`; None where the reader orders itself (FFCV)."""
        return self._order(order_g)

    def _order(self, order_g: torch.Generator | None) -> torch.Tensor:
        order = self.indices
        if self.shuffle:
            order = order[torch.randperm(len(order), generator=order_g)]
        return rank_shard(order, self.rank, self.world, pad=self.shuffle)

    def _batches(
        self, seed: int, epoch: int, order: torch.Tensor | None, augment_g: torch.Generator, start: int
    ) -> Iterator[Batch]:
        """uint8 N×C×H×W images and int64 labels, both on the device, from batch `start` of the pass."""
        raise NotImplementedError


class Pass:
    """One pass over a loader's order, that can say where it is.

    Its augmentation draws come from a host generator and, on a GPU, from a device generator seeded by the
    host one, so that per-image draws are made where the batch lives; on the CPU the two are one."""

    def __init__(
        self,
        loader: BatchLoader,
        seed: int,
        epoch: int,
        start: int,
        generator: State | None,
        device_generator: State | None = None,
    ):
        order_g = epoch_generator(seed, epoch, loader.stream)
        rank, stream = loader.rank, loader.stream
        # rank 0 continues the order's stream, so a 1-process run is unchanged by the sharding
        self.host_g = order_g if rank == 0 else rank_generator(seed, epoch, stream, rank)
        order = loader.plan(order_g)  # drawn first: a resumed pass then takes the generator where it was
        self.augment_g = self.host_g
        if loader.device.type != "cpu":
            seed_draw = int(torch.randint(2**62, (), generator=self.host_g))
            self.augment_g = torch.Generator(loader.device).manual_seed(seed_draw)
        try:
            if generator is not None:
                self.host_g.set_state(generator)
            if (device_generator is None) != (self.augment_g is self.host_g):
                raise ValueError("its augmentation generators were drawn on another kind of device")
            if device_generator is not None:
                self.augment_g.set_state(device_generator)
        except (RuntimeError, ValueError) as err:
            raise ValueError(
                f"cannot continue the interrupted pass of epoch {epoch} on {loader.device} ({err}); resume "
                "on the kind of device that wrote the checkpoint, or from an epoch-end checkpoint"
            ) from None
        self.finish, self.taken = loader.finish, start
        self._batches = loader._batches(seed, epoch, order, self.augment_g, start)

    def __iter__(self) -> Pass:
        return self

    def __next__(self) -> Batch:
        x, y = next(self._batches)
        self.taken += 1
        return self.finish(x, self.augment_g, self.host_g), y

    def state(self) -> dict[str, Any]:
        """Where the pass is: batches taken so far and the augmentation generators' states after them."""
        state = {"batches": self.taken, "generator": self.host_g.get_state()}
        if self.augment_g is not self.host_g:
            state["device_generator"] = self.augment_g.get_state()
        return state


class Cycle:
    """Passes over a loader one after another, pass r of epoch e ordered as epoch e·1000 + r."""

    def __init__(self, loader: BatchLoader, seed: int, epoch: int, state: dict[str, Any] | None = None):
        self.loader, self.seed, self.epoch = loader, seed, epoch
        self.round = state["round"] if state else 0
        where = {k: v for k, v in state.items() if k != "round"} if state else {}
        self.current = loader.epoch(seed, epoch * 1000 + self.round, **where)

    def __iter__(self) -> Cycle:
        return self

    def __next__(self) -> Batch:
        try:
            return next(self.current)
        except StopIteration:
            self.round += 1
            self.current = self.loader.epoch(self.seed, self.epoch * 1000 + self.round)
            return next(self.current)

    def state(self) -> dict[str, Any]:
        return {"round": self.round, **self.current.state()}


class ImageLoader(BatchLoader):
    """Batches of `data.images[indices]` from memory; `crop` adds a random crop of the images padded by
    `padding` and, if `flip`, flips (§11.9: 4 px at 32 px)."""

    def __init__(self, data: ImageSet, indices, batch_size: int, finish: Finish, *, crop=False, padding=4,
                 flip=True, **kwargs):  # fmt: skip
        super().__init__(indices, batch_size, finish, **kwargs)
        # on the device once (`open_data` puts the set there): batches are cut there, with no copy
        self.images, self.labels = data.images.to(self.device), data.labels.to(self.device)
        self.crop, self.padding, self.flip = crop, padding, flip

    def _batches(self, seed, epoch, order, augment_g, start):
        if self.device.type == "cuda":  # one copy per pass, from pinned memory: the host does not wait
            order = order.pin_memory().to(self.device, non_blocking=True)
        for first in range(start * self.batch_size, len(order), self.batch_size):
            chosen = order[first : first + self.batch_size]
            x = self.images[chosen]
            if self.crop:
                x = random_crop_flip(x, augment_g, self.padding, self.flip)
            yield x, self.labels[chosen]
