"""Local launches on one machine: tasks wait for a CPU slot instead of all starting at once."""

import contextlib
import fcntl
import json
import os
import threading
import time

from ista.launch.status import LIVE_STATES, seed_states
from ista.launch.submit import cpu_slot
from ista.rundir.experiment import slots_dir, waiting_for_slot, write_record
from ista.train.checkpoint import load_checkpoint


def hold_slot(slots, waiting=None):
    """A task in a thread: holds one of 2 slots of `slots` from when `got` is set until `done` is set.
    (flock locks belong to open files, so threads contend for them as processes do.)"""
    got, done = threading.Event(), threading.Event()

    def task():
        with cpu_slot(slots, 2, waiting):
            got.set()
            done.wait(timeout=60)

    thread = threading.Thread(target=task)
    thread.start()
    return got, done, thread


def test_a_third_task_waits_for_one_of_two_cpu_slots(tmp_path):
    slots, waiting = tmp_path / "slots", tmp_path / "seed-2.waiting"
    first, second = hold_slot(slots), hold_slot(slots)
    assert first[0].wait(timeout=10) and second[0].wait(timeout=10)  # the first two run at the same time
    third = hold_slot(slots, waiting)
    while not waiting.exists():  # it looked at both slots, found them taken, and says it waits
        assert third[2].is_alive()
    assert not third[0].is_set()
    first[1].set()  # one task ends: the third takes its slot
    assert third[0].wait(timeout=10) and not waiting.exists()
    for _, done, thread in (second, third, first):
        done.set()
        thread.join(timeout=10)


def test_a_task_waiting_for_a_slot_says_so_in_the_status_table(tmp_path):
    experiment = tmp_path / "experiment"
    run_dir, slots = experiment / "seed-0", slots_dir(experiment)
    submitit, job = experiment / "submitit", str(os.getpid())  # a live process as the job's controller
    (submitit / job).mkdir(parents=True)
    (submitit / job / f"{job}_0_log.out").touch()  # a local job that has started: its log exists
    record = {"preset": "demo", "seeds": [0], "jobs": {"0": job}, "resources": {"cluster": "local"}}
    write_record(experiment, {**record, "submitit_folder": str(submitit)})
    got = threading.Event()

    def task():
        with cpu_slot(slots, 2, waiting_for_slot(run_dir)):
            got.set()

    with contextlib.ExitStack() as held:
        slots.mkdir()
        for k in range(2):  # both slots taken
            fcntl.flock(held.enter_context(open(slots / f"slot-{k}", "a")), fcntl.LOCK_EX)
        waiter = threading.Thread(target=task)
        waiter.start()
        while not waiting_for_slot(run_dir).exists():
            assert waiter.is_alive()
        assert seed_states(experiment)[0]["state"] == "waiting for a CPU slot"
    waiter.join(timeout=10)
    assert got.is_set() and not waiting_for_slot(run_dir).exists()
    assert seed_states(experiment)[0]["state"] == "running"


def test_cancel_stops_a_running_seed_at_its_step_and_a_waiting_one_before_it_starts(tmp_path, cli):
    """`ista launch --cancel` on two local seeds with one CPU slot: the running one checkpoints the step
    it finished (SIGTERM, as Slurm's scancel sends it), the waiting one ends without running."""
    experiment = tmp_path / "experiment"
    search = ["--preset", "demo", "data.subset=256", "network.channels=4", "network.layers=3", "epochs=20",
              "data.workers=1", "--seeds", "0-1", "--cluster", "local",
              "--experiment", experiment]  # fmt: skip
    whole_machine = str(len(os.sched_getaffinity(0)))  # one job at a time
    code, _, err = cli("launch", *search, "--cpus-per-task", whole_machine)
    assert code == 0, err
    deadline = time.time() + 120
    # whichever seed took the slot first: its epoch 0 is done, and it is in epoch 1's steps
    while not (started := [s for s in (0, 1) if (experiment / f"seed-{s}" / "checkpoint.pt").exists()]):
        assert time.time() < deadline
        time.sleep(0.05)
    running, waiting = started[0], 1 - started[0]
    env = json.loads((experiment / f"seed-{running}" / "env.json").read_text())
    assert env["torch_threads"] == int(whole_machine)  # its --cpus-per-task (the suite's processes have 1)
    states = {r["seed"]: r["state"] for r in seed_states(experiment)}
    assert states == {running: "running", waiting: "waiting for a CPU slot"}, states
    code, out, err = cli("launch", "--cancel", experiment)
    assert code == 0 and f"{experiment}: cancelled 2 job(s)" in out, out + err
    rows = seed_states(experiment)
    while any(r["state"] in LIVE_STATES for r in rows):
        assert time.time() < deadline, rows
        time.sleep(0.2)
        rows = seed_states(experiment)
    stopped, cancelled = rows[running], rows[waiting]
    assert stopped["state"] == "failed" and "stopped by SIGTERM at epoch 1, step" in stopped["note"], rows
    assert load_checkpoint(experiment / f"seed-{running}" / "checkpoint.pt")["position"]["epoch"] == 1
    assert cancelled["state"] == "failed" and "cancelled while waiting for a CPU slot" in cancelled["note"]
    assert not (experiment / f"seed-{waiting}" / "config.json").exists()  # it never started
