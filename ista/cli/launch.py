"""`ista launch`: seeds as one Slurm array job (one task per seed) of multi-node runs, and their status."""

from __future__ import annotations

import argparse
import contextlib
import re
import time
from pathlib import Path

from ista.config import PRESETS
from ista.launch.executors import EXECUTORS


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(
        name,
        help="launch seeds as a Slurm array job (or local processes); --status shows them",
        description="One array task per seed, each a distributed run writing EXPERIMENT/seed-<s>/.",
    )
    p.add_argument("--preset", choices=sorted(PRESETS), help="named settings (any search or training preset)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides for every seed")
    p.add_argument(
        "--genotype",
        help="for training presets: a genotype (name, file, text), or best:EXPERIMENT for the best-of-k "
        "genotype of a search experiment (the paper's protocol)",
    )
    p.add_argument("--seeds", default="0", help="e.g. 0-4 or 0,2,7 (default 0)")
    p.add_argument("--experiment", type=Path, help="experiment folder (default runs/<preset>-<time>)")
    add_resource_arguments(p)
    p.add_argument("--dry-run", action="store_true", help="print the sbatch script and submit nothing")
    p.add_argument("--wait", action="store_true", help="wait for every seed, then print the status")
    p.add_argument(
        "--status", type=Path, metavar="EXPERIMENT", help="show the state of each seed (or protocol stage)"
    )
    p.add_argument(
        "--cancel",
        type=Path,
        metavar="EXPERIMENT",
        help="stop the seeds of an experiment (or protocol) still queued or running; each running one "
        "checkpoints the step it finished, and the same launch or protocol resumes it",
    )
    p.add_argument(
        "--watch",
        action="store_true",
        help="with --status: a live view (epoch, step, loss, accuracy, images/s, ETA) until every seed ends",
    )


def add_resource_arguments(p: argparse.ArgumentParser) -> None:
    """Where and how each task runs (`ista launch` and `ista protocol`)."""
    p.add_argument("--nodes", type=int, default=1)
    p.add_argument("--tasks-per-node", type=int, help="processes per node (default: GPUs per node, or 1)")
    p.add_argument("--gpus-per-node", type=int, default=0)
    p.add_argument("--cpus-per-task", type=int, default=2)
    p.add_argument("--partition")
    p.add_argument("--account")
    p.add_argument("--time", default="24:00:00", help="time limit per task: minutes, HH:MM:SS or D-HH:MM:SS")
    p.add_argument("--container", help="an Apptainer/Singularity image to run each task in (--nv with GPUs)")
    p.add_argument(
        "--bind",
        action="append",
        default=[],
        metavar="SRC[:DEST[:ro]]",
        help="with --container: another host path to bind (the experiment, data.root, data.beton and "
        "$MOSEKLM_LICENSE_FILE are bound already)",
    )
    p.add_argument("--cluster", choices=tuple(EXECUTORS), default="slurm")


def minutes(text: str) -> int:
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not match:
        raise ValueError(f"--time {text!r}: expected minutes, HH:MM:SS or D-HH:MM:SS")
    days, a, b, c = (int(g) if g else 0 for g in match.groups())
    if match.group(3) is None:  # minutes (or D-HH with a day)
        return days * 1440 + (a * 60 if match.group(1) else a)
    if match.group(4) is None:  # MM:SS, as sbatch reads it
        return days * 1440 + a + (1 if b else 0)
    return days * 1440 + a * 60 + b + (1 if c else 0)


def run(args: argparse.Namespace) -> int:
    from ista import runner
    from ista.launch import status as status_mod
    from ista.launch.submit import launch, sbatch_script, seed_configs
    from ista.rundir.experiment import parse_seeds

    if args.watch and not args.status:
        raise ValueError("--watch goes with --status EXPERIMENT_OR_PROTOCOL")
    if args.status and args.watch:
        status_mod.watch(args.status)
    if args.status:
        rows = status_mod.print_status(args.status)
        return 0 if all(r["state"] != "failed" for r in rows) else 1
    if args.cancel:
        for experiment, stopped in status_mod.cancel(args.cancel):
            print(f"{experiment}: cancelled {len(stopped)} job(s) {' '.join(stopped)}".rstrip())
        return 0
    if not args.preset:
        raise ValueError("--preset is required (or --status EXPERIMENT)")
    seeds = parse_seeds(args.seeds)
    selection = None
    if args.genotype:
        from ista.selection import choose_genotype

        genotype, selection = choose_genotype(args.genotype)
        args.overrides = [*args.overrides, f"genotype={genotype}"]
        if selection:
            print(f"genotype: {selection.describe()}")
    configs = seed_configs(args.preset, args.overrides, seeds)  # bad overrides: an error before anything else
    resources = resources_from(args, configs[seeds[0]])
    experiment = (args.experiment or Path("runs") / time.strftime(f"{args.preset}-%Y%m%d-%H%M%S")).resolve()
    if args.dry_run:
        print(sbatch_script(experiment, resources, f"ista-{args.preset}", len(seeds)))
        return 0
    jobs = launch(experiment, args.preset, args.overrides, seeds, resources, selection, work=runner.run)
    array = jobs[0].job_id.split("_")[0]
    print(f"submitted {len(jobs)} seed(s) of {args.preset} to {args.cluster}: job {array}")
    print(f"experiment: {experiment}  (ista launch --status {experiment})")
    if args.wait:
        for job in jobs:
            with contextlib.suppress(Exception):  # a failed seed is reported in the table below
                job.wait()
        rows = status_mod.print_status(experiment)
        return 0 if all(r["state"] == "done" for r in rows) else 1
    return 0


def resources_from(args: argparse.Namespace, config: dict):
    """The Resources of the command line; `config` (one seed's) names the data a container must see."""
    from ista.launch.executors import Resources
    from ista.launch.submit import container_binds

    if args.bind and not args.container:
        raise ValueError("--bind applies to --container runs only")
    return Resources(
        cluster=args.cluster,
        nodes=args.nodes,
        tasks_per_node=args.tasks_per_node or max(1, args.gpus_per_node),
        gpus_per_node=args.gpus_per_node,
        cpus_per_task=args.cpus_per_task,
        time_min=minutes(args.time),
        partition=args.partition,
        account=args.account,
        container=args.container,
        binds=container_binds(config, args.bind) if args.container else (),
    )
