"""Learning rates as explicit functions of the epoch (method.md §12.3).

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
