"""When a run writes a step checkpoint: on the signals of preemption and time limits, and on a timer.

Slurm sends USR2 before a time limit or preemption (`--signal=USR2@120`, submitit's default) and SIGTERM
when it cancels or preempts a job; a node can also die without any signal. The handlers here only note
the signal; the epoch loop asks `due()` at every step boundary, so a step is never cut in half. All ranks
answer together (one tiny all-reduce per step when there are several), so they stop at the same step
even when the signal reached them at different moments, and rank 0's clock decides the periodic
checkpoints (`checkpoint_every_s`), which bound what a silent node failure loses.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from ista.distributed.runtime import any_rank, world

SIGNALS = (signal.SIGUSR2, signal.SIGTERM)
Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None  # what signal.signal returns


class Interrupted(Exception):
    """The run stopped on a signal after writing a checkpoint of the step it had finished."""

    checkpoint: Path | None = None  # its path, set by the runner

    def __init__(self, signum: int, epoch: int, step: int):
        self.signum, self.epoch, self.step = signum, epoch, step
        where = f"epoch {epoch}, step {step}" if step else f"the end of epoch {epoch - 1}"
        super().__init__(f"stopped by {signal.Signals(signum).name} at {where}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # what a shell reports for a process ended by that signal


class Stops:
    """Notes USR2/SIGTERM while installed (a context manager) and says, at a step boundary, whether a step
    checkpoint is due: "signal", "timer" or None. Outside the main thread no handler can be installed, and
    only the timer works."""

    def __init__(self, every_s: float):
        self.every_s = every_s
        self.signum = 0
        self.last = time.monotonic()
        self._previous: dict[int, Handler] = {}

    def __enter__(self) -> Stops:
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._note)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _note(self, signum: int, frame) -> None:
        self.signum = self.signum or signum

    def due(self) -> str | None:
        timer = world()[0] == 0 and self.every_s > 0 and time.monotonic() - self.last >= self.every_s
        signum, timed = any_rank([self.signum, int(timer)])
        if signum:
            self.signum = signum
            return "signal"
        return "timer" if timed else None

    def checkpointed(self) -> None:
        """A checkpoint was just written: the timer starts again."""
        self.last = time.monotonic()
