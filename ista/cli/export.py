"""`ista export`: a trained run's network as a file that runs without ista, with its card beside it."""

from __future__ import annotations

import argparse
from pathlib import Path

from ista.model.export import CARD, FORMATS, RTOL, SUFFIXES


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(
        name,
        help="export a trained network to ONNX, torch.export (.pt2) or TorchScript",
        description="Writes the trained network of an `ista train` run (or a finished one-stage run) as a "
        f"file that takes any batch size, and a {CARD} card beside it (genotype, classes, input and its "
        "preprocessing, parameters, MACs, test accuracy, seed, versions). The file is loaded back and "
        f"checked against PyTorch's logits (relative and absolute tolerance {RTOL:g}) before it is kept.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="a finished `ista train` run directory")
    p.add_argument("--format", choices=FORMATS, required=True, help="onnx needs `pip install 'ista[export]'`")
    p.add_argument(
        "--out", type=Path, help=f"the file (default: RUN_DIR/model.{{{','.join(SUFFIXES.values())}}})"
    )


def run(args: argparse.Namespace) -> int:
    from ista.model.export import export
    from ista.model.load import load_model

    out = args.out or args.run_dir / f"model{SUFFIXES[args.format]}"
    card = export(load_model(args.run_dir), out, args.format)
    accuracy = "" if card["test_acc"] is None else f", test accuracy {card['test_acc']:.2%}"
    shape, difference = (
        "×".join(map(str, card["input"]["shape"])),
        card["exports"][args.format]["max_abs_difference"],
    )
    print(f"wrote {out} ({args.format}, input {shape}{accuracy}; off PyTorch by at most {difference:.2g})")
    print(f"card:  {out.parent / CARD}")
    return 0
