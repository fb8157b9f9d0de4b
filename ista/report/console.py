"""Progress display for training runs: a live rich bar on a terminal, one line per epoch in a log file,
and a small progress file for `ista launch --status --watch`.

Slurm jobs write to files, where a live bar would be noise; the same object prints plain epoch lines
there. The progress file (`progress.json`, rewritten atomically every few seconds by rank 0) says where
the run is: epoch and step, the latest loss and accuracy, images/s and the time left.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from ista.rundir.atomic import write_json


class RunProgress:
    def __init__(
        self,
        epochs: int,
        title: str = "search",
        console: Console | None = None,
        enabled: bool = True,
        record: Path | None = None,
        every_s: float = 5.0,
    ):
        self.console = console or Console()
        self.epochs, self.title, self.enabled = epochs, title, enabled
        self.record, self.every_s, self.written = record, every_s, 0.0
        self.steps, self.done_steps = 0, 0
        self.now: dict[str, Any] = {}
        self.live = enabled and self.console.is_terminal
        self.started = time.perf_counter()
        self.first_epoch: int | None = None
        self.progress: Progress | None = None
        self.task: TaskID | None = None

    def __enter__(self) -> RunProgress:
        if self.live:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def start_epoch(self, epoch: int, steps: int) -> None:
        if self.first_epoch is None:
            self.first_epoch = epoch
        self.steps = steps
        self._write(epoch=epoch, step=0, force=True)
        if self.progress is not None:
            if self.task is not None:
                self.progress.remove_task(self.task)
            description = f"{self.title} epoch {epoch + 1}/{self.epochs}"
            self.task = self.progress.add_task(description, total=steps, stats="")

    def step(self, step: int, means: dict[str, float], images_per_s: float) -> None:
        self.done_steps += step - self.now.get("step", 0)
        latest: dict[str, Any] = {k: means[k] for k in ("train_loss", "train_acc") if k in means}
        self._write(step=step, images_per_s=round(images_per_s, 1), **latest)
        if self.progress is not None and self.task is not None:
            stats = f"loss {means.get('train_loss', float('nan')):.3f} acc {means.get('train_acc', 0):.1%}"
            self.progress.update(self.task, completed=step, stats=f"{stats} {images_per_s:,.0f} img/s")

    def _write(self, force: bool = False, **facts: Any) -> None:
        """progress.json, at most every `every_s` unless forced (the start of an epoch)."""
        self.now.update(facts)
        if self.record is None or (not force and time.perf_counter() - self.written < self.every_s):
            return
        self.written = time.perf_counter()
        elapsed = self.written - self.started
        left = (self.epochs - self.now["epoch"]) * self.steps - self.now.get("step", 0)
        eta = elapsed / self.done_steps * left if self.done_steps else None
        write_json(self.record, {**self.now, "epochs": self.epochs, "steps": self.steps,
                                 "eta_s": eta and round(eta), "updated": time.time()})  # fmt: skip

    def end_epoch(self, metrics: dict[str, Any]) -> None:
        self._write(epoch=metrics["epoch"] + 1, step=0, force=True)
        if not self.enabled:
            return
        done = metrics["epoch"] + 1
        elapsed = time.perf_counter() - self.started
        per_epoch = elapsed / (done - (self.first_epoch or 0))
        eta = per_epoch * (self.epochs - done)
        parts = [f"epoch {done}/{self.epochs}"]
        if "phase" in metrics:
            parts.append(metrics["phase"])
        labels = (
            ("train_loss", "loss"),
            ("train_acc", "acc"),
            ("valid_acc", "held-out acc"),
            ("test_acc", "test acc"),
        )
        for key, label in labels:
            if key in metrics:
                parts.append(
                    f"{label} {metrics[key]:.3f}" if "loss" in key else f"{label} {metrics[key]:.1%}"
                )
        parts.append(f"lr {metrics.get('lr', float('nan')):.4g}")
        parts.append(f"{metrics['epoch_s']:.1f}s/epoch, ETA {duration(eta)}")
        self.console.print(" | ".join(parts), highlight=False, soft_wrap=True)
        facts = []
        if metrics.get("terminated"):
            facts.append(f"terminated: {', '.join(metrics['terminated'])}")
        if metrics.get("forced"):
            facts.append(f"frozen at the epoch limit: {', '.join(metrics['forced'])}")
        if metrics.get("rejected"):
            facts.append(f"rejected over the cap: {metrics['candidate_params_m']:.2f} M params")
        if facts:
            self.console.print("  " + "; ".join(facts), highlight=False, soft_wrap=True)
        if "genotype" in metrics:
            normal = ", ".join(f"{op}←{i}" for op, i in metrics["genotype"]["normal"])
            reduce = ", ".join(f"{op}←{i}" for op, i in metrics["genotype"]["reduce"])
            self.console.print(
                f"  normal: {normal}\n  reduce: {reduce}", style="dim", highlight=False, soft_wrap=True
            )


def duration(seconds: float) -> str:
    seconds = round(seconds)
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
        if seconds >= 3600
        else f"{seconds // 60}m{seconds % 60:02d}s"
    )
