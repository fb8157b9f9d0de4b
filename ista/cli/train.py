"""`ista train`: evaluation training of a genotype's target network (method.md §4, §7)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ista.cli.search import add_config_arguments, print_result, resolve
from ista.config import PRESETS
from ista.methods import METHODS
from ista.rundir.files import SELECTION

TRAIN_PRESETS = sorted(name for name, config in PRESETS.items() if METHODS[config.method].trains_genotype)


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(
        name,
        help="train a genotype's target network from scratch (evaluation)",
        description="Trains the target network of a genotype and reports its final test error; writes a "
        "run directory (re-running on it resumes).",
    )
    p.add_argument(
        "--genotype",
        required=True,
        help="a published name, a JSON/text file, the text, or best:EXPERIMENT (the best-of-k genotype of "
        "a search experiment)",
    )
    add_config_arguments(p, None, TRAIN_PRESETS, "cifar10-eval (§4) or imagenet-eval (§7)")
    p.add_argument(
        "--onestage", action="store_true", help="the one-stage variant: a BN after every parameter-free op"
    )
    p.add_argument("--out", type=Path, help="run directory")
    p.add_argument("--resume", action="store_true", help="require a checkpoint in --out and continue from it")
    p.add_argument("--quiet", action="store_true", help="no progress display")


def run(args: argparse.Namespace) -> int:
    from ista.selection import choose_genotype

    genotype, selection = choose_genotype(args.genotype)
    if selection:
        print(f"genotype: {selection.describe()}")
    extra = (f"genotype={genotype}", *(["network.onestage=true"] if args.onestage else []))
    config = resolve(args, extra)
    if args.print_config:
        return 0
    if args.out is None:
        raise ValueError("--out RUN_DIR is required")
    from ista import runner

    files = {SELECTION: selection.to_dict()} if selection else {}  # how the genotype was chosen
    print_result(runner.run(config, args.out, resume=args.resume, show_progress=not args.quiet, files=files))
    return 0
