"""The fixed measurement matrices A_j and the initial compressed codes b_j (method.md §2.1–§2.2).

A_j ~ U[0,1) with no centring or normalisation: that is the paper's code, and its high coherence is part
of the method, not something to fix. Two ways to draw them from a seed (`arch.draws`):

- "streams" (default): A and b from two independent numpy streams of the seed alone, so every rank draws
  the same ones without communicating, and neither depends on how the network was built.
- "official": the official code's draws, bit for bit, so one of its seeds can be replayed:
  `np.random.seed(seed)`, then `np.random.rand(7, 7(j+2))` for node j = 0..3, normal then reduction cell,
  interleaved; b is drawn from torch's global generator right after the search network is built under
  `torch.manual_seed(seed)` (two-stage: `1e-3·torch.randn(4, 7)` for the normal, then the reduction cell),
  or on the GPU (one-stage: `1e-3·torch.randn(7, device="cuda")` per node, normal and reduction
  interleaved, from the CUDA generator seeded with the seed).
"""

from __future__ import annotations

import numpy as np
import torch

from ista.space.encoding import NODE_SIZES
from ista.space.genotypes import CELL_TYPES

M = 7  # rows of every A_j (the official `--proj_dims`), whatever n_j = 7(j+2)
DRAWS = ("streams", "official")
INIT_STD = 1e-3
_A_STREAM, _B_STREAM = 0, 1  # independent random streams, so changing one draw never shifts the other

Codes = dict[str, list[torch.Tensor]]


def draw_measurements(seed: int, draws: str = "streams", m: int = M) -> dict[str, list[np.ndarray]]:
    """A_j ∈ R^{m × 7(j+2)}, float64, for the 4 nodes of each cell type."""
    if draws == "official":
        legacy = np.random.RandomState(seed)  # what np.random.seed(seed) gives np.random.rand
        A: dict[str, list[np.ndarray]] = {cell: [] for cell in CELL_TYPES}
        for n in NODE_SIZES:
            for cell in CELL_TYPES:
                A[cell].append(legacy.rand(m, n))
        return A
    _check_draws(draws)
    rng = np.random.default_rng([seed, _A_STREAM])
    return {cell: [rng.random((m, n)) for n in NODE_SIZES] for cell in CELL_TYPES}


def init_codes(seed: int, m: int = M, std: float = INIT_STD) -> Codes:
    """b_j = 1e-3·N(0, I_m), float32, one vector per node so each can be frozen on its own (§6.4)."""
    rng = np.random.default_rng([seed, _B_STREAM])
    return {
        cell: [torch.from_numpy(std * rng.standard_normal(m)).float() for _ in NODE_SIZES]
        for cell in CELL_TYPES
    }


def official_two_stage_codes(m: int = M) -> Codes:
    """The official two-stage b: `1e-3 * torch.randn(4, m)` per cell type from torch's global generator.

    Call it right after building the search network under `torch.manual_seed(seed)`, as the official
    `NetWork.__init__` ends with it; the draw then depends on the network's initialisation draws."""
    rows = {cell: INIT_STD * torch.randn(len(NODE_SIZES), m) for cell in CELL_TYPES}
    return {cell: list(rows[cell].unbind(0)) for cell in CELL_TYPES}


def official_one_stage_codes(seed: int, m: int = M) -> Codes:
    """The official one-stage b: `1e-3 * torch.randn(m, device="cuda")` per node, normal and reduction
    interleaved, from the CUDA generator seeded with `seed` (the CPU generator gives other numbers)."""
    if not torch.cuda.is_available():
        raise RuntimeError(
            "arch.draws=official in the one-stage search draws b on the GPU, as the official code does "
            "(torch.randn(7, device='cuda')); no CUDA GPU is visible. Use arch.draws=streams on the CPU."
        )
    g = torch.Generator("cuda").manual_seed(seed)
    codes: Codes = {cell: [] for cell in CELL_TYPES}
    for _ in NODE_SIZES:
        for cell in CELL_TYPES:
            codes[cell].append((INIT_STD * torch.randn(m, device="cuda", generator=g)).cpu())
    return codes


def check_same_measurements(A: dict[str, list[np.ndarray]], saved: dict[str, list[np.ndarray]]) -> None:
    """A resumed run must solve with the matrices its checkpoint was made with."""
    for cell in CELL_TYPES:
        if any(not np.array_equal(x, y) for x, y in zip(A[cell], saved[cell], strict=True)):
            raise ValueError("the checkpoint's measurement matrices differ from this run's seed and draws")


def _check_draws(draws: str) -> None:
    if draws not in DRAWS:
        raise ValueError(f"unknown draws {draws!r}; expected one of {', '.join(DRAWS)}")


def initial_codes(seed: int, draws: str, one_stage: bool) -> Codes:
    """The initial b of a search: ours, or the official two-stage or one-stage code's draw."""
    if draws == "official":
        return official_one_stage_codes(seed) if one_stage else official_two_stage_codes()
    _check_draws(draws)
    return init_codes(seed)
