"""`ista search`: an ISTA-NAS search (two-stage or one-stage) or the DARTS baseline, from a preset."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ista.config import PRESETS, apply_overrides, config_to_dict, preset
from ista.methods import METHODS

SEARCH_PRESETS = sorted(
    name for name, config in PRESETS.items() if not METHODS[config.method].trains_genotype
)


def add_config_arguments(
    p: argparse.ArgumentParser, default_preset: str | None, presets=SEARCH_PRESETS, help_text: str = ""
) -> None:
    p.add_argument(
        "--preset",
        default=default_preset,
        required=default_preset is None,
        choices=presets,
        help=help_text or "named settings; cifar10-two-stage is the paper's supplement",
    )
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="config overrides, e.g. epochs=10 optim.lr=0.1 data.root=~/data (see --print-config)",
    )
    p.add_argument(
        "--loader", choices=("auto", "ffcv", "torch"), help="data reader (same as data.loader=...)"
    )
    p.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(
        name,
        help="search an architecture (Algorithm 1 or 2, or the DARTS baseline)",
        description="Two-stage search on a super-net, or one-stage search and training; writes a run "
        "directory.",
    )
    add_config_arguments(p, None)
    p.add_argument(
        "--out", type=Path, help="run directory (re-running on it resumes from its last checkpoint)"
    )
    p.add_argument("--resume", action="store_true", help="require a checkpoint in --out and continue from it")
    p.add_argument("--quiet", action="store_true", help="no progress display")


def resolve(args: argparse.Namespace, extra: tuple[str, ...] = ()):
    loader = [f"data.loader={args.loader}"] if args.loader else []
    config = apply_overrides(preset(args.preset), [*args.overrides, *loader, *extra])
    if args.print_config:
        print(json.dumps(config_to_dict(config), indent=2))
    return config


def run(args: argparse.Namespace) -> int:
    config = resolve(args)
    if args.print_config:
        return 0
    if args.out is None:
        raise ValueError("--out RUN_DIR is required")
    from ista import runner

    result = runner.run(config, args.out, resume=args.resume, show_progress=not args.quiet)
    print_result(result)
    return 0


def print_result(result) -> None:
    from ista.distributed.runtime import world

    if world()[0] != 0:
        return  # rank 0 speaks for the run
    print(f"genotype: {result.genotype.to_text()}")
    last = result.history[-1] if result.history else {}
    if "test_acc" in last:
        print(f"final test error: {1 - last['test_acc']:.2%} (top-5: {1 - last['test_top5']:.2%})")
    print(f"run directory: {result.run_dir}")
