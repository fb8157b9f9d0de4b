"""Where a seed array runs: each executor behind one small type, after submitit's own `Executor`.

An `Executor` says which resources it honours, how an array is submitted (submitit's executor and its
parameters), what its scheduler says of submitted jobs, and how they are cancelled. `EXECUTORS`
declares them; launch, status, protocols and the CLI ask the executor named in an experiment's record
and name no cluster. Adding one (say another scheduler submitit supports) is one subclass here and its
line in `EXECUTORS`.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import submitit

SIGNAL_DELAY_S = 120  # USR2 this long before the kill: time to finish the step and requeue


@dataclass(frozen=True)
class Resources:
    cluster: str = "slurm"  # a name in EXECUTORS
    nodes: int = 1
    tasks_per_node: int = 1  # processes per node: one per GPU, or CPU ranks
    gpus_per_node: int = 0
    cpus_per_task: int = 2
    time_min: int = 24 * 60
    partition: str | None = None
    account: str | None = None
    container: str | None = None  # an Apptainer/Singularity image each task runs in
    binds: tuple[str, ...] = ()  # host paths the container sees (data, licence), besides the experiment


class Executor:
    """The base: submitit's executor of this name, with the resources every executor honours."""

    name: ClassVar[str]
    # a scheduler queues the jobs and knows which still run: a protocol's stages are submitted at once,
    # each waiting for the ones before; without one they run in order within the submitting command
    schedules: ClassVar[bool] = False
    # the optional resources (fields of Resources left at None) that it uses; any other is refused
    honours: ClassVar[tuple[str, ...]] = ()

    def check(self, resources: Resources) -> None:
        """A resource this executor would not use is an error, not silently dropped."""
        for name in ("partition", "account", "container"):
            if getattr(resources, name) is not None and name not in self.honours:
                where = " or ".join(f"--cluster {e.name}" for e in EXECUTORS.values() if name in e.honours)
                raise ValueError(f"--{name} applies to {where}, not --cluster {self.name}")

    def submitit_executor(self, folder: Path, python: str | None) -> submitit.Executor:
        """`python`: the command a Slurm task starts Python with (a container's), None for this one."""
        return submitit.AutoExecutor(folder=folder, cluster=self.name)

    def parameters(self, resources: Resources, job_name: str, after: tuple[str, ...]) -> dict[str, Any]:
        """submitit's parameters of an array; `after`: jobs it waits for (only a scheduler has them)."""
        r = resources
        return {"name": job_name, "nodes": r.nodes, "tasks_per_node": r.tasks_per_node,
                "timeout_min": r.time_min, "gpus_per_node": r.gpus_per_node,
                "cpus_per_task": r.cpus_per_task}  # fmt: skip

    def script(self, folder: Path, python: str, resources: Resources, job_name: str, tasks: int) -> str:
        """The batch script of an array of `tasks` (`ista launch --dry-run`)."""
        raise ValueError(
            f"--dry-run shows the sbatch script of --cluster slurm; --cluster {self.name} has none"
        )

    def slots(self, resources: Resources) -> int:
        """How many of an array's jobs may run at once on this machine (0: the scheduler decides)."""
        return 0

    def scheduler_states(self, job_ids: list[str]) -> dict[str, str]:
        """The scheduler's raw state of each job it lists, asked once, now."""
        return {}

    def job(self, folder: Path, job_id: str) -> submitit.Job:
        return submitit.LocalJob(folder=folder, job_id=job_id)

    def live_state(self, job: submitit.Job, job_id: str, scheduler: dict[str, str]) -> str:
        """The state of a job that has written no result: pending, running, requeued, failed, unknown."""
        return "running" if job.paths.stdout.exists() else "pending"

    def cancel(self, job_ids: list[str]) -> list[str]:
        """Stops the jobs still queued or running (each run checkpoints the step it finished, as on
        preemption); returns those it stopped."""
        return []


class Slurm(Executor):
    name = "slurm"
    schedules = True
    honours = ("partition", "account", "container")
    STATES: ClassVar[dict[str, str]] = {
        "PENDING": "pending", "CONFIGURING": "pending", "SUSPENDED": "pending",
        "RUNNING": "running", "COMPLETING": "running", "RESIZING": "running",
        "REQUEUED": "requeued", "REQUEUE_HOLD": "requeued", "REQUEUE_FED": "requeued",
        "PREEMPTED": "requeued",
        "FAILED": "failed", "CANCELLED": "failed", "TIMEOUT": "failed", "NODE_FAIL": "failed",
        "OUT_OF_MEMORY": "failed", "BOOT_FAIL": "failed", "DEADLINE": "failed",
    }  # fmt: skip

    def submitit_executor(self, folder: Path, python: str | None) -> submitit.Executor:
        return submitit.AutoExecutor(
            folder=folder, cluster="slurm", slurm_python=python, slurm_max_num_timeout=30
        )

    def parameters(self, resources: Resources, job_name: str, after: tuple[str, ...]) -> dict[str, Any]:
        params = super().parameters(resources, job_name, after)
        params.update(slurm_signal_delay_s=SIGNAL_DELAY_S, slurm_partition=resources.partition,
                      slurm_account=resources.account)  # fmt: skip
        if after:  # afterany: a failed seed does not hold the rest back
            params["slurm_additional_parameters"] = {"dependency": "afterany:" + ":".join(after)}
        return {k: v for k, v in params.items() if v is not None}

    def script(self, folder: Path, python: str, resources: Resources, job_name: str, tasks: int) -> str:
        """From submitit's own template."""
        from submitit.slurm.slurm import _make_sbatch_string

        r = resources
        params: dict[str, Any] = {"job_name": job_name, "nodes": r.nodes, "ntasks_per_node": r.tasks_per_node,
                                  "time": r.time_min, "gpus_per_node": r.gpus_per_node or None,
                                  "cpus_per_task": r.cpus_per_task, "signal_delay_s": SIGNAL_DELAY_S,
                                  "partition": r.partition, "account": r.account}  # fmt: skip
        params = {k: v for k, v in params.items() if v is not None}
        command = f"{python} -u -m submitit.core._submit {shlex.quote(str(folder))}"
        return _make_sbatch_string(command=command, folder=folder, map_count=tasks, **params)

    def scheduler_states(self, job_ids: list[str]) -> dict[str, str]:
        """From one sacct call made now. submitit's shared watcher would answer a long-lived process
        (`--watch`) from a cache refreshed at growing intervals, and never again for a job it once saw in
        a state it does not know as live (REQUEUE_HOLD, CONFIGURING)."""
        from submitit.slurm.slurm import SlurmInfoWatcher

        watcher = SlurmInfoWatcher()
        for job_id in job_ids:
            watcher.register_job(job_id)
        watcher.update()
        listed = {job_id: watcher.get_info(job_id, mode="cache").get("State") for job_id in job_ids}
        return {job_id: state for job_id, state in listed.items() if state}

    def job(self, folder: Path, job_id: str) -> submitit.Job:
        return submitit.SlurmJob(folder=folder, job_id=job_id)

    def live_state(self, job: submitit.Job, job_id: str, scheduler: dict[str, str]) -> str:
        if job_id not in scheduler:  # accounting lists a job a moment after sbatch; one without a log waits
            return "unknown" if job.paths.stdout.exists() else "pending"
        raw = scheduler[job_id].split()[0]
        return self.STATES.get(raw, raw.lower())

    def cancel(self, job_ids: list[str]) -> list[str]:
        if job_ids:  # SIGTERM to every step, then the kill after KillWait: the step is checkpointed
            subprocess.run(["scancel", *job_ids], capture_output=True, text=True)  # an ended one: no error
        return job_ids


class Local(Executor):
    """Processes on this machine, as many at once as its CPUs allow (`ista.launch.submit.cpu_slot`)."""

    name = "local"

    def live_state(self, job: submitit.Job, job_id: str, scheduler: dict[str, str]) -> str:
        """Its controller process is the job: once it is gone, a job without a result has failed."""
        if not job.paths.stdout.exists():
            return "pending"
        return "running" if Path(f"/proc/{job_id}").exists() else "failed"

    def slots(self, resources: Resources) -> int:
        per_job = resources.cpus_per_task * resources.tasks_per_node
        return max(1, len(os.sched_getaffinity(0)) // per_job)

    def cancel(self, job_ids: list[str]) -> list[str]:
        """SIGTERM to each job's controller (its id is its pid), which passes it on to the job's task, if
        it is still submitit's: a running seed checkpoints its step, a waiting one ends."""
        stopped = []
        for job_id in job_ids:
            try:
                command = Path(f"/proc/{int(job_id)}/cmdline").read_bytes()
            except (OSError, ValueError):
                continue  # ended, or not a local job id
            if b"submitit" in command:  # not a later process that got the same pid
                os.kill(int(job_id), signal.SIGTERM)
                stopped.append(job_id)
        return stopped


class Debug(Executor):
    """In the submitting process, one seed after another (for debugging: a breakpoint stops in the run)."""

    name = "debug"

    def parameters(self, resources: Resources, job_name: str, after: tuple[str, ...]) -> dict[str, Any]:
        r = resources  # the run shares this process: GPUs and CPUs are this process's own
        return {
            "name": job_name,
            "nodes": r.nodes,
            "tasks_per_node": r.tasks_per_node,
            "timeout_min": r.time_min,
        }


EXECUTORS: dict[str, Executor] = {e.name: e for e in (Slurm(), Local(), Debug())}


def executor(name: str) -> Executor:
    if name not in EXECUTORS:
        raise ValueError(f"unknown cluster {name!r}; choose one of {', '.join(EXECUTORS)}")
    return EXECUTORS[name]
