"""First-order DARTS on the same super-net: the dense baseline (Liu et al., 2019; method.md §11.10).

Every edge mixes all 7 candidate ops with softmax(α) weights, so all 98 candidates of a cell run. The
genotype keeps, per node, the two edges whose strongest op weighs most, each with that op (DARTS's rule).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ista.config.schema import RunConfig
from ista.space.encoding import NODE_OFFSETS
from ista.space.genotypes import CELL_TYPES, NODES, Genotype
from ista.space.ops import NUM_OPS, PRIMITIVES
from ista.sparse.code import SparseCode
from ista.train.step import Method, Weights

EDGES = sum(j + 2 for j in range(NODES))  # 14


class Darts(Method):
    @classmethod
    def build(
        cls, config: RunConfig, model: nn.Module, code: SparseCode | None, device: torch.device
    ) -> Method:
        return cls(config, model, device)

    def __init__(self, config: RunConfig, model: nn.Module, device: torch.device):
        super().__init__(config, model)
        g = torch.Generator().manual_seed(config.seed)
        self.alphas = {
            cell: nn.Parameter((1e-3 * torch.randn(EDGES, NUM_OPS, generator=g)).to(device))
            for cell in CELL_TYPES
        }

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alphas[cell] for cell in CELL_TYPES]

    def arch_weights(self) -> Weights:
        normal, reduce = (torch.softmax(self.alphas[cell], dim=-1).flatten() for cell in CELL_TYPES)
        return normal, reduce

    def genotype(self) -> Genotype:
        cells = []
        for cell in CELL_TYPES:
            weights = torch.softmax(self.alphas[cell].detach().cpu(), dim=-1)
            pairs = []
            for j in range(NODES):
                first = NODE_OFFSETS[j] // NUM_OPS
                rows = weights[first : first + j + 2]  # edges into node j
                strongest = rows.max(dim=1).values.argsort(descending=True, stable=True)[:2]
                pairs += [(PRIMITIVES[int(rows[i].argmax())], int(i)) for i in strongest]
            cells.append(pairs)
        return Genotype(
            tuple(cells[0]), tuple(range(2, 2 + NODES)), tuple(cells[1]), tuple(range(2, 2 + NODES))
        )

    def end_epoch(self, epoch: int) -> dict[str, Any]:
        return {
            "alphas": {cell: self.alphas[cell].detach().cpu().tolist() for cell in CELL_TYPES},
            "genotype": self.genotype().to_dict(),
        }

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "alphas": {c: a.detach().cpu() for c, a in self.alphas.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        with torch.no_grad():
            for cell in CELL_TYPES:
                self.alphas[cell].copy_(state["alphas"][cell])
