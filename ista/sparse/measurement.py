"""The fixed measurement matrices A_j and the initial compressed codes b_j (method.md §2.1–§2.2).

Both are drawn from the run's seed alone, so every rank draws the same ones, and a resumed run can
redraw or reload them. A_j ~ U[0,1) with no centring or normalisation: that is the paper's code, and
its high coherence is part of the method, not something to fix.
"""

from __future__ import annotations

import numpy as np
import torch

from ista.space.encoding import NODE_SIZES

M = 7  # rows of every A_j (the official `--proj_dims`), whatever n_j = 7(j+2)
CELL_TYPES = ("normal", "reduce")
_A_STREAM, _B_STREAM = 0, 1  # independent random streams, so changing one draw never shifts the other


def draw_measurements(seed: int, m: int = M) -> dict[str, list[np.ndarray]]:
    """A_j ∈ R^{m × 7(j+2)}, float64, for the 4 nodes of each cell type."""
    rng = np.random.default_rng([seed, _A_STREAM])
    return {cell: [rng.random((m, n)) for n in NODE_SIZES] for cell in CELL_TYPES}


def init_codes(seed: int, m: int = M, std: float = 1e-3) -> dict[str, list[torch.Tensor]]:
    """b_j = 1e-3·N(0, I_m), float32, one vector per node so each can be frozen on its own (§6.4)."""
    rng = np.random.default_rng([seed, _B_STREAM])
    return {
        cell: [torch.from_numpy(std * rng.standard_normal(m)).float() for _ in NODE_SIZES]
        for cell in CELL_TYPES
    }


def check_same_measurements(A: dict[str, list[np.ndarray]], saved: dict[str, list[np.ndarray]]) -> None:
    """A resumed run must solve with the matrices its checkpoint was made with."""
    for cell in CELL_TYPES:
        if any(not np.array_equal(x, y) for x, y in zip(A[cell], saved[cell], strict=True)):
            raise ValueError("the checkpoint's measurement matrices differ from this run's seed")
