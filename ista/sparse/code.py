"""The sparse code of an ISTA-NAS search: one component that both searches use (method.md §2.7).

Per cell type and node j it holds the fixed A_j, the live code b_j (a parameter), the recovered z_j and
the forward map of its support. It recovers all or some nodes on rank 0 and broadcasts them, gives the
super-net's architecture weights, the genotype and its metrics, and its own checkpoint state. It holds no
optimizer and runs no step: the searches decide when to recover and what to adopt.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from ista.distributed.runtime import check_agreement
from ista.space.genotypes import CELL_TYPES, NODES, Genotype
from ista.sparse.broadcast import recover_on_rank0
from ista.sparse.measurement import Codes, check_same_measurements, draw_measurements
from ista.sparse.support import cell_weights, genotype_from_codes, node_maps

Node = tuple[str, int]  # (cell type, j)
CELL_NODES: tuple[Node, ...] = tuple((cell, j) for cell in CELL_TYPES for j in range(NODES))  # all 8
Z = dict[str, list[np.ndarray]]


def node_name(node: Node) -> str:
    return f"{node[0]}/{node[1]}"


class SparseCode:
    """A, b, z and the forward maps of the 8 searched nodes.

    Args:
        seed: draws A (and b, unless `initial` is given).
        draws: "streams" or "official" (`ista.sparse.measurement`).
        initial: the initial b per cell type (the official draws depend on how the network was built).
    """

    def __init__(
        self, seed: int, device: torch.device, *, lam: float, solver: str, draws: str, initial: Codes
    ):
        self.device, self.lam, self.solver, self.draws = device, lam, solver, draws
        self.A = draw_measurements(seed, draws)
        self.initial = {c: [b.detach().cpu().float().clone() for b in initial[c]] for c in CELL_TYPES}
        self.codes = {cell: [nn.Parameter(b.to(device)) for b in self.initial[cell]] for cell in CELL_TYPES}
        self.z: Z = {}
        self.maps: dict[str, list] = {}
        self.on_adopt: Callable[[SparseCode], None] = lambda code: None  # e.g. the super-net's new support

    def parameters(self) -> list[nn.Parameter]:
        return [self.codes[cell][j] for cell, j in CELL_NODES]

    def recover(self, nodes: Iterable[Node] = CELL_NODES) -> Z:
        """z with the given nodes re-solved by Eq. (9) on rank 0 and broadcast; the others as they are."""
        nodes = list(nodes)
        z: dict[str, list[np.ndarray | None]] = {
            cell: list(self.z.get(cell, [None] * NODES)) for cell in CELL_TYPES
        }
        solved = recover_on_rank0(
            [self.A[c][j] for c, j in nodes], [self.codes[c][j] for c, j in nodes], self.lam, self.solver
        )
        for (cell, j), z_j in zip(nodes, solved, strict=True):
            z[cell][j] = z_j
        return {cell: _recovered(cell, z[cell]) for cell in CELL_TYPES}

    def adopt(self, z: Z) -> None:
        """Makes z the current code: supports and forward-map constants. Then checks that every rank holds
        the same genotype (NNI users got one architecture per rank)."""
        self.z, self.maps = z, node_maps(self.A, z, self.device)
        check_agreement(self.genotype().to_text(), "genotype")
        self.on_adopt(self)

    def supports(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        normal, reduce = ([m.support for m in self.maps[cell]] for cell in CELL_TYPES)
        return normal, reduce

    def weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """w = A_Sᵀb − c per node (§2.5), as the two 98-entry vectors of the cell types, in fp32: the
        architecture is exact even when the network runs in reduced precision."""
        with torch.autocast(self.device.type, enabled=False):
            normal, reduce = (cell_weights(self.codes[cell], self.maps[cell]) for cell in CELL_TYPES)
        return normal, reduce

    def genotype(self, z: Z | None = None) -> Genotype:
        z = self.z if z is None else z
        return genotype_from_codes(z["normal"], z["reduce"])

    def record(self) -> dict[str, Any]:
        """The recovered z and supports, for the epoch's metrics line."""
        return {
            "z": {cell: [z.tolist() for z in self.z[cell]] for cell in CELL_TYPES},
            "support": {cell: [m.support.tolist() for m in self.maps[cell]] for cell in CELL_TYPES},
        }

    def drawn(self) -> dict[str, Any]:
        """What the seed drew (A and the initial b), for the run directory."""
        return {
            "draws": self.draws,
            "A": {cell: [a.tolist() for a in self.A[cell]] for cell in CELL_TYPES},
            "b": {cell: [b.tolist() for b in self.initial[cell]] for cell in CELL_TYPES},
        }

    def state_dict(self) -> dict[str, Any]:
        # A and the initial b are drawn once and saved, so a requeued job resumes the very same search.
        return {
            "A": as_tensors(self.A),
            "initial": self.initial,
            "codes": {cell: [b.detach().cpu() for b in self.codes[cell]] for cell in CELL_TYPES},
            "z": as_tensors(self.z),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_same_measurements(self.A, as_arrays(state["A"]))
        with torch.no_grad():
            for cell, j in CELL_NODES:
                self.codes[cell][j].copy_(state["codes"][cell][j])
        self.initial = state["initial"]
        self.adopt(as_arrays(state["z"]))


def _recovered(cell: str, z: list[np.ndarray | None]) -> list[np.ndarray]:
    """z of a cell type, every node recovered (now, or before: a first recovery must solve them all)."""
    recovered = [z_j for z_j in z if z_j is not None]
    if len(recovered) != len(z):
        missing = [j for j, z_j in enumerate(z) if z_j is None]
        raise RuntimeError(f"{cell} nodes {missing} were never recovered: recover all nodes first")
    return recovered


def as_tensors(arrays: Z) -> dict[str, list[torch.Tensor]]:
    """Per cell type, numpy arrays as tensors: what a checkpoint may hold (read with weights_only)."""
    return {cell: [torch.from_numpy(np.asarray(a)) for a in arrays[cell]] for cell in arrays}


def as_arrays(tensors: dict[str, list]) -> Z:
    """The inverse of `as_tensors` (format-2 checkpoints hold the arrays themselves)."""
    return {cell: [np.asarray(t) for t in tensors[cell]] for cell in tensors}
