"""Evaluation cells (a fixed genotype) and the sparse search cell (all 98 candidates, few run).

Both cells take the outputs of the two previous cells, build 4 intermediate nodes and concatenate them
(method.md §11.2). In a reduction cell the ops reading the cell inputs have stride 2.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from ista.distributed.sync_bn import run_together
from ista.space.encoding import (
    CODE_SIZE,
    DENSE_SUPPORT,
    NODE_OFFSETS,
    NODE_SIZES,
    NodeSupports,
    decode,
    flat_indices,
)
from ista.space.genotypes import NODES, Genotype
from ista.space.ops import FactorizedReduce, ReLUConvBN, build_op, drop_path


def _preprocess(
    c_pp: int, c_p: int, c: int, reduction_prev: bool, affine: bool
) -> tuple[nn.Module, nn.Module]:
    pre0 = FactorizedReduce(c_pp, c, affine) if reduction_prev else ReLUConvBN(c_pp, c, 1, 1, 0, affine)
    return pre0, ReLUConvBN(c_p, c, 1, 1, 0, affine)


def _maybe_drop(op: nn.Module, h: torch.Tensor, drop_prob: float, training: bool) -> torch.Tensor:
    # DARTS exempts bare Identity skips from drop-path; BN-wrapped skips (one-stage nets) are dropped.
    if training and drop_prob > 0 and not isinstance(op, nn.Identity):
        return drop_path(h, drop_prob)
    return h


class EvalCell(nn.Module):
    """A cell of the target network: node k+2 = op_2k(state) + op_2k+1(state)."""

    def __init__(
        self,
        genotype: Genotype,
        c_pp: int,
        c_p: int,
        c: int,
        reduction: bool,
        reduction_prev: bool,
        onestage: bool = False,
    ):
        super().__init__()
        self.reduction = reduction
        self.preprocess0, self.preprocess1 = _preprocess(c_pp, c_p, c, reduction_prev, affine=True)
        pairs = genotype.reduce if reduction else genotype.normal
        self.concat = genotype.reduce_concat if reduction else genotype.normal_concat
        self.multiplier = len(self.concat)
        self.indices = [index for _, index in pairs]
        bn = "onestage" if onestage else "none"
        self.ops = nn.ModuleList(
            build_op(op, c, 2 if reduction and index < 2 else 1, bn_after_free=bn) for op, index in pairs
        )

    def forward(
        self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor | None = None, drop_prob: float = 0.0
    ) -> torch.Tensor:
        states = run_together([self.preprocess0, self.preprocess1], [s0, s1])
        for node in range(len(self.ops) // 2):
            pair = (2 * node, 2 * node + 1)
            outs = run_together([self.ops[p] for p in pair], [states[self.indices[p]] for p in pair])
            out: torch.Tensor | int = 0
            for p, h in zip(pair, outs, strict=True):
                out = out + _maybe_drop(self.ops[p], h, drop_prob, self.training)
            states.append(cast(torch.Tensor, out))  # a sum of two ops' outputs
        return torch.cat([states[i] for i in self.concat], dim=1)


class SearchCell(nn.Module):
    """Holds all 98 (input, op) candidates but runs only the active ones (method.md §2.5).

    The active set is given as index lists once per recovery (`set_support`), not read from the weights,
    so the forward pass does no per-op `w != 0` test and no host sync. Node j+2 is
    h = Σ_{k ∈ S_j} w_k · op_{k mod 7}(h_{k div 7}).
    """

    def __init__(
        self,
        c_pp: int,
        c_p: int,
        c: int,
        reduction: bool,
        reduction_prev: bool,
        affine: bool = False,
        bn_after_free: str = "search",
    ):
        super().__init__()
        self.reduction = reduction
        self.multiplier = NODES
        self.preprocess0, self.preprocess1 = _preprocess(c_pp, c_p, c, reduction_prev, affine)
        ops = []
        for size in NODE_SIZES:
            for k in range(size):  # module position = flat index into the 98-entry code
                op, index = decode(k)
                stride = 2 if reduction and index < 2 else 1
                ops.append(build_op(op, c, stride, affine=affine, bn_after_free=bn_after_free))
        self.ops = nn.ModuleList(ops)
        self.set_support(DENSE_SUPPORT)

    def set_support(self, supports: NodeSupports) -> None:
        """Per node, the local indices k of z_j whose ops run (all 98 = the dense super-net)."""
        flat = flat_indices(supports)
        empty = [j for j, f in enumerate(flat) if not f]
        if empty:
            raise ValueError(f"nodes {empty} have an empty support; every node needs at least one op")
        # (flat index, input state) per active candidate; plain ints, so the forward never syncs.
        self.active: list[list[tuple[int, int]]] = [
            [(f, decode(f - NODE_OFFSETS[j])[1]) for f in node_flat] for j, node_flat in enumerate(flat)
        ]

    def forward(
        self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor | None = None, drop_prob: float = 0.0
    ) -> torch.Tensor:
        if weights is None or weights.shape != (CODE_SIZE,):
            got = None if weights is None else tuple(weights.shape)
            raise ValueError(f"a search cell needs a weight vector of shape ({CODE_SIZE},), got {got}")
        states = run_together([self.preprocess0, self.preprocess1], [s0, s1])
        for node_active in self.active:
            ops = [self.ops[f] for f, _ in node_active]
            outs = run_together(ops, [states[index] for _, index in node_active])
            out: torch.Tensor | int = 0
            for (f, _), op, h in zip(node_active, ops, outs, strict=True):
                out = out + weights[f] * _maybe_drop(op, h, drop_prob, self.training)
            states.append(cast(torch.Tensor, out))  # every node has an op (`set_support` checks)
        return torch.cat(states[2:], dim=1)
