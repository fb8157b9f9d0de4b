"""The two ways NAS papers turn several searches into one number (method.md §5; field notes §2b).

- **Best-of-k** (the paper's, supplement §1.2): run k searches, keep the genotype whose super-net has the
  highest held-out accuracy at the end of search, train it from scratch with several seeds, report the
  mean ± std of those trainings.
- **Mean over independent searches** (ROME's rerun of ISTA-NAS): evaluate every search's genotype and
  report the mean ± std over searches, which also carries the search's own variance.

Selection uses the held-out half only; the test split never chooses anything.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

from ista.report.runs import SEARCHES, TRAININGS, RunRecord

RULE = (
    "the highest super-net held-out accuracy (valid_acc) after the last search epoch, among the finished "
    "searches; a tie goes to the lowest seed"
)


@dataclass(frozen=True)
class Selection:
    source: str
    seed: int
    valid_acc: float
    genotype: str
    fingerprint: str
    k: int  # finished searches it was chosen from
    seeds: tuple[int, ...]  # the seeds of those searches
    left_out: tuple[str, ...]  # seeds not finished, with their state
    rule: str = RULE

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        text = (
            f"best of k={self.k} searches in {self.source}: seed {self.seed} "
            f"(held-out {self.valid_acc:.2%}), genotype {self.fingerprint}; rule: {self.rule}"
        )
        return text + (f"; not finished, left out: {', '.join(self.left_out)}" if self.left_out else "")


def best_of_k(runs: list[RunRecord], source: str | Path) -> Selection:
    """The paper's choice among `runs`, the seeds of one search experiment."""
    methods = {r.method for r in runs if r.method}
    if methods and not methods <= set(SEARCHES):
        raise ValueError(
            f"{source} holds {', '.join(sorted(methods))} runs; best-of-k selects among two-stage searches "
            "(ista, darts), which have a held-out half. One-stage runs are their own evaluation."
        )
    finished = {i: s for i, r in enumerate(runs) if (s := _finished(r))}
    if not finished:
        states = ", ".join(f"seed {r.seed}: {r.state}" for r in runs) or "no seeds"
        raise ValueError(f"no finished search in {source} to choose from ({states})")
    best = max(finished.values(), key=lambda s: (s.valid_acc, -s.seed))
    return Selection(
        source=str(source),
        seed=best.seed,
        valid_acc=best.valid_acc,
        genotype=best.genotype,
        fingerprint=best.fingerprint,
        k=len(finished),
        seeds=tuple(s.seed for s in finished.values()),
        left_out=tuple(f"{r.seed} ({r.state})" for i, r in enumerate(runs) if i not in finished),
    )


class _Finished(NamedTuple):
    seed: int
    valid_acc: float
    genotype: str
    fingerprint: str


def _finished(r: RunRecord) -> _Finished | None:
    """A finished search, with what the choice reads (a finished run of an experiment has them all)."""
    if r.state != "done" or r.valid_acc is None or not r.genotype or r.seed is None or r.fingerprint is None:
        return None
    return _Finished(r.seed, r.valid_acc, r.genotype, r.fingerprint)


@dataclass(frozen=True)
class Estimate:
    """mean ± std (sample standard deviation, n − 1) of n numbers."""

    mean: float
    std: float | None
    n: int

    def percent(self) -> str:
        std = f"{100 * self.std:.2f}" if self.std is not None else "–"
        return f"{100 * self.mean:.2f} ± {std} % (n={self.n})"


def estimate(values: list[float]) -> Estimate | None:
    if not values:
        return None
    return Estimate(
        statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None, len(values)
    )


def evaluations(runs: list[RunRecord]) -> dict[str, list[float]]:
    """Test errors of finished evaluation trainings, by genotype fingerprint."""
    found: dict[str, list[float]] = {}
    for r in runs:
        if r.method in TRAININGS and r.state == "done" and r.test_err is not None and r.fingerprint:
            found.setdefault(r.fingerprint, []).append(r.test_err)
    return found


def mean_over_searches(
    searches: list[RunRecord], evaluated: dict[str, list[float]]
) -> tuple[Estimate | None, int]:
    """ROME's protocol: each finished search counts once, with the mean test error of its genotype's
    evaluations. Returns the estimate (None unless every finished search was evaluated) and how many were."""
    finished = [r for r in searches if r.state == "done" and r.fingerprint]
    errors = [statistics.fmean(evaluated[r.fingerprint]) for r in finished if r.fingerprint in evaluated]
    complete = bool(finished) and len(errors) == len(finished)
    return (estimate(errors) if complete else None), len(errors)
