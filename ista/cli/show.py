"""`ista show`: a picture of a genotype's normal and reduction cells."""

from __future__ import annotations

import argparse
from pathlib import Path

from ista.space.genotypes import PUBLISHED, load_genotype


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(
        name,
        help="draw a genotype's cells to PNG/SVG/PDF",
        description="Draws the normal and the reduction cell of a genotype as graphs.",
    )
    p.add_argument(
        "genotype",
        metavar="GENOTYPE",
        help=f"a published name ({', '.join(PUBLISHED)}), a JSON file, or the DARTS text Genotype(...)",
    )
    p.add_argument("-o", "--output", type=Path, required=True, help="FILE.png, FILE.svg or FILE.pdf")
    p.add_argument("--title", help="figure title (default: the genotype's name)")


def run(args: argparse.Namespace) -> int:
    from ista.report.cell_plot import save_genotype_figure

    genotype = load_genotype(args.genotype)
    title = args.title or (args.genotype if args.genotype in PUBLISHED else Path(args.genotype).name[:60])
    path = save_genotype_figure(genotype, args.output, title)
    print(f"wrote {path}")
    return 0
