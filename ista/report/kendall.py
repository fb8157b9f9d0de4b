"""Kendall's rank correlation as the paper's supplement defines it (§2, eq. 1), with τ-b and a p-value.

τ-a = Σ_{i<j} sign(x_i − x_j)·sign(y_i − y_j) / C(N, 2): no correction for ties, as in the paper. With
ties τ-a cannot reach ±1, so τ-b = (n_c − n_d) / √((n_0 − n_x)(n_0 − n_y)) is reported beside it
(n_x, n_y: pairs tied in x, in y). The p-value is SciPy's test of τ-b = 0 (exact for small N without
ties, asymptotic otherwise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Kendall:
    n: int
    tau_a: float
    tau_b: float
    p_value: float
    concordant: int
    discordant: int
    tied_x: int
    tied_y: int


def kendall(x, y) -> Kendall:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"need two lists of numbers of the same length, got {x.shape} and {y.shape}")
    if len(x) < 2 or not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("need at least 2 pairs of finite numbers")
    upper = np.triu_indices(len(x), 1)  # the pairs i < j
    sx = np.sign(x[:, None] - x[None, :])[upper]
    sy = np.sign(y[:, None] - y[None, :])[upper]
    product = sx * sy
    pairs = len(product)
    concordant, discordant = int((product > 0).sum()), int((product < 0).sum())
    tied_x, tied_y = int((sx == 0).sum()), int((sy == 0).sum())
    denominator = math.sqrt((pairs - tied_x) * (pairs - tied_y))
    tau_b = (concordant - discordant) / denominator if denominator else float("nan")
    from scipy.stats import kendalltau

    p_value = float(kendalltau(x, y).pvalue) if denominator else float("nan")
    return Kendall(len(x), (concordant - discordant) / pairs, tau_b, p_value, concordant, discordant, tied_x,
                   tied_y)  # fmt: skip


@dataclass(frozen=True)
class Consistency:
    """The paper's consistency study for one search experiment (method.md §8): x = the super-net's held-out
    accuracy at the end of each search, y = the test accuracy of that search's genotype, trained from
    scratch (the mean over its evaluation runs)."""

    source: str
    method: str
    seeds: list[int]
    supernet_acc: list[float]
    evaluated_acc: list[float]
    unevaluated: list[int]  # finished searches whose genotype has no finished evaluation among the runs
    tau: Kendall | None  # None with fewer than 2 pairs


def consistency(source: str, searches, evaluated: dict[str, list[float]]) -> Consistency:
    """`searches`: RunRecords of one experiment; `evaluated`: test errors by genotype fingerprint."""
    pairs, unevaluated = [], []
    for run in searches:
        if run.state != "done" or run.valid_acc is None:
            continue
        if run.fingerprint in evaluated:
            errors = evaluated[run.fingerprint]
            pairs.append((run.seed, run.valid_acc, 1 - sum(errors) / len(errors)))
        else:
            unevaluated.append(run.seed)
    seeds, x, y = (list(column) for column in zip(*pairs, strict=True)) if pairs else ([], [], [])
    methods = sorted({run.method for run in searches if run.method})
    tau = kendall(x, y) if len(pairs) >= 2 else None
    return Consistency(source, "+".join(methods), seeds, x, y, unevaluated, tau)
