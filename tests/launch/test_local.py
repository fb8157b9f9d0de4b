"""Local launches on one machine: tasks wait for a CPU slot instead of all starting at once."""

import contextlib
import fcntl
import subprocess
import sys
import threading

from ista.launch.status import seed_states
from ista.launch.submit import cpu_slot
from ista.rundir.experiment import slots_dir, waiting_for_slot, write_record

# Holds a slot of argv[1] (2 slots) for 1 s; prints when it got it and, still holding it, when it lets go.
HOLD = """
import sys, time
from pathlib import Path
from ista.launch.submit import cpu_slot
with cpu_slot(Path(sys.argv[1]), 2):
    print(time.time(), flush=True)
    time.sleep(1)
    print(time.time(), flush=True)
"""


def test_a_third_task_waits_for_one_of_two_cpu_slots(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
             for _ in range(3)]  # fmt: skip
    spans = sorted(tuple(map(float, p.communicate(timeout=60)[0].split())) for p in procs)
    assert all(p.returncode == 0 for p in procs)
    first_free = min(end for _, end in spans[:2])
    assert spans[2][0] > first_free, spans  # the third started once one of the first two was done
    assert spans[1][0] < spans[0][1]  # the first two ran at the same time


def test_a_task_waiting_for_a_slot_says_so_in_the_status_table(tmp_path):
    experiment = tmp_path / "experiment"
    run_dir, slots = experiment / "seed-0", slots_dir(experiment)
    submitit = experiment / "submitit"
    (submitit / "4242").mkdir(parents=True)
    (submitit / "4242" / "4242_0_log.out").touch()  # a local job that has started: its log exists
    record = {"preset": "demo", "seeds": [0], "jobs": {"0": "4242"}, "resources": {"cluster": "local"}}
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
