"""`ista data`: writes CIFAR-10 or ImageNet as FFCV `.beton` files for fast loading."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(
        name,
        help="convert CIFAR-10 or ImageNet to FFCV .beton files",
        description="Writes train/test (CIFAR-10) or train/val (ImageNet) .beton files and a manifest.json; "
        "a search or training run reads them with data.beton=OUT.",
    )
    kinds = p.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    cifar = kinds.add_parser("cifar10", help="from the cifar-10-batches-py folder: raw 32×32 images")
    imagenet = kinds.add_parser("imagenet", help="from train/<wnid>/*.JPEG and val/<wnid>/*.JPEG")
    for q in (cifar, imagenet):
        q.add_argument("--src", type=Path, required=True, help="the data set as downloaded")
        q.add_argument("--out", type=Path, required=True, help="folder for the .beton files")
        q.add_argument("--workers", type=int, default=0, help="writer processes (default: usable CPUs)")
        q.add_argument("--force", action="store_true", help="overwrite existing .beton files")
    imagenet.add_argument("--max-res", type=int, default=500, help="longer side is resized to at most this")
    imagenet.add_argument("--jpeg-quality", type=int, default=90)
    imagenet.add_argument("--compress-prob", type=float, default=0.5, help="share of images stored as JPEG")


def run(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ista.data.sources import DataError
    from ista.data.splits import INSTALL_FFCV, ffcv_import_error

    error = ffcv_import_error()
    if error:
        raise DataError(f"ista data needs ffcv, which does not import ({error}); {INSTALL_FFCV}")
    from ista.data import beton

    columns = TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()
    with Progress(*columns) as bar:
        tasks: dict[str, int] = {}

        def progress(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(f"writing {name}", total=total)
            bar.update(tasks[name], completed=done)

        common = {"workers": args.workers, "force": args.force, "progress": progress}
        if args.dataset == "cifar10":
            manifest = beton.write_cifar10(args.src, args.out, **common)
        else:
            manifest = beton.write_imagenet(
                args.src,
                args.out,
                max_res=args.max_res,
                jpeg_quality=args.jpeg_quality,
                compress_prob=args.compress_prob,
                **common,
            )
    for split in manifest["splits"].values():
        print(f"{args.out / split['file']}: {split['images']} images")
    print(f"use it with: data.beton={args.out}")
    return 0
