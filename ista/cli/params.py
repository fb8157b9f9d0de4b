"""`ista params`: parameters and multiply-adds of genotypes' target networks."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from ista.data.datasets import DATASETS, stem_for
from ista.methods import METHODS
from ista.model.latency import AMP, measure_latency
from ista.model.load import FoundModel, is_run_dir, load_model, read_run_config
from ista.rundir.records import record_latency
from ista.space.counting import count_macs_m, count_params_m, measure
from ista.space.genotypes import PUBLISHED, load_genotype
from ista.space.networks import build_eval_network

TIMING: dict[str, Any] = {
    "device": "cpu",
    "batch": [1, 64],
    "amp": "off",
    "channels_last": "off",
    "rounds": 10,
    "warmup": 3,
}


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(
        name,
        help="parameter count, multiply-adds and latency of genotypes or trained runs",
        description="Parameters (M, DARTS convention: auxiliary head excluded) and conv+linear "
        "multiply-adds (M) of each genotype's target network, or of a run's trained network; with "
        "--latency, its time per batch where it runs (warm-up passes, then timed rounds: the median and "
        "the spread). A run's timings are recorded in its latency.json, which `ista summarize` shows.",
    )
    p.add_argument(
        "genotypes",
        nargs="+",
        metavar="GENOTYPE_OR_RUN",
        help=f"a published name ({', '.join(PUBLISHED)}), a JSON file, the DARTS text Genotype(...), or a "
        "finished `ista train` run directory (its own data set and size)",
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
    t = p.add_argument_group("latency")
    t.add_argument("--latency", action="store_true", help="time the network's forward pass (eval mode)")
    d = TIMING
    t.add_argument("--device", choices=("cpu", "cuda"), help=f"where to time it (default {d['device']})")
    batches = " ".join(map(str, d["batch"]))
    t.add_argument("--batch", type=int, nargs="+", help=f"batch sizes (default: {batches})")
    t.add_argument("--amp", choices=tuple(AMP), help=f"autocast precision (default {d['amp']})")
    t.add_argument(
        "--channels-last", choices=("off", "on"), help=f"NHWC or not (default {d['channels_last']})"
    )
    t.add_argument("--rounds", type=int, help=f"timed rounds per batch size (default {d['rounds']})")
    t.add_argument("--warmup", type=int, help=f"untimed passes first (default {d['warmup']})")


def run(args: argparse.Namespace) -> int:
    given = [name for name in TIMING if getattr(args, name) is not None]
    if given and not args.latency:
        options = ", ".join("--" + name.replace("_", "-") for name in given)
        raise ValueError(f"{options} time the network: add --latency")
    for name, default in TIMING.items():  # unset (None) until here, so that a given one is told apart
        setattr(args, name, default if getattr(args, name) is None else getattr(args, name))
    declared = DATASETS[args.dataset]
    classes, size = args.classes or declared.num_classes, args.size or declared.size
    genotypes = [g for g in args.genotypes if not is_run_dir(g)]
    if genotypes and (not classes or not size):
        raise SystemExit(
            f"ista params: --dataset {args.dataset} reads its classes and image side from the data; "
            "give --classes and --size"
        )
    in_channels = args.in_channels or declared.channels or 3
    rows = []
    for g in args.genotypes:
        if is_run_dir(g):
            row, model = _trained(Path(g))
        else:
            assert classes and size  # checked above
            data = (stem_for(size), classes, size, in_channels)
            row, model = measure(g, *data, args.onestage, args.channels, args.layers), None
        if args.latency:
            row = {**row, "latency": _latency(args, g, model, row)}
        rows.append(row)
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    from rich.console import Console
    from rich.table import Table

    variant = " one-stage (BN after parameter-free ops)" if args.onestage else ""
    shape = f"{classes} classes, {size}×{size}×{in_channels}, {stem_for(size or 32)} stem"
    title = f"{args.dataset} ({shape}){variant}" if genotypes else "trained runs"
    if len({(r["layers"], r["channels"]) for r in rows}) == 1:
        title += f": {rows[0]['layers']} cells, C={rows[0]['channels']}"
    table = Table(title=title)
    columns = ["genotype", "params (M)", "MACs (M)"]
    if args.latency:
        columns += [f"{unit} b={b}" for b in args.batch for unit in ("ms", "img/s")]
        device = rows[0]["latency"][0]["device_name"]
        table.caption = f"{args.device} ({device}), amp {args.amp}, channels-last {args.channels_last}: " \
            f"ms per batch, median of {args.rounds} rounds (min–max)"  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column == "genotype" else "right")
    for row in rows:
        name = row["genotype"] if len(row["genotype"]) <= 40 else row["genotype"][:37] + "..."
        timings = [(f"{m['median_ms']:.2f} ({m['min_ms']:.2f}–{m['max_ms']:.2f})", f"{m['images_per_s']:.0f}")
                   for m in row.get("latency", [])]  # fmt: skip
        counts = f"{row['params_m']:.6f}", f"{row['macs_m']:.1f}"
        table.add_row(name, *counts, *(x for t in timings for x in t))
    Console().print(table)
    return 0


def _trained(run_dir: Path) -> tuple[dict[str, Any], FoundModel]:
    """A run's row, from its trained network: shape, sizes, parameters and MACs."""
    model = load_model(run_dir)
    config, f = read_run_config(run_dir), model.facts
    row = {
        "genotype": str(run_dir),
        "dataset": f.dataset,
        "stem": f.stem,
        "num_classes": len(f.classes),
        "side": f.size,
        "in_channels": f.channels,
        "onestage": METHODS[config.method].one_stage or config.network.onestage,
        "layers": len(model.network.cells),
        "channels": config.network.channels,
        "params_m": round(count_params_m(model.network), 6),
        "macs_m": round(count_macs_m(model, model.input_shape), 3),
    }
    return row, model


def _latency(
    args: argparse.Namespace, spec: str, model: FoundModel | None, row: dict[str, Any]
) -> list[dict]:
    """The timings of each batch size; a run's are recorded in its directory."""
    net: torch.nn.Module
    if model is None:
        stem, classes, side, channels = row["stem"], row["num_classes"], row["side"], row["in_channels"]
        net = build_eval_network(load_genotype(spec), stem, row["channels"], row["layers"], classes,
                                 onestage=row["onestage"], in_channels=channels)  # fmt: skip
        shape = (channels, side, side)
    else:
        net, shape = model, model.input_shape  # the run's own network (a one-stage run's super-net)
    timed = [measure_latency(net, shape, b, args.device, args.amp, args.channels_last == "on", args.warmup,
                             args.rounds) for b in args.batch]  # fmt: skip
    if model is not None:
        record_latency(spec, timed)
    return timed
