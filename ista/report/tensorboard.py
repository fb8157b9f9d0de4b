"""TensorBoard scalars of a run (`log.tensorboard=true`): what metrics.jsonl holds, per epoch, for people
who watch runs in TensorBoard. Written by rank 0 into RUN_DIR/tensorboard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ista.config.io import ConfigError


def writer_class():
    """torch's SummaryWriter, or a clear error naming the extra to install."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("log.tensorboard=true needs TensorBoard: pip install 'ista[tensorboard]'") from None
    return SummaryWriter


class EpochScalars:
    def __init__(self, folder: Path):
        self.writer = writer_class()(str(folder))
        self.support: dict[str, Any] | None = None

    def epoch(self, metrics: dict[str, Any]) -> None:
        """Every number of the epoch (losses, accuracies, lr, drop-path, recovery seconds…), how many nodes
        changed their support since the epoch before, and the genotype as text."""
        step = metrics["epoch"]
        for name, value in metrics.items():
            if isinstance(value, int | float) and not isinstance(value, bool) and name != "epoch":
                self.writer.add_scalar(name, value, step)
        if "support" in metrics:
            if self.support is not None:
                changed = sum(
                    a != b
                    for cell in self.support
                    for a, b in zip(self.support[cell], metrics["support"][cell], strict=True)
                )
                self.writer.add_scalar("support_changes", changed, step)
            self.support = metrics["support"]
        if "genotype" in metrics:
            genotype = metrics["genotype"]
            self.writer.add_text(
                "genotype", f"normal: {genotype['normal']}  \nreduce: {genotype['reduce']}", step
            )
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
