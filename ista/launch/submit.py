"""One Slurm array job per experiment, one array task per seed, each task a (multi-node) distributed run.

The submitted callable is `SeedRun`, a submitit `Checkpointable` around the work it is handed (the CLI
hands it `ista.runner.run`: launch imports no method and no training): on preemption or at the time limit
Slurm sends USR2 (120 s before the kill); every rank finishes its step, rank 0 checkpoints that step, then
submitit's own handler requeues the task, and the requeued task resumes the run from that very step. A
SIGTERM (scancel, or a preemption that Slurm requeues itself) checkpoints the step the same way and ends
the task.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit

from ista.config.io import apply_overrides, config_from_dict, config_to_dict
from ista.config.presets import preset
from ista.distributed.preemption import Interrupted
from ista.rundir.experiment import RECORD, read_record, seed_dir, slots_dir, waiting_for_slot, write_record
from ista.rundir.files import RESULT

# what a seed's task runs: `ista.runner.run(config, run_dir, show_progress=False)`
Work = Callable[..., Any]
SIGNAL_DELAY_S = 120  # USR2 this long before the kill: time to finish the step and requeue


@dataclass(frozen=True)
class Resources:
    cluster: str = "slurm"  # slurm | local | debug
    nodes: int = 1
    tasks_per_node: int = 1  # processes per node: one per GPU, or CPU ranks
    gpus_per_node: int = 0
    cpus_per_task: int = 2
    time_min: int = 24 * 60
    partition: str | None = None
    account: str | None = None
    container: str | None = None  # an Apptainer/Singularity image each task runs in
    binds: tuple[str, ...] = ()  # host paths the container sees (data, licence), besides the experiment


@contextlib.contextmanager
def cpu_slot(folder: Path, slots: int, waiting: Path | None = None):
    """Holds one of `slots` CPU slots (flock'ed files, freed when the holder dies): local tasks beyond
    what the machine's CPUs allow wait here, instead of all starting at once and thrashing. The file
    `waiting` exists while it waits, so that the status table can say so."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        while True:
            for k in range(slots):
                with open(folder / f"slot-{k}", "a") as f:
                    try:
                        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        continue
                    if waiting:
                        waiting.unlink(missing_ok=True)
                    yield k
                    return
            if waiting:
                waiting.touch()
            time.sleep(0.2)
    finally:
        if waiting:
            waiting.unlink(missing_ok=True)


class SeedRun(submitit.helpers.Checkpointable):
    """One seed's run; every rank of the array task calls it. Requeued as it is on preemption.

    `cpus`: the CPUs each task was given (its threads); `slots`: on the local executor, how many jobs may
    run at once (rank 0 of each waits for a slot; 0 = no limit)."""

    def __init__(
        self, work: Work, config: dict[str, Any], run_dir: str, cpus: int | None = None, slots: int = 0
    ):
        self.work, self.config, self.run_dir, self.cpus, self.slots = work, config, run_dir, cpus, slots

    def __call__(self) -> dict[str, Any]:
        from ista.distributed import runtime

        # A MASTER_PORT inherited from the submitting shell would be shared by all array tasks that start
        # on the same first node, and their ranks would meet in one group: submitit derives one per task.
        os.environ.pop("MASTER_PORT", None)
        # The debug executor runs in this process, outside any job: a single rank, nothing to export.
        with contextlib.suppress(RuntimeError):
            submitit.helpers.TorchDistributedEnvironment().export(
                set_cuda_visible_devices=False, overwrite=True
            )
        if self.cpus:
            os.environ["ISTA_CPUS_PER_TASK"] = str(self.cpus)
        requeue = signal.getsignal(signal.SIGUSR2)  # submitit's: checkpoint this callable and requeue
        waits = self.slots and runtime.detect().rank == 0
        run_dir = Path(self.run_dir)
        slot = cpu_slot(slots_dir(run_dir.parent), self.slots, waiting_for_slot(run_dir)) if waits else None
        try:
            with slot or contextlib.nullcontext():
                self.work(config_from_dict(self.config), self.run_dir, show_progress=False)
            runtime.barrier()  # rank 0 has written result.json
            return json.loads((run_dir / RESULT).read_text())
        except Interrupted as stop:
            if stop.signum != signal.SIGUSR2 or not callable(requeue):
                raise
            requeue(stop.signum, None)  # rank 0: requeues the job and exits; the other ranks return here
            time.sleep(SIGNAL_DELAY_S)  # and wait for the requeue to end them
            raise
        finally:
            runtime.stop()


def seed_configs(
    preset_name: str, overrides: list[str], seeds: list[int], per_seed: dict[int, list[str]] | None = None
) -> dict[int, dict[str, Any]]:
    """Every seed's config; `per_seed` adds overrides of one seed (e.g. the genotype it evaluates)."""
    base = apply_overrides(preset(preset_name), overrides)  # bad overrides fail before anything is submitted
    extra = per_seed or {}
    return {s: config_to_dict(apply_overrides(base, [*extra.get(s, []), f"seed={s}"])) for s in seeds}


def _python(experiment: Path, r: Resources) -> str | None:
    if not r.container:
        return None
    gpu = "--nv " if r.gpus_per_node else ""
    binds = ",".join(dict.fromkeys([str(experiment), *r.binds]))
    return f"apptainer exec {gpu}--bind {shlex.quote(binds)} {shlex.quote(r.container)} python3"


def container_binds(config: dict[str, Any], extra: list[str]) -> tuple[str, ...]:
    """What a containerised run must see: its data (data.root, data.beton), the MOSEK licence named by
    MOSEKLM_LICENSE_FILE (read-only; apptainer passes the variable itself through), and `extra`."""
    data = [config["data"][key] for key in ("root", "beton") if config["data"].get(key)]
    binds = [str(Path(path).expanduser().resolve()) for path in data]
    licence = os.environ.get("MOSEKLM_LICENSE_FILE")
    if licence and Path(licence).is_file():
        binds.append(f"{Path(licence).resolve()}:{Path(licence).resolve()}:ro")
    return tuple(dict.fromkeys([*binds, *extra]))


def make_executor(
    experiment: Path, resources: Resources, job_name: str, after: tuple[str, ...] = ()
) -> submitit.AutoExecutor:
    """`after`: Slurm jobs that must end first (afterany: a failed seed does not hold the rest back)."""
    r = resources
    kwargs = (
        {"slurm_python": _python(experiment, r), "slurm_max_num_timeout": 30} if r.cluster == "slurm" else {}
    )
    executor = submitit.AutoExecutor(folder=experiment / "submitit" / "%j", cluster=r.cluster, **kwargs)
    params: dict[str, Any] = {"name": job_name, "nodes": r.nodes, "tasks_per_node": r.tasks_per_node,
                              "timeout_min": r.time_min}  # fmt: skip
    if r.cluster != "debug":
        params.update(gpus_per_node=r.gpus_per_node, cpus_per_task=r.cpus_per_task)
    if r.cluster == "slurm":
        params.update(
            slurm_signal_delay_s=SIGNAL_DELAY_S, slurm_partition=r.partition, slurm_account=r.account
        )
        if after:
            params["slurm_additional_parameters"] = {"dependency": "afterany:" + ":".join(after)}
        params = {k: v for k, v in params.items() if v is not None}
    executor.update_parameters(**params)
    return executor


def sbatch_script(experiment: Path, resources: Resources, job_name: str, tasks: int) -> str:
    """The sbatch script of the array (--dry-run), from submitit's own template; needs no Slurm here."""
    from submitit.slurm.slurm import _make_sbatch_string

    r = resources
    folder = experiment / "submitit" / "%j"
    python = _python(experiment, r) or shlex.quote(sys.executable)
    params: dict[str, Any] = {"job_name": job_name, "nodes": r.nodes, "ntasks_per_node": r.tasks_per_node,
                              "time": r.time_min, "gpus_per_node": r.gpus_per_node or None,
                              "cpus_per_task": r.cpus_per_task, "signal_delay_s": SIGNAL_DELAY_S,
                              "partition": r.partition, "account": r.account}  # fmt: skip
    params = {k: v for k, v in params.items() if v is not None}
    command = f"{python} -u -m submitit.core._submit {shlex.quote(str(folder))}"
    return _make_sbatch_string(command=command, folder=folder, map_count=tasks, **params)


def launch(
    experiment: Path,
    preset_name: str,
    overrides: list[str],
    seeds: list[int],
    resources: Resources,
    selection=None,
    *,
    work: Work,
    per_seed: dict[int, list[str]] | None = None,
    after: tuple[str, ...] = (),
) -> list[submitit.Job]:
    """Submits the array of `work` (`ista.runner.run`) over the seeds' configs; `selection` (a best-of-k
    choice of genotype) is logged in experiment.json.

    Seeds added to an experiment launched before with the same settings join its record (a protocol
    resubmitting its unfinished seeds); other settings replace it."""
    configs = seed_configs(preset_name, overrides, seeds, per_seed)
    experiment.mkdir(parents=True, exist_ok=True)
    executor = make_executor(experiment, resources, f"ista-{preset_name}", after)
    per_job = resources.cpus_per_task * resources.tasks_per_node
    slots = max(1, len(os.sched_getaffinity(0)) // per_job) if resources.cluster == "local" else 0
    runs = [
        SeedRun(work, configs[s], str(seed_dir(experiment, s)), resources.cpus_per_task, slots) for s in seeds
    ]
    jobs = executor.submit_array(runs)  # one sbatch --array on Slurm
    record = {
        "preset": preset_name,
        "overrides": overrides,
        "seeds": seeds,
        "resources": resources.__dict__,
        "jobs": {str(s): job.job_id for s, job in zip(seeds, jobs, strict=True)},
        "submitit_folder": str(experiment / "submitit"),
        "submitted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **({"selection": selection.to_dict()} if selection else {}),
    }
    if (experiment / RECORD).is_file():
        before = read_record(experiment)
        if (before.get("preset"), before.get("overrides")) == (preset_name, overrides):
            record["seeds"] = sorted({*before["seeds"], *seeds})
            record["jobs"] = {**before["jobs"], **record["jobs"]}
    write_record(experiment, record)
    return jobs
