"""Per-seed state of a launched experiment: pending, running, requeued, done or failed, and why.

The state comes from the files first (a run that wrote its result is done; submitit's result pickle
holds a failed task's error) and from Slurm's accounting (through submitit) for jobs still queued or
running, so a missing or broken seed is shown as such and never stops the table.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ista.launch.executors import Executor, executor
from ista.report.console import duration
from ista.rundir.experiment import RECORD, read_protocol, read_record, seed_dir, waiting_for_slot
from ista.rundir.files import CHECKPOINT, ENV, RESULT
from ista.rundir.progress import read_progress
from ista.rundir.read import read_json, read_metrics
from ista.space.genotypes import Genotype


def seed_states(experiment: Path) -> list[dict[str, Any]]:
    experiment = Path(experiment)
    record = read_record(experiment)
    rows = []
    backend = executor(record["resources"]["cluster"])
    scheduler = backend.scheduler_states(list(record["jobs"].values()))
    folder = Path(record["submitit_folder"]) / "%j"
    for seed in record["seeds"]:
        run_dir = seed_dir(experiment, seed)
        job_id = record["jobs"].get(str(seed), "")
        row: dict[str, Any] = {"seed": seed, "job": job_id, "epochs": _epochs(run_dir), "note": ""}
        if result := read_json(run_dir, RESULT):
            row.update(state="done", metric=_metric(result["final"]), genotype=result["genotype"])
        else:
            row.update(_job_state(backend, folder, job_id, scheduler), metric=None, genotype=None)
            if row["state"] == "running" and waiting_for_slot(run_dir).exists():
                row["state"] = "waiting for a CPU slot"
            elif row["state"] == "pending" and (run_dir / CHECKPOINT).exists():
                row["state"] = "requeued"  # waiting to resume from its checkpoint
            elif row["state"] == "running" and _resumed(run_dir):
                row["state"] = "running (requeued)"
        rows.append(row)
    return rows


def _epochs(run_dir: Path) -> int:
    return len(read_metrics(run_dir))


def _resumed(run_dir: Path) -> bool:
    return read_json(run_dir, ENV, {}).get("resumed_from_epoch") is not None


def _metric(final: dict[str, Any]) -> str | None:
    for key, label in (("test_acc", "test"), ("valid_acc", "held-out")):
        if key in final:
            return f"{label} {final[key]:.2%}"
    return None


def _job_state(backend: Executor, folder: Path, job_id: str, scheduler: dict[str, str]) -> dict[str, str]:
    try:
        job = backend.job(folder, job_id)
    except Exception as err:  # an unreadable folder must not stop the table
        return {"state": "unknown", "note": f"{type(err).__name__}: {err}"}
    if job.paths.result_pickle.exists():
        from submitit.core.utils import pickle_load

        outcome, payload = pickle_load(job.paths.result_pickle)
        if outcome != "error":
            return {"state": "failed", "note": "finished without writing its result"}
        lines = [line.strip() for line in str(payload).splitlines() if line.strip()]
        return {"state": "failed", "note": lines[-1][-300:] if lines else "failed"}  # the exception line
    state = backend.live_state(job, job_id, scheduler)
    return {"state": state, "note": "ended without writing a result" if state == "failed" else ""}


def status_table(experiment: Path) -> Table:
    rows = seed_states(experiment)
    record = read_record(experiment)
    done = sum(r["state"] == "done" for r in rows)
    table = Table(title=f"{experiment}: {record['preset']}, {done}/{len(rows)} seeds done")
    for column in ("seed", "state", "epochs", "result", "genotype", "job", "note"):
        table.add_column(column, overflow="fold")
    colours = {"done": "green", "failed": "red", "requeued": "yellow", "pending": "dim", "waiting": "dim"}
    for r in rows:
        colour = colours.get(r["state"].split()[0], "")
        genotype = "" if not r["genotype"] else Genotype.from_text(r["genotype"]).fingerprint()
        state = f"[{colour}]{r['state']}[/]" if colour else r["state"]
        table.add_row(
            str(r["seed"]), state, str(r["epochs"]), r["metric"] or "", genotype, r["job"], r["note"]
        )
    return table


def print_status(folder: Path) -> list[dict[str, Any]]:
    """The table of an experiment, or one per submitted stage of a protocol folder; every seed's row."""
    console = Console()
    rows = []
    for experiment in experiments(folder):
        console.print(status_table(experiment))
        rows += seed_states(experiment)
    return rows


LIVE_STATES = (
    "pending",
    "waiting for a CPU slot",
    "running",
    "requeued",
    "running (requeued)",
)  # a job that may still write


def experiments(folder: Path) -> list[Path]:
    """The experiment itself, or a protocol's stage experiments that have been submitted."""
    plan = read_protocol(folder)
    if plan is None:
        return [Path(folder)]
    return [Path(s["experiment"]) for s in plan["stages"] if (Path(s["experiment"]) / RECORD).is_file()]


def cancel(folder: Path) -> list[tuple[Path, list[str]]]:
    """Stops the jobs of the experiment (or of a protocol's stages) still queued or running, through the
    executor they were submitted to; returns each experiment's stopped jobs."""
    stopped = []
    for experiment in experiments(folder):
        rows = seed_states(experiment)  # unknown: started, and not yet in the scheduler's accounting
        live = [r["job"] for r in rows if r["job"] and (r["state"] in LIVE_STATES or r["state"] == "unknown")]
        backend = executor(read_record(experiment)["resources"]["cluster"])
        stopped.append((experiment, backend.cancel(list(dict.fromkeys(live)))))
    return stopped


def stages_to_come(folder: Path) -> list[str]:
    """A protocol's stages that are not submitted yet while the process that submits them in turn (the
    local and debug executors) still runs: a view of the protocol is not over before they are."""
    record = read_protocol(folder)
    if record is None:
        return []
    submitter = record.get("submitter") or {}
    if submitter.get("host") != socket.gethostname() or not _alive(submitter.get("pid")):
        return []
    return [s["name"] for s in record["stages"] if s.get("submitted") is None]


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def progress_table(experiment: Path) -> tuple[Table, bool]:
    """Where each seed is (from its progress.json), and whether any is still queued or running."""
    rows = seed_states(experiment)
    table = Table(title=f"{experiment}: {sum(r['state'] == 'done' for r in rows)}/{len(rows)} seeds done")
    for column in ("seed", "state", "epoch", "step", "loss", "acc", "img/s", "ETA", "updated"):
        table.add_column(column)
    for r in rows:
        p = read_progress(seed_dir(experiment, r["seed"]))
        table.add_row(
            str(r["seed"]), r["state"],
            f"{min(p['epoch'] + 1, p['epochs'])}/{p['epochs']}" if p else "",
            f"{p['step']}/{p['steps']}" if p else "",
            f"{p['train_loss']:.3f}" if "train_loss" in p else "",
            f"{p['train_acc']:.1%}" if "train_acc" in p else "",
            f"{p['images_per_s']:,.0f}" if "images_per_s" in p else "",
            duration(p["eta_s"]) if p.get("eta_s") is not None and r["state"] != "done" else "",
            f"{time.time() - p['updated']:.0f} s ago" if p else "",
        )  # fmt: skip
    return table, any(r["state"] in LIVE_STATES for r in rows)


def watch(folder: Path, every_s: float = 2.0) -> None:
    """A live view of every seed (of every stage), refreshed until none is queued or running."""
    from rich.console import Group
    from rich.live import Live

    with Live(refresh_per_second=4) as live:
        while True:
            tables = [progress_table(e) for e in experiments(folder)]
            to_come = stages_to_come(folder)
            notes = [f"stage {name}: not submitted yet" for name in to_come]
            live.update(Group(*(t for t, _ in tables), *notes))
            if not any(busy for _, busy in tables) and not to_come:
                return
            time.sleep(every_s)
