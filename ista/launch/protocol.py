"""The paper's protocols as one submission: stages of seed arrays, each a `launch` experiment folder.

    two-stage     searches, then evaluation trainings of the best-of-k genotype (supplement §1.2)
    independent   searches, then one evaluation of each search's genotype (ROME's re-measurement)
    consistency   independent, then Kendall τ between super-net held-out and evaluated accuracy; with
                  `with_darts` the same for the DARTS baseline on the same seeds (supplement §2)
    one-stage     one-stage runs, then re-evaluations of each run's architecture (§1.3)

On Slurm every stage is submitted at once, later arrays depending on earlier ones (`afterany`, so a
failed seed does not hold the rest back); an evaluation stage decides what it trains when it starts
(`best:SEARCH` is chosen by the runner from the results on disk then). `local` and `debug` run the stages
in order. Running the same protocol on its folder again submits only the seeds that are neither done nor
still queued or running.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ista.launch.executors import executor
from ista.launch.status import LIVE_STATES, seed_states
from ista.launch.submit import Work, launch
from ista.methods import METHODS
from ista.rundir.experiment import RECORD, seed_dir, write_protocol
from ista.rundir.files import GENOTYPE

PROTOCOLS = ("two-stage", "independent", "consistency", "one-stage")
# the evaluation recipe of each search preset (method.md §4, §7)
EVAL_PRESET = {"demo": "demo-eval", "cifar10-two-stage": "cifar10-eval",
               "cifar10-two-stage-code": "cifar10-eval", "cifar10-darts": "cifar10-eval",
               "cifar10-one-stage": "cifar10-eval", "imagenet-one-stage": "imagenet-eval",
               **{f"{d}-{k}": f"{d}-eval" for d in ("cifar100", "svhn")
                  for k in ("two-stage", "one-stage")}}  # fmt: skip


@dataclass(frozen=True)
class Stage:
    name: str  # its experiment folder, and the prefix of its own overrides (search.epochs=10)
    kind: str  # search | eval | darts-search | darts-eval: whose overrides apply
    preset: str
    seeds: tuple[int, ...]
    overrides: tuple[str, ...] = ()
    per_seed: dict[int, tuple[str, ...]] = field(default_factory=dict)
    after: tuple[str, ...] = ()  # the stages it waits for


def plan(name: str, folder: Path, search_preset: str, seeds: list[int], eval_seeds: list[int] | None,
         overrides: list[str], with_darts: bool = False) -> list[Stage]:  # fmt: skip
    """The stages of protocol `name`, with the overrides of each (KEY=VALUE for every stage; a key that
    starts with a stage kind, `search.`, `eval.`, `darts-search.`, `darts-eval.`, for that kind only).
    `eval_seeds` (default 0-4) belong to two-stage and one-stage; independent and consistency train each
    search's genotype with that search's seed."""
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}")
    if eval_seeds is not None and name not in ("two-stage", "one-stage"):
        raise ValueError(
            f"--eval-seeds belongs to two-stage and one-stage; {name} trains search seed s's genotype with "
            "seed s (--seeds)"
        )
    eval_seeds = list(range(5)) if eval_seeds is None else eval_seeds
    from ista.config.presets import preset

    method = preset(search_preset).method
    if (name == "one-stage") != METHODS[method].one_stage:
        need = "a one-stage preset" if name == "one-stage" else "a two-stage search preset (ista or darts)"
        raise ValueError(f"protocol {name} needs {need}; {search_preset} is method={method}")
    if search_preset not in EVAL_PRESET:
        raise ValueError(
            f"protocol {name}: {search_preset} has no evaluation preset ({', '.join(EVAL_PRESET)})"
        )
    if with_darts and name != "consistency":
        raise ValueError("--with-darts belongs to the consistency protocol")
    folder = folder.resolve()
    evaluate = EVAL_PRESET[search_preset]

    def genotype(stage: str, seed: int) -> str:  # a search's genotype, read when the training starts
        return f"genotype={seed_dir(folder / stage, seed) / GENOTYPE}"

    stages = [Stage("search", "search", search_preset, tuple(seeds))]
    if name == "two-stage":
        best = (f"genotype=best:{folder / 'search'}",)
        stages.append(Stage("eval", "eval", evaluate, tuple(eval_seeds), best, after=("search",)))
    elif name == "one-stage":  # each run's architecture, trained again with every evaluation seed
        for s in seeds:
            again = (genotype("search", s), "network.onestage=true")
            stages.append(
                Stage(f"eval-of-seed-{s}", "eval", evaluate, tuple(eval_seeds), again, after=("search",))
            )
    else:  # independent, consistency: search seed s's genotype, trained with seed s
        for kind in ("search", "darts-search") if with_darts else ("search",):
            prefix = kind.removesuffix("search")  # "" or "darts-"
            if prefix:  # the DARTS baseline on the same seeds, data and super-net
                stages.append(Stage(kind, kind, search_preset, tuple(seeds), ("method=darts",)))
            own: dict[int, tuple[str, ...]] = {s: (genotype(kind, s),) for s in seeds}
            stages.append(Stage(f"{prefix}eval", f"{prefix}eval", evaluate, tuple(seeds), per_seed=own,
                                after=(kind,)))  # fmt: skip
    return [_with_overrides(stage, overrides) for stage in stages]


def _with_overrides(stage: Stage, overrides: list[str]) -> Stage:
    kinds = ("darts-search", "darts-eval", "search", "eval")
    own = []
    for item in overrides:
        kind = next((k for k in kinds if item.startswith(k + ".")), None)
        if kind is None:
            own.append(item)
        elif kind == stage.kind:
            own.append(item.removeprefix(kind + "."))
    return Stage(stage.name, stage.kind, stage.preset, stage.seeds, (*stage.overrides, *own), stage.per_seed,
                 stage.after)  # fmt: skip


def submit(
    folder: Path, name: str, stages: list[Stage], resources, work: Work, wait=None
) -> tuple[dict[str, Any], list]:
    """Submits what is unfinished, stage by stage, each seed running `work`; `wait(jobs)`, if given, waits
    for a stage's jobs before the next is submitted (the local and debug executors). Returns the protocol
    record (also written to protocol.json) and the submitted jobs."""
    folder = folder.resolve()
    rows = [
        {**asdict(stage), "experiment": str(folder / stage.name), "submitted": None,
         "per_seed": {str(s): list(o) for s, o in stage.per_seed.items()}}
        for stage in stages
    ]  # fmt: skip
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    # who submits the stages in turn (local, debug): `--watch` follows the plan while that process lives
    submitter = {"host": socket.gethostname(), "pid": os.getpid()}
    record: dict[str, Any] = {"protocol": name, "stages": rows, "submitted_at": now, "submitter": submitter}
    write_protocol(folder, record)  # the plan first: status and watch can follow it
    submitted: list = []
    live: dict[str, list[str]] = {}  # stage → its jobs still queued or running (what later stages wait for)
    for stage, row in zip(stages, rows, strict=True):
        experiment = folder / stage.name
        states = {}
        if (experiment / RECORD).is_file():
            with contextlib.suppress(Exception):  # an unreadable record: submit its seeds again
                states = {r["seed"]: r for r in seed_states(experiment)}
        # Only a scheduler knows whether an earlier submission still runs; local and debug runs of the
        # protocol ended with the command that started them (a straggler would meet the run's lock).
        scheduled = executor(resources.cluster).schedules
        live_now = {s for s, r in states.items() if scheduled and r["state"] in LIVE_STATES}
        queued = [states[s]["job"] for s in stage.seeds if s in live_now]
        todo = [s for s in stage.seeds if s not in states or states[s]["state"] != "done"]
        todo = [s for s in todo if states.get(s, {}).get("job") not in queued]
        after = tuple(job for dep in stage.after for job in live.get(dep, []))
        row["submitted"] = todo
        write_protocol(folder, record)
        jobs = []
        if todo:
            own = {s: list(stage.per_seed.get(s, ())) for s in todo}
            jobs = launch(experiment, stage.preset, list(stage.overrides), todo, resources, work=work,
                          per_seed=own, after=after if scheduled else ())  # fmt: skip
            submitted += jobs
            if wait is not None:
                wait(jobs)
        live[stage.name] = [*queued, *(job.job_id for job in jobs)]
    return record, submitted
