"""`ista kendall`: Kendall's τ of two paired lists, or the paper's super-net/evaluation consistency study."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(
        name,
        help="Kendall's tau of two paired lists, or of super-net vs evaluated accuracy over searches",
        description="τ-a exactly as the supplement's eq. (1), τ-b when there are ties, and a p-value. With "
        "--experiment: the consistency study, super-net held-out accuracy at the end of each search against "
        "the test accuracy of its genotype trained from scratch (runs given with --evaluations).",
    )
    p.add_argument("x", type=Path, nargs="?", help="a JSON list of numbers, e.g. super-net accuracies")
    p.add_argument("y", type=Path, nargs="?", help="a JSON list of the same length, paired by position")
    p.add_argument(
        "--experiment",
        type=Path,
        action="append",
        default=[],
        metavar="SEARCH_EXPERIMENT",
        help="a search experiment (ista launch); repeat for several methods, e.g. ISTA-NAS and DARTS",
    )
    p.add_argument(
        "--evaluations",
        type=Path,
        nargs="+",
        default=[],
        metavar="DIR",
        help="experiments or run directories of evaluation trainings, matched to searches by genotype "
        "(default: every one in the folders that hold the search experiments)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")


def _numbers(path: Path) -> list[float]:
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not JSON: {err}") from None
    if not isinstance(values, list) or not all(isinstance(v, int | float) for v in values):
        raise ValueError(f"{path} must hold a JSON list of numbers")
    return values


def run(args: argparse.Namespace) -> int:
    from ista.report.kendall import kendall

    if args.experiment:
        if args.x or args.y:
            raise ValueError("give either two JSON lists or --experiment, not both")
        return _study(args)
    if not (args.x and args.y):
        raise ValueError("give two JSON lists X.json Y.json, or --experiment SEARCH_EXPERIMENT")
    result = kendall(_numbers(args.x), _numbers(args.y))
    if args.json:
        print(json.dumps(asdict(result)))
        return 0
    for line in describe(result):
        print(line)
    return 0


def describe(result) -> list[str]:
    lines = [f"Kendall tau-a = {result.tau_a:+.4f} over {result.n} pairs "
             f"({result.concordant} concordant, {result.discordant} discordant)"]  # fmt: skip
    if result.tied_x or result.tied_y:
        lines.append(f"tau-b = {result.tau_b:+.4f} (ties: {result.tied_x} pairs in x, {result.tied_y} in y)")
    lines.append(f"p-value (tau = 0) = {result.p_value:.4g}")
    return lines


def _study(args: argparse.Namespace) -> int:
    from ista.launch.status import seed_states
    from ista.report.kendall import consistency
    from ista.report.protocols import evaluations
    from ista.report.summary import collect

    places = args.evaluations or list(dict.fromkeys(e.resolve().parent for e in args.experiment))
    evaluated = evaluations([run for _, _, run in collect(places, seed_states)])
    studies = []
    for experiment in args.experiment:
        searches = [run for _, _, run in collect([experiment], seed_states)]
        studies.append(consistency(str(experiment), searches, evaluated))
    if args.json:
        print(json.dumps([asdict(s) for s in studies], indent=2))
        return 0
    for s in studies:
        print(f"{s.source} ({s.method}): {len(s.seeds)} searches with evaluated genotypes")
        for seed, x, y in zip(s.seeds, s.supernet_acc, s.evaluated_acc, strict=True):
            print(f"  seed {seed}: super-net held-out {x:.2%}, evaluated test {y:.2%}")
        if s.unevaluated:
            print(f"  not evaluated (no finished training of their genotype): seeds {s.unevaluated}")
        for line in describe(s.tau) if s.tau else ["fewer than 2 evaluated searches: no tau"]:
            print(f"  {line}")
    return 0
