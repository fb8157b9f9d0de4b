"""Learning rates and drop-path as explicit functions of the epoch (method.md §12.3).

The reference code steps PyTorch schedulers at the start of each epoch, which shifts them by one epoch
under PyTorch ≥ 1.1. A pure function of the epoch has no such ambiguity and needs no saved state.
"""

from __future__ import annotations

import math


def cosine_lr(epoch: int, epochs: int, lr: float, lr_min: float = 0.0) -> float:
    """lr_min + (lr − lr_min)·(1 + cos(π·epoch/epochs))/2 for epoch = 0..epochs−1: lr in the first epoch."""
    if not 0 <= epoch < epochs:
        raise ValueError(f"epoch {epoch} outside 0..{epochs - 1}")
    return lr_min + (lr - lr_min) * (1 + math.cos(math.pi * epoch / epochs)) / 2


def linear_lr(epoch: int, epochs: int, lr: float, tail: int = 5) -> float:
    """The ImageNet script's decay (method.md §7): linear to a small value at epoch N−tail, then a gentler
    linear fall over the last `tail` epochs: lr·(N−tail−e)/(N−tail), then lr·(N−e)/((N−tail)·tail)."""
    if not 0 <= epoch < epochs:
        raise ValueError(f"epoch {epoch} outside 0..{epochs - 1}")
    main = epochs - tail
    if main <= 0:  # runs shorter than the tail: plain linear decay
        return lr * (epochs - epoch) / epochs
    if epoch < main:
        return lr * (main - epoch) / main
    return lr * (epochs - epoch) / (main * tail)


def learning_rate(epoch: int, epochs: int, optim, warmup: int | None = None) -> float:
    """`optim.schedule` over `epochs`; the first `warmup` epochs (default `optim.warmup_epochs`) ramp
    linearly to lr as lr·(e+1)/warmup, overriding the schedule, as the ImageNet script does."""
    warmup = optim.warmup_epochs if warmup is None else warmup
    if epoch < warmup:
        return optim.lr * (epoch + 1) / warmup
    if optim.schedule == "cosine":
        return cosine_lr(epoch, epochs, optim.lr, optim.lr_min)
    if optim.schedule == "linear":
        return linear_lr(epoch, epochs, optim.lr)
    return optim.lr


def drop_path_at(epoch: int, epochs: int, final: float) -> float:
    """DARTS' linear ramp (method.md §4): final·epoch/epochs, 0 in the first epoch."""
    return final * epoch / epochs
