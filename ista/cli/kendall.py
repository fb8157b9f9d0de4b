"""`ista kendall X.json Y.json`: Kendall's τ of two paired lists (the paper's consistency measure)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(
        name,
        help="Kendall's tau of two paired lists of numbers (JSON files)",
        description="τ-a exactly as the supplement's eq. (1), τ-b when there are ties, and a p-value.",
    )
    p.add_argument("x", type=Path, help="a JSON list of numbers, e.g. super-net held-out accuracies")
    p.add_argument("y", type=Path, help="a JSON list of the same length, paired by position")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _numbers(path: Path) -> list[float]:
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not JSON: {err}") from None
    if not isinstance(values, list) or not all(isinstance(v, int | float) for v in values):
        raise ValueError(f"{path} must hold a JSON list of numbers")
    return values


def run(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from ista.report.kendall import kendall

    result = kendall(_numbers(args.x), _numbers(args.y))
    if args.json:
        print(json.dumps(asdict(result)))
        return 0
    print(f"Kendall tau-a = {result.tau_a:+.4f} over {result.n} pairs "
          f"({result.concordant} concordant, {result.discordant} discordant)")  # fmt: skip
    if result.tied_x or result.tied_y:
        print(f"tau-b = {result.tau_b:+.4f} (ties: {result.tied_x} pairs in x, {result.tied_y} in y)")
    print(f"p-value (tau = 0) = {result.p_value:.4g}")
    return 0
