"""Sparse coding: measurement matrices, exact LASSO recovery, supports, the forward map, rank-0 broadcast."""

from ista.sparse.broadcast import recover, recover_on_rank0
from ista.sparse.errors import SolverError
from ista.sparse.lasso import LAMBDA, SOLVERS, solve_lasso
from ista.sparse.measurement import M, draw_measurements, init_codes
from ista.sparse.support import SPARSITY, NodeMap, cell_weights, genotype_from_codes, top_support

__all__ = [
    "LAMBDA",
    "SOLVERS",
    "SPARSITY",
    "M",
    "NodeMap",
    "SolverError",
    "cell_weights",
    "draw_measurements",
    "genotype_from_codes",
    "init_codes",
    "recover",
    "recover_on_rank0",
    "solve_lasso",
    "top_support",
]
