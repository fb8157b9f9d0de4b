"""The DARTS cell search space: ops, cells, networks, genotypes and their counts."""

from ista.space.genotypes import PUBLISHED, Genotype, GenotypeError, load_genotype
from ista.space.networks import Network, build_eval_network, build_search_network
from ista.space.ops import PRIMITIVES

__all__ = [
    "PRIMITIVES",
    "PUBLISHED",
    "Genotype",
    "GenotypeError",
    "Network",
    "build_eval_network",
    "build_search_network",
    "load_genotype",
]
