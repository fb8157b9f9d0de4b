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
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import submitit

from ista.config.io import apply_overrides, config_from_dict, config_to_dict
from ista.config.presets import preset
from ista.distributed.preemption import Interrupted
from ista.launch.executors import SIGNAL_DELAY_S, Resources, executor
from ista.rundir.experiment import RECORD, read_record, seed_dir, slots_dir, waiting_for_slot, write_record
from ista.rundir.files import RESULT
from ista.rundir.read import read_json

# what a seed's task runs: `ista.runner.run(config, run_dir, show_progress=False)`
Work = Callable[..., Any]


@contextlib.contextmanager
def cpu_slot(folder: Path, slots: int, waiting: Path | None = None):
    """Holds one of `slots` CPU slots (flock'ed files, freed when the holder dies): local tasks beyond
    what the machine's CPUs allow wait here, instead of all starting at once and thrashing. The file
    `waiting` exists while it waits, so that the status table can say so. A SIGTERM while it waits
    (`ista launch --cancel`) ends the task, which has not started its run."""
    folder.mkdir(parents=True, exist_ok=True)
    handler = _end_on_sigterm()
    try:
        while True:
            for k in range(slots):
                with open(folder / f"slot-{k}", "a") as f:
                    try:
                        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        continue
                    _restore_sigterm(handler)  # from here the run's own handler checkpoints its step
                    handler = _UNCHANGED
                    if waiting:
                        waiting.unlink(missing_ok=True)
                    yield k
                    return
            if waiting:
                waiting.touch()
            time.sleep(0.2)
    finally:
        _restore_sigterm(handler)
        if waiting:
            waiting.unlink(missing_ok=True)


class Cancelled(RuntimeError):
    """A local task stopped before its run started (an Exception, so that submitit records it)."""


def _cancelled(signum: int, frame: Any) -> None:
    raise Cancelled("cancelled while waiting for a CPU slot")


_UNCHANGED = object()  # no handler was replaced (outside the main thread none can be installed)


def _end_on_sigterm() -> Any:
    """Installs `_cancelled` for SIGTERM in the main thread (submitit's own handler ignores it); returns
    the handler it replaced (None: one not installed from Python), or _UNCHANGED."""
    if threading.current_thread() is not threading.main_thread():
        return _UNCHANGED
    return signal.signal(signal.SIGTERM, _cancelled)


def _restore_sigterm(previous: Any) -> None:
    if previous is not _UNCHANGED:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


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

        with runtime.own_process_state():  # the debug executor's seeds run in the submitting process
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
            slot = (
                cpu_slot(slots_dir(run_dir.parent), self.slots, waiting_for_slot(run_dir)) if waits else None
            )
            try:
                with slot or contextlib.nullcontext():
                    self.work(config_from_dict(self.config), self.run_dir, show_progress=False)
                runtime.barrier()  # rank 0 has written result.json
                return read_json(run_dir, RESULT)
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
) -> submitit.Executor:
    """submitit's executor of `resources.cluster` for an array; `after`: jobs that must end first."""
    backend = executor(resources.cluster)
    submitter = backend.submitit_executor(experiment / "submitit" / "%j", _python(experiment, resources))
    submitter.update_parameters(**backend.parameters(resources, job_name, after))
    return submitter


def sbatch_script(experiment: Path, resources: Resources, job_name: str, tasks: int) -> str:
    """The script an array would be submitted with (--dry-run); needs no scheduler here."""
    python = _python(experiment, resources) or shlex.quote(sys.executable)
    backend = executor(resources.cluster)
    backend.check(resources)
    return backend.script(experiment / "submitit" / "%j", python, resources, job_name, tasks)


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
    executor(resources.cluster).check(resources)  # both before anything is written
    experiment.mkdir(parents=True, exist_ok=True)
    submitter = make_executor(experiment, resources, f"ista-{preset_name}", after)
    slots = executor(resources.cluster).slots(resources)
    runs = [
        SeedRun(work, configs[s], str(seed_dir(experiment, s)), resources.cpus_per_task, slots) for s in seeds
    ]
    jobs = submitter.submit_array(runs)  # one sbatch --array on Slurm
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
