"""`ista params`: parameters and multiply-adds of genotypes' target networks."""

from __future__ import annotations

import argparse
import json

from ista.space.counting import measure
from ista.space.genotypes import PUBLISHED
from ista.space.networks import DATASETS


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(
        name,
        help="parameter count and multiply-adds of genotypes",
        description="Parameters (M, DARTS convention: auxiliary head excluded) and conv+linear "
        "multiply-adds (M) of each genotype's target network.",
    )
    p.add_argument(
        "genotypes",
        nargs="+",
        metavar="GENOTYPE",
        help=f"a published name ({', '.join(PUBLISHED)}), a JSON file, or the DARTS text Genotype(...)",
    )
    p.add_argument(
        "--dataset",
        choices=sorted(DATASETS),
        default="cifar10",
        help="cifar10: 20 cells, C=36, 32×32; imagenet: 14 cells, C=48, 224×224",
    )
    p.add_argument(
        "--onestage",
        action="store_true",
        help="the one-stage variant with a BN after every parameter-free op",
    )
    p.add_argument("--channels", type=int, help="initial channels C (default: the paper's for the dataset)")
    p.add_argument("--layers", type=int, help="number of cells (default: the paper's for the dataset)")
    p.add_argument("--json", action="store_true", help="one JSON object per genotype, one per line")


def run(args: argparse.Namespace) -> int:
    rows = [measure(g, args.dataset, args.onestage, args.channels, args.layers) for g in args.genotypes]
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    from rich.console import Console
    from rich.table import Table

    variant = " one-stage (BN after parameter-free ops)" if args.onestage else ""
    table = Table(title=f"{args.dataset}{variant}: {rows[0]['layers']} cells, C={rows[0]['channels']}")
    for column in ("genotype", "params (M)", "MACs (M)"):
        table.add_column(column, justify="left" if column == "genotype" else "right")
    for row in rows:
        name = row["genotype"] if len(row["genotype"]) <= 40 else row["genotype"][:37] + "..."
        table.add_row(name, f"{row['params_m']:.6f}", f"{row['macs_m']:.1f}")
    Console().print(table)
    return 0
