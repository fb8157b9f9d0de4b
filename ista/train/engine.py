"""The one epoch loop. Search, retraining and evaluation are tasks run by it, never loops of their own.

A task owns its model and optimizers and does one training step on a batch (and, for bilevel search, a
batch of the held-out half); the engine feeds it batches, keeps running sums on the device (read back a
few times per epoch, not at every step), evaluates, and hands each epoch's metrics to a callback that
writes records and checkpoints.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from ista.data.loaders import Batch, BatchLoader
from ista.distributed.runtime import all_reduce_sum

Stats = dict[str, tuple[torch.Tensor, int]]  # name → (sum over the batch, number of items)


class NonFiniteLossError(FloatingPointError):
    def __init__(self, epoch: int, step: int, name: str):
        super().__init__(f"{name} is not finite at epoch {epoch}, step {step}; lower the learning rate?")


class Task(Protocol):
    model: torch.nn.Module
    done: bool  # set by a task whose length is decided as it runs (the one-stage search)

    def start_epoch(self, epoch: int) -> None: ...

    def train_step(self, batch: Batch, held_out: Batch | None) -> Stats: ...

    def evaluate(self, batches: Iterator[Batch]) -> dict[str, float]: ...

    def end_epoch(self, epoch: int) -> dict[str, Any]: ...


class Progress(Protocol):
    def start_epoch(self, epoch: int, steps: int) -> None: ...

    def step(self, step: int, means: dict[str, float], images_per_s: float) -> None: ...

    def end_epoch(self, metrics: dict[str, Any]) -> None: ...


class Meter:
    """Running sums kept as device tensors, so reading them is the only host sync."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, stats: Stats) -> None:
        for name, (value, count) in stats.items():
            value = value.detach().double()
            self.sums[name] = self.sums[name] + value if name in self.sums else value
            self.counts[name] = self.counts.get(name, 0) + count

    def means(self) -> dict[str, float]:
        """Over all ranks (one all-reduce) when there are several."""
        if not self.sums:
            return {}
        names = list(self.sums)
        counts = torch.tensor([float(self.counts[n]) for n in names], dtype=torch.float64)
        sums = torch.stack([self.sums[n] for n in names]).cpu().double()
        totals, counts = all_reduce_sum(torch.cat([sums, counts])).split(len(names))  # one collective
        return {n: float(totals[i] / counts[i]) for i, n in enumerate(names)}


@dataclass
class Loaders:
    train: BatchLoader
    held_out: BatchLoader | None = None  # cycled alongside train (the b-half of a two-stage search)
    evaluate: BatchLoader | None = None


def run_epochs(
    task: Task,
    loaders: Loaders,
    *,
    seed: int,
    start_epoch: int,
    epochs: int,
    eval_every: int = 1,
    on_epoch_end: Callable[[int, dict[str, Any]], None],
    progress: Progress,
    refresh_steps: int = 10,
) -> None:
    for epoch in range(start_epoch, epochs):
        started = time.perf_counter()
        task.start_epoch(epoch)
        held_out = loaders.held_out.forever(seed, epoch) if loaders.held_out is not None else None
        meter = Meter()
        steps = len(loaders.train)
        progress.start_epoch(epoch, steps)
        images = 0
        for step, batch in enumerate(loaders.train.epoch(seed, epoch), start=1):
            meter.add(task.train_step(batch, next(held_out) if held_out is not None else None))
            images += len(batch[1])
            if step % refresh_steps == 0 or step == steps:
                means = meter.means()
                _check_finite(means, epoch, step)
                progress.step(step, means, images / (time.perf_counter() - started))
        metrics: dict[str, Any] = {"epoch": epoch, **meter.means()}
        if loaders.evaluate is not None and ((epoch + 1) % eval_every == 0 or epoch + 1 == epochs):
            metrics.update(task.evaluate(loaders.evaluate.epoch(seed, epoch)))
        metrics.update(task.end_epoch(epoch))
        metrics["epoch_s"] = round(time.perf_counter() - started, 3)
        on_epoch_end(epoch, metrics)
        progress.end_epoch(metrics)
        if task.done:
            break


def _check_finite(means: dict[str, float], epoch: int, step: int) -> None:
    for name, value in means.items():
        if not math.isfinite(value):
            raise NonFiniteLossError(epoch, step, name)


def classification_stats(
    prefix: str, logits: torch.Tensor, targets: torch.Tensor, loss: torch.Tensor
) -> Stats:
    n = len(targets)
    return {
        f"{prefix}_loss": (loss.detach() * n, n),
        f"{prefix}_acc": ((logits.argmax(1) == targets).sum(), n),
    }
