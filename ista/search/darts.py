"""First-order DARTS on the same super-net: the dense baseline (Liu et al., 2019; method.md §11.10).

Every edge mixes all 7 candidate ops with softmax(α) weights, so all 98 candidates of a cell run. The
genotype keeps, per node, the two edges whose strongest op weighs most, each with that op (DARTS's rule).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ista.config.schema import RunConfig
from ista.search.bilevel import BilevelSearch, Weights
from ista.space.encoding import NODE_OFFSETS
from ista.space.genotypes import NODES, Genotype
from ista.space.ops import NUM_OPS, PRIMITIVES
from ista.sparse.measurement import CELL_TYPES

EDGES = sum(j + 2 for j in range(NODES))  # 14


class DartsSearch(BilevelSearch):
    def __init__(self, config: RunConfig, model: nn.Module, device: torch.device):
        g = torch.Generator().manual_seed(config.seed)
        self.alphas = {
            cell: nn.Parameter((1e-3 * torch.randn(EDGES, NUM_OPS, generator=g)).to(device))
            for cell in CELL_TYPES
        }
        super().__init__(config, model, [self.alphas[cell] for cell in CELL_TYPES])

    def arch_weights(self) -> Weights:
        normal, reduce = (torch.softmax(self.alphas[cell], dim=-1).flatten() for cell in CELL_TYPES)
        return normal, reduce

    def genotype(self) -> Genotype:
        cells = []
        for cell in CELL_TYPES:
            weights = torch.softmax(self.alphas[cell].detach().cpu(), dim=-1)
            pairs = []
            for j in range(NODES):
                rows = weights[
                    NODE_OFFSETS[j] // NUM_OPS : NODE_OFFSETS[j] // NUM_OPS + j + 2
                ]  # edges into node j
                strongest = rows.max(dim=1).values.argsort(descending=True, stable=True)[:2]
                pairs += [(PRIMITIVES[int(rows[i].argmax())], int(i)) for i in strongest]
            cells.append(pairs)
        return Genotype(cells[0], range(2, 2 + NODES), cells[1], range(2, 2 + NODES))

    def end_epoch(self, epoch: int) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "alphas": {cell: self.alphas[cell].detach().cpu().tolist() for cell in CELL_TYPES},
            "genotype": self.genotype().to_dict(),
        }
