"""`progress.json`: where a running run is (epoch and step, the latest loss and accuracy, images/s and the
time left), rewritten atomically by rank 0 at each epoch's start and at most every few seconds within it,
for `ista launch --status --watch`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ista.rundir.atomic import write_json
from ista.rundir.files import PROGRESS


class ProgressFile:
    def __init__(self, run_dir: Path | None, epochs: int, every_s: float = 5.0):
        """`run_dir` None: a rank that writes nothing."""
        self.path = run_dir / PROGRESS if run_dir is not None else None
        self.epochs, self.every_s = epochs, every_s
        self.steps, self.done_steps, self.written = 0, 0, 0.0
        self.now: dict[str, Any] = {}
        self.started = time.perf_counter()

    def start_epoch(self, epoch: int, steps: int) -> None:
        self.steps = steps
        self._write(epoch=epoch, step=0, force=True)

    def step(self, step: int, **latest: Any) -> None:
        self.done_steps += step - self.now.get("step", 0)
        self._write(step=step, **latest)

    def end_epoch(self, epoch: int) -> None:
        self._write(epoch=epoch + 1, step=0, force=True)

    def _write(self, force: bool = False, **facts: Any) -> None:
        self.now.update(facts)
        if self.path is None or (not force and time.perf_counter() - self.written < self.every_s):
            return
        self.written = time.perf_counter()
        left = (self.epochs - self.now["epoch"]) * self.steps - self.now.get("step", 0)
        eta = (self.written - self.started) / self.done_steps * left if self.done_steps else None
        write_json(self.path, {**self.now, "epochs": self.epochs, "steps": self.steps,
                               "eta_s": eta and round(eta), "updated": time.time()})  # fmt: skip


def read_progress(run_dir: Path) -> dict[str, Any]:
    """What the run last wrote; {} before it has (or after a torn read on a file system without rename)."""
    try:
        return json.loads((run_dir / PROGRESS).read_text())
    except (OSError, ValueError):
        return {}
