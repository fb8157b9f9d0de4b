"""Progress display for training runs: a live rich bar on a terminal, one line per epoch in a log file,
and the run directory's progress file (`ista.rundir.progress`) for `ista launch --status --watch`.

Slurm jobs write to files, where a live bar would be noise; the same object prints plain epoch lines
there.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from ista.rundir.progress import ProgressFile


class RunProgress:
    def __init__(
        self,
        epochs: int,
        title: str = "search",
        console: Console | None = None,
        enabled: bool = True,
        run_dir: Path | None = None,
    ):
        """`run_dir`: where to keep `progress.json` (rank 0's), or None."""
        self.console = console or Console()
        self.epochs, self.title, self.enabled = epochs, title, enabled
        self.record = ProgressFile(run_dir, epochs)
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
        self.record.start_epoch(epoch, steps)
        if self.progress is not None:
            if self.task is not None:
                self.progress.remove_task(self.task)
            description = f"{self.title} epoch {epoch + 1}/{self.epochs}"
            self.task = self.progress.add_task(description, total=steps, stats="")

    def step(self, step: int, means: dict[str, float], images_per_s: float) -> None:
        latest: dict[str, Any] = {k: means[k] for k in ("train_loss", "train_acc") if k in means}
        self.record.step(step, images_per_s=round(images_per_s, 1), **latest)
        if self.progress is not None and self.task is not None:
            stats = f"loss {means.get('train_loss', float('nan')):.3f} acc {means.get('train_acc', 0):.1%}"
            self.progress.update(self.task, completed=step, stats=f"{stats} {images_per_s:,.0f} img/s")

    def end_epoch(self, metrics: dict[str, Any]) -> None:
        self.record.end_epoch(metrics["epoch"])
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
