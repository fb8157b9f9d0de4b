"""`ista protocol NAME`: a paper protocol (searches, then evaluations) as one unattended submission."""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

from ista.cli.launch import add_resource_arguments, resources_from
from ista.launch.executors import executor
from ista.launch.protocol import EVAL_PRESET, PROTOCOLS


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(
        name,
        help="run a paper protocol (searches, then evaluations) as one submission",
        description="two-stage: best-of-k searches, then evaluations of the chosen genotype; independent: "
        "each search's genotype evaluated; consistency: independent plus Kendall tau (with --with-darts "
        "for the DARTS baseline too); one-stage: one-stage runs, then re-evaluations of each architecture. "
        "Re-running the command on its folder submits only what is unfinished.",
    )
    p.add_argument("protocol", choices=PROTOCOLS)
    p.add_argument("--preset", required=True, choices=sorted(EVAL_PRESET), help="the search preset")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="for every stage, or one kind of stage: search.KEY=VALUE, eval.KEY=VALUE, darts-search.…, "
        "darts-eval.…",
    )
    p.add_argument("--seeds", default="0-4", help="search seeds (default 0-4)")
    p.add_argument("--eval-seeds", help="evaluation seeds of two-stage and one-stage (default 0-4)")
    p.add_argument("--with-darts", action="store_true", help="consistency: also the DARTS baseline")
    p.add_argument("--folder", type=Path, help="protocol folder (default runs/<protocol>-<preset>-<time>)")
    p.add_argument("--wait", action="store_true", help="wait for every stage, then print the status")
    add_resource_arguments(p)


def run(args: argparse.Namespace) -> int:
    from ista import runner
    from ista.launch import protocol
    from ista.launch.status import print_status
    from ista.launch.submit import seed_configs
    from ista.rundir.experiment import parse_seeds

    seeds = parse_seeds(args.seeds)
    eval_seeds = parse_seeds(args.eval_seeds) if args.eval_seeds is not None else None
    default = Path("runs") / time.strftime(f"{args.protocol}-{args.preset}-%Y%m%d-%H%M%S")
    folder = (args.folder or default).resolve()
    stages = protocol.plan(
        args.protocol, folder, args.preset, seeds, eval_seeds, args.overrides, args.with_darts
    )
    for stage in stages:  # every stage's overrides are checked before anything is submitted
        seed_configs(stage.preset, list(stage.overrides), list(stage.seeds[:1]))
    first = seed_configs(stages[0].preset, list(stages[0].overrides), seeds[:1])[seeds[0]]
    resources = resources_from(args, first)
    in_order = not executor(args.cluster).schedules  # no scheduler: each stage after the one before

    def wait(jobs) -> None:
        for job in jobs:
            with contextlib.suppress(Exception):  # a failed seed is reported in the status
                job.wait()

    record, jobs = protocol.submit(
        folder, args.protocol, stages, resources, runner.run, wait if in_order else None
    )
    if args.wait and not in_order:
        wait(jobs)
    submitted = sum(len(stage["submitted"]) for stage in record["stages"])
    print(f"protocol {args.protocol} of {args.preset}: {submitted} seed run(s) submitted to {args.cluster}")
    print(f"folder: {folder}  (ista launch --status {folder}; ista summarize {folder})")
    if in_order or args.wait:
        rows = print_status(folder)
        return 0 if all(r["state"] == "done" for r in rows) else 1
    return 0
