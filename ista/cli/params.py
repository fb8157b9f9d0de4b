"""`ista params`: parameters and multiply-adds of genotypes' target networks."""

from __future__ import annotations

import argparse
import json

from ista.data.datasets import DATASETS, stem_for
from ista.space.counting import measure
from ista.space.genotypes import PUBLISHED


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
        choices=list(DATASETS),
        default="cifar10",
        help="its classes, image side and channels decide the classifier and the stem (up to 64 px: CIFAR's, "
        "20 cells at C=36; larger: ImageNet's, 14 cells at C=48); `folder` needs --classes and --size",
    )
    p.add_argument("--classes", type=int, help="number of classes (default: the data set's)")
    p.add_argument("--size", type=int, help="image side in px (default: the data set's)")
    p.add_argument(
        "--in-channels", type=int, choices=(1, 3), help="1 for greyscale (default: the data set's)"
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
    declared = DATASETS[args.dataset]
    classes, size = args.classes or declared.num_classes, args.size or declared.size
    if not classes or not size:
        raise SystemExit(
            f"ista params: --dataset {args.dataset} reads its classes and image side from the data; "
            "give --classes and --size"
        )
    in_channels = args.in_channels or declared.channels or 3
    rows = [measure(g, stem_for(size), classes, size, in_channels, args.onestage, args.channels, args.layers)
            for g in args.genotypes]  # fmt: skip
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    from rich.console import Console
    from rich.table import Table

    variant = " one-stage (BN after parameter-free ops)" if args.onestage else ""
    shape = f"{classes} classes, {size}×{size}×{in_channels}, {rows[0]['stem']} stem"
    table = Table(
        title=f"{args.dataset} ({shape}){variant}: {rows[0]['layers']} cells, C={rows[0]['channels']}"
    )
    for column in ("genotype", "params (M)", "MACs (M)"):
        table.add_column(column, justify="left" if column == "genotype" else "right")
    for row in rows:
        name = row["genotype"] if len(row["genotype"]) <= 40 else row["genotype"][:37] + "..."
        table.add_row(name, f"{row['params_m']:.6f}", f"{row['macs_m']:.1f}")
    Console().print(table)
    return 0
