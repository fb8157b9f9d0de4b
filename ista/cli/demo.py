"""`ista demo`: a complete small search on real digits that ship with scikit-learn, on the CPU."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ista.cli.search import add_config_arguments, resolve


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(
        name,
        help="a complete small two-stage search on real data, in about two minutes",
        description="Two-stage ISTA-NAS on scikit-learn's 1,797 real 8×8 handwritten digits.",
    )
    add_config_arguments(p, "demo")
    p.add_argument("--out", type=Path, help="run directory (default: runs/demo-DATE-TIME)")


def run(args: argparse.Namespace) -> int:
    config = resolve(args)
    if args.print_config:
        return 0
    from rich.console import Console

    from ista import runner
    from ista.space.counting import count_params_m
    from ista.space.networks import build_eval_network

    out = args.out or Path("runs") / time.strftime("demo-%Y%m%d-%H%M%S")
    console = Console(soft_wrap=True)  # in a log file, long lines stay whole
    console.print(
        f"[bold]ista demo[/]: {config.method} search, {config.epochs} epochs on real 8×8 digits → {out}"
    )
    started = time.perf_counter()
    result = runner.run(config, out)
    last = result.history[-1]
    params = count_params_m(build_eval_network(result.genotype, "cifar", auxiliary=True))
    console.print(f"\n[bold]Found genotype[/] (after {time.perf_counter() - started:.0f} s):")
    console.print(result.genotype.to_text(), highlight=False)
    console.print(f"held-out accuracy of the super-net: [bold]{last['valid_acc']:.1%}[/] (chance: 10%)")
    console.print(f"target network (CIFAR-10, 20 cells, C=36): {params:.6f} M parameters")
    console.print(f"run directory: {result.run_dir}  (config.json, metrics.jsonl, genotype.json, env.json)")
    console.print(f"cell picture:  {result.run_dir / 'genotype.png'}")
    return 0
