"""Learning rates and drop-path as explicit functions of the epoch (method.md §12.3).

The reference code steps PyTorch schedulers at the start of each epoch, which shifts them by one epoch
under PyTorch ≥ 1.1. A pure function of the epoch has no such ambiguity and needs no saved state.
`learning_rate` is the one function every method's learning rate comes from.
"""

from __future__ import annotations

import math


def learning_rate(
    epoch: int, epochs: int, lr: float, *, schedule: str = "cosine", lr_min: float = 0.0, warmup: int = 0
) -> float:
    """The learning rate of epoch `epoch` (0-based) of `epochs`.

    The first `warmup` epochs ramp linearly to lr as lr·(e+1)/warmup, overriding the schedule, as the
    ImageNet script does. Then `schedule`:
    - cosine: lr_min + (lr − lr_min)·(1 + cos(π·e/E))/2, lr in the first epoch (DARTS, ISTA-NAS);
    - linear: the ImageNet script's decay (§7): lr·(E−5−e)/(E−5), then lr·(E−e)/((E−5)·5) over the last
      five epochs (plain linear decay for runs of at most 5 epochs);
    - constant: lr.
    """
    if not 0 <= epoch < epochs:
        raise ValueError(f"epoch {epoch} outside 0..{epochs - 1}")
    if epoch < warmup:
        return lr * (epoch + 1) / warmup
    if schedule == "cosine":
        return lr_min + (lr - lr_min) * (1 + math.cos(math.pi * epoch / epochs)) / 2
    if schedule == "linear":
        tail = 5
        main = epochs - tail
        if main <= 0:
            return lr * (epochs - epoch) / epochs
        return lr * (main - epoch) / main if epoch < main else lr * (epochs - epoch) / (main * tail)
    if schedule == "constant":
        return lr
    raise ValueError(f"unknown schedule {schedule!r}; expected cosine, linear or constant")


def drop_path_at(epoch: int, epochs: int, final: float) -> float:
    """DARTS' linear ramp (method.md §4): final·epoch/epochs, 0 in the first epoch."""
    return final * epoch / epochs
