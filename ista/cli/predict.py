"""`ista predict`: classify image files with a trained run's network and its own preprocessing."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(
        name,
        help="classify image files with a trained network",
        description="Classifies image files (and every file under folders) with the trained network of an "
        "`ista train` run, each seen as the run's test images were. A file that is no image is named and "
        "skipped; the exit status is then 1.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="a finished `ista train` run directory")
    p.add_argument("images", metavar="IMAGE_OR_FOLDER", nargs="+", type=Path)
    p.add_argument(
        "--top-k", type=int, default=1, metavar="K", help="the K most probable classes (default 1)"
    )
    p.add_argument("--json", action="store_true", help="one JSON object per file, one per line")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")


def run(args: argparse.Namespace) -> int:
    from ista.data.sources import DataError
    from ista.model.load import load_model
    from ista.model.predict import image_files, predict

    if args.top_k < 1 or args.batch_size < 1:
        raise ValueError("--top-k and --batch-size must be at least 1")
    model = load_model(args.run_dir, device=args.device)
    rows, skipped = [], 0
    for outcome in predict(model, image_files(args.images), args.top_k, args.batch_size):
        if isinstance(outcome, DataError):
            skipped += 1
            print(f"ista predict: skipped: {outcome}", file=sys.stderr)
        elif args.json:
            print(json.dumps({"file": outcome.file, "top": [{"class": c, "p": p} for c, p in outcome.top]}))
        else:
            rows.append(outcome)
    if rows:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"{args.run_dir}: {model.facts.dataset}, {len(model.classes)} classes")
        table.add_column("file", overflow="fold")
        for i in range(len(rows[0].top)):
            table.add_column("class" if i == 0 else f"#{i + 1}")
            table.add_column("p", justify="right")
        for r in rows:
            table.add_row(r.file, *(x for c, p in r.top for x in (c, f"{p:.3f}")))
        Console().print(table)
    if skipped:
        print(f"ista predict: {skipped} file(s) skipped: not images", file=sys.stderr)
    return 1 if skipped else 0
