"""Local launches on one machine: tasks wait for a CPU slot instead of all starting at once."""

import subprocess
import sys

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
