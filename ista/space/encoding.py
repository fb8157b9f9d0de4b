"""How a cell's 98 candidates are numbered (method.md §1).

Node j (state j+2) has j+2 inputs and 7 ops per input, so its code z_j has n_j = 7(j+2) entries; local
index k means input k // 7 and op PRIMITIVES[k % 7]. Concatenating z_0..z_3 gives the cell's 98-entry code,
the row-major DARTS 14 × 7 (edge × op) table, whose flat index is the position of the op module in a
search cell.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ista.space.genotypes import NODES, Genotype, Pair
from ista.space.ops import NUM_OPS, PRIMITIVES

NODE_SIZES: tuple[int, ...] = tuple(NUM_OPS * (j + 2) for j in range(NODES))  # 14, 21, 28, 35
NODE_OFFSETS: tuple[int, ...] = tuple(sum(NODE_SIZES[:j]) for j in range(NODES))  # 0, 14, 35, 63
CODE_SIZE = sum(NODE_SIZES)  # 98 candidates per cell type
DENSE_SUPPORT: tuple[range, ...] = tuple(range(n) for n in NODE_SIZES)  # every candidate runs

NodeSupports = Sequence[Sequence[int] | np.ndarray]  # per node, local indices k into z_j


def decode(k: int) -> Pair:
    """Local index k of z_j → (op name, input state)."""
    return PRIMITIVES[k % NUM_OPS], k // NUM_OPS


def flat_indices(supports: NodeSupports) -> list[list[int]]:
    """Per-node local indices → indices into the cell's 98-entry code, with range checks."""
    if len(supports) != NODES:
        raise ValueError(f"expected a support for each of {NODES} nodes, got {len(supports)}")
    flat = []
    for j, support in enumerate(supports):
        for k in support:
            if not 0 <= int(k) < NODE_SIZES[j]:
                raise ValueError(f"node {j}: index {k} outside its code of size {NODE_SIZES[j]}")
        flat.append([NODE_OFFSETS[j] + int(k) for k in support])
    return flat


def genotype_from_supports(normal: NodeSupports, reduce: NodeSupports) -> Genotype:
    """The genotype whose node j keeps the candidates `support[j]`, in the given order (§2.8)."""
    cells = []
    for supports in (normal, reduce):
        flat_indices(supports)  # range checks
        cells.append([decode(int(k)) for support in supports for k in support])
    return Genotype(tuple(cells[0]), tuple(range(2, 2 + NODES)), tuple(cells[1]), tuple(range(2, 2 + NODES)))
