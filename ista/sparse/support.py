"""Support selection, the code-to-weights forward map and the genotype of a code (method.md §2.4–§2.8).

Between two recoveries the support S_j and the constants A_S, c = (A_SᵀA_S − I) z_S are fixed, and the
super-net's architecture weights are a linear function of the live parameter b_j:

    w_S = z_S + A_Sᵀ(b − A_S z_S) = A_Sᵀ b − c,    w = 0 off S,

one ISTA step with unit step size and no shrinkage from z_S. Autograd then gives ∂L/∂b = A_S ∂L/∂w_S;
nothing flows through the LASSO or the support choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ista.space.encoding import genotype_from_supports
from ista.space.genotypes import Genotype

SPARSITY = 2  # s_j: (input, op) pairs kept per node


def top_support(z: np.ndarray, s: int = SPARSITY) -> np.ndarray:
    """Indices of the s largest |z|, in ascending order of magnitude (largest last, as the paper's code).

    Ties are broken deterministically: of two equal magnitudes, the higher index ranks higher.
    """
    z = np.asarray(z)
    if z.ndim != 1 or not 0 < s <= z.size:
        raise ValueError(f"need a 1-D code with at least s={s} entries, got shape {z.shape}")
    return np.argsort(np.abs(z), kind="stable")[-s:]


@dataclass(frozen=True)
class NodeMap:
    """The constants of one node's forward map between two recoveries."""

    support: np.ndarray  # (s,) local indices k into z_j
    index: torch.Tensor  # the same on the device, so the forward map never copies from the host
    A_S: torch.Tensor  # (m, s) the support columns of A_j
    offset: torch.Tensor  # (s,) c = (A_SᵀA_S − I) z_S
    size: int  # n_j

    @classmethod
    def from_code(
        cls, A: np.ndarray, z: np.ndarray, s: int = SPARSITY, dtype=torch.float32, device=None
    ) -> NodeMap:
        support = top_support(z, s)
        A_S = A[:, support]
        offset = (A_S.T @ A_S - np.eye(len(support))) @ z[support]  # in float64, then cast
        as_tensor = lambda x: torch.as_tensor(x, dtype=dtype, device=device)  # noqa: E731
        index = torch.as_tensor(support, device=device)
        return cls(support, index, as_tensor(A_S), as_tensor(offset), A.shape[1])

    def weights(self, b: torch.Tensor) -> torch.Tensor:
        """w_j ∈ R^{n_j}: A_Sᵀb − c on the support, 0 elsewhere; differentiable in b."""
        w_S = self.A_S.T @ b - self.offset
        return torch.zeros(self.size, dtype=w_S.dtype, device=w_S.device).scatter(0, self.index, w_S)


def node_maps(A: dict, z: dict, device=None) -> dict[str, list[NodeMap]]:
    """Per cell type, the forward maps of its nodes for the recovered codes z."""
    return {
        cell: [NodeMap.from_code(a, code, device=device) for a, code in zip(A[cell], z[cell], strict=True)]
        for cell in A
    }


def cell_weights(codes: Sequence[torch.Tensor], maps: Sequence[NodeMap]) -> torch.Tensor:
    """The 98-entry weight vector of a cell type (nodes concatenated), as `SearchCell` takes it."""
    return torch.cat([node_map.weights(b) for b, node_map in zip(codes, maps, strict=True)])


def genotype_from_codes(
    normal: Sequence[np.ndarray], reduce: Sequence[np.ndarray], s: int = SPARSITY
) -> Genotype:
    """Top-s |z_j| per node as (op, input) pairs, second largest first (§2.8)."""
    return genotype_from_supports([top_support(z, s) for z in normal], [top_support(z, s) for z in reduce])
