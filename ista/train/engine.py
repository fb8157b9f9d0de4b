"""The one epoch loop. Search, retraining and evaluation are tasks run by it, never loops of their own.

A task owns its model and optimizers and does one training step on a batch (and, for bilevel search, a
batch of the held-out half); the engine feeds it batches, keeps running sums on the device (read back a
few times per epoch, not at every step), evaluates, and hands each epoch's metrics to a callback that
writes records and checkpoints. At a step boundary where `Stops` says so, it hands the callback for step
checkpoints this rank's position in the epoch (steps done, the loaders' states, the running sums); the
loop started from that position goes on exactly as the interrupted one would have.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from ista.config.schema import RunConfig
from ista.data.loaders import Batch, BatchLoader, split_indices
from ista.data.splits import Split
from ista.distributed.preemption import Interrupted, Stops
from ista.distributed.runtime import all_reduce_sum

Stats = dict[str, tuple[torch.Tensor, int]]  # name → (sum over the batch, number of items)


class NonFiniteLossError(FloatingPointError):
    def __init__(self, epoch: int, step: int, name: str):
        super().__init__(f"{name} is not finite at epoch {epoch}, step {step}; lower the learning rate?")


class Task(Protocol):
    @property
    def model(self) -> torch.nn.Module: ...

    @property
    def done(self) -> bool: ...  # set by a task whose length is decided as it runs (the one-stage search)

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
            self.sums[name] = self.sums[name].to(value.device) + value if name in self.sums else value
            self.counts[name] = self.counts.get(name, 0) + count

    def state(self) -> dict[str, Any]:
        return {"sums": {n: v.cpu() for n, v in self.sums.items()}, "counts": dict(self.counts)}

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> Meter:
        meter = cls()
        if state:
            meter.sums, meter.counts = dict(state["sums"]), dict(state["counts"])
        return meter

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
    stops: Stops | None = None,
    on_step_checkpoint: Callable[[int, dict[str, Any]], None] | None = None,
    position: dict[str, Any] | None = None,
) -> None:
    """Epochs `start_epoch`…; `position` (this rank's, from a step checkpoint) resumes inside the first.
    Raises `Interrupted` after the checkpoint of the step where a signal was noticed."""
    for epoch in range(start_epoch, epochs):
        started = time.perf_counter()
        task.start_epoch(epoch)
        at: dict[str, Any] = position if epoch == start_epoch and position else {"step": 0, "train": {}}
        held = loaders.held_out.cycle(seed, epoch, at.get("held_out")) if loaders.held_out else None
        train = loaders.train.epoch(seed, epoch, **at["train"])
        meter = Meter.from_state(at.get("meter"))
        steps = len(loaders.train)
        progress.start_epoch(epoch, steps)
        images = 0
        for step, batch in enumerate(train, start=at["step"] + 1):
            meter.add(task.train_step(batch, next(held) if held is not None else None))
            images += len(batch[1])
            if step % refresh_steps == 0 or step == steps:
                means = meter.means()
                _check_finite(means, epoch, step)
                progress.step(step, means, images / (time.perf_counter() - started))
            if stops is not None and (reason := stops.due()):
                where = {"epoch": epoch, "step": step, "meter": meter.state(), "train": train.state(),
                         "held_out": held.state() if held is not None else None}  # fmt: skip
                assert on_step_checkpoint is not None, "run_epochs: `stops` needs `on_step_checkpoint`"
                on_step_checkpoint(epoch, where)
                stops.checkpointed()
                if reason == "signal":
                    raise Interrupted(stops.signum, epoch, step)
        metrics: dict[str, Any] = {"epoch": epoch, **meter.means()}
        if loaders.evaluate is not None and ((epoch + 1) % eval_every == 0 or epoch + 1 == epochs):
            metrics.update(task.evaluate(loaders.evaluate.epoch(seed, epoch)))
        metrics.update(task.end_epoch(epoch))
        metrics["epoch_s"] = round(time.perf_counter() - started, 3)
        on_epoch_end(epoch, metrics)
        progress.end_epoch(metrics)
        if stops is not None:
            stops.checkpointed()
            if stops.due() == "signal" and not task.done and epoch + 1 < epochs:
                raise Interrupted(stops.signum, epoch + 1, 0)
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


def build_loaders(config: RunConfig, data: Split, test: Split | None = None) -> Loaders:
    """Two-stage searches: W trains on the first part of the split, b on the rest, which is also the
    evaluation set (§3.2). Single-level runs: the whole training split, evaluated on `test`."""
    batch, d = config.batch_size, config.data
    train: dict[str, Any] = {"augment": d.augment, "cutout": d.cutout, "jitter": d.jitter}
    if test is not None:
        return Loaders(
            train=data.loader(torch.arange(data.size), batch, **train),
            evaluate=test.loader(torch.arange(test.size), batch, augment=False, shuffle=False, stream=2),
        )
    train_idx, held_idx = split_indices(data.size, d.train_portion)
    return Loaders(
        train=data.loader(train_idx, batch, **train, stream=0),
        held_out=data.loader(held_idx, batch, **train, stream=1),
        # the official code evaluates on its augmented held-out queue (data.eval_augment=true)
        evaluate=data.loader(
            held_idx, batch, **(train if d.eval_augment else {"augment": False}), shuffle=False, stream=2
        ),
    )
