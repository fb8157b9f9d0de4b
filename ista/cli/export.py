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
    p.add_argument(
        "--format",
        nargs="+",
        choices=FORMATS,
        required=True,
        help="one or more; onnx needs `pip install 'ista[export]'`",
    )
    p.add_argument(
        "--out",
        type=Path,
        help="the file, with one format; the folder, with several (default: RUN_DIR), holding "
        f"model{{{','.join(SUFFIXES.values())}}}",
    )


def run(args: argparse.Namespace) -> int:
    from ista.model.export import export
    from ista.model.load import load_model

    formats = list(dict.fromkeys(args.format))
    if len(formats) == 1 and args.out:
        outputs = {formats[0]: args.out}
    else:
        outputs = {f: (args.out or args.run_dir) / f"model{SUFFIXES[f]}" for f in formats}
    card = export(load_model(args.run_dir), outputs)
    accuracy = "" if card["test_acc"] is None else f", test accuracy {card['test_acc']:.2%}"
    shape = "×".join(map(str, card["input"]["shape"]))
    for fmt, out in outputs.items():
        difference = card["exports"][fmt]["max_abs_difference"]
        print(f"wrote {out} ({fmt}, input {shape}{accuracy}; off PyTorch by at most {difference:.2g})")
    for folder in dict.fromkeys(Path(out).parent for out in outputs.values()):
        print(f"card:  {folder / CARD}")
    return 0
