"""`ista data`: writes a data set as FFCV `.beton` files for fast loading."""

from __future__ import annotations

import argparse
from pathlib import Path

from ista.data.datasets import DATASETS

IMAGE_BY_IMAGE = ("max_res", "jpeg_quality", "compress_prob")  # ffcv-imagenet's settings by default


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(
        name,
        help="convert a data set to FFCV .beton files",
        description="Writes train.beton, the test split's .beton and a manifest.json of the data set's facts "
        "(classes, image side, channels, normalisation); a search or training run reads them with "
        "data.dataset=NAME data.beton=OUT.",
    )
    kinds = p.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    for d in DATASETS.values():
        if not d.beton:
            continue
        q = kinds.add_parser(d.name, help=d.about, description=f"{d.about}. --src holds {d.layout}.")
        q.add_argument("--src", type=Path, required=True, help=f"the data set as downloaded: {d.layout}")
        q.add_argument("--out", type=Path, required=True, help="folder for the .beton files")
        q.add_argument("--size", type=int, default=0, help="the side to store small images at, as data.size "
                       "(default: the data set's own, or a folder's median)")  # fmt: skip
        q.add_argument("--workers", type=int, default=0, help="writer processes (default: usable CPUs)")
        q.add_argument("--force", action="store_true", help="overwrite existing .beton files")
        q.add_argument("--max-res", type=int, help="images read one by one (ImageNet, folders of images over "
                       "64 px): the longer side is resized to at most this (500)")  # fmt: skip
        q.add_argument("--jpeg-quality", type=int, help="the same: quality of the JPEG copies (90)")
        q.add_argument("--compress-prob", type=float, help="the same: share of images stored as JPEG (0.5)")


def run(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

    from ista.data.sources import DataError
    from ista.data.splits import INSTALL_FFCV, ffcv_import_error

    error = ffcv_import_error()
    if error:
        raise DataError(f"ista data needs ffcv, which does not import ({error}); {INSTALL_FFCV}")
    from ista.data import beton

    columns = TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()
    with Progress(*columns) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(f"writing {name}", total=total)
            bar.update(tasks[name], completed=done)

        asked = {k: getattr(args, k) for k in IMAGE_BY_IMAGE if getattr(args, k) is not None}
        manifest = beton.write_betons(args.dataset, args.src, args.out, size=args.size, workers=args.workers,
                                      force=args.force, progress=progress, image_by_image=asked)  # fmt: skip
    for split in manifest["splits"].values():
        print(f"{args.out / split['file']}: {split['images']} images")
    facts = manifest["facts"]
    print(f"{facts['num_classes']} classes, {facts['size']} px, {facts['channels']} channel(s)")
    print(f"use it with: data.dataset={args.dataset} data.beton={args.out}")
    return 0
