"""One writer per run directory, with real processes holding and contending for the lock."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest

from ista.rundir.lock import LOCK_NAME, LockLost, RunDirInUse, RunLock, holder_text

# Holds the lock on argv[1] until killed.
HOLD = """
import sys, time
from pathlib import Path
from ista.rundir.lock import RunLock
RunLock(Path(sys.argv[1])).acquire()
print("held", flush=True)
time.sleep(60)
"""

# Says "ready", waits for "go" on stdin, then tries the lock; a winner holds it until stdin closes.
CONTEND = """
import os, sys
from pathlib import Path
from ista.rundir.lock import RunDirInUse, RunLock
print("ready", flush=True)
sys.stdin.readline()
try:
    RunLock(Path(sys.argv[1])).acquire()
except RunDirInUse as err:
    print("refused", err, flush=True)
else:
    print("won", os.getpid(), flush=True)
    sys.stdin.read()
"""


@pytest.fixture(autouse=True)
def no_slurm(monkeypatch):
    """Tests may run inside a Slurm job; its ids would make every lock "the same run"."""
    for name in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def spawn():
    """Starts Python children (killed at the end of the test); returns a function (code, *args, env)."""
    children = []

    def start(code, *args, env=None, stdin=None):
        p = subprocess.Popen(
            [sys.executable, "-c", code, *map(str, args)],
            stdin=stdin,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        children.append(p)
        return p

    yield start
    for p in children:
        if p.poll() is None:
            p.kill()
        p.wait()
        for stream in (p.stdin, p.stdout):
            if stream:
                stream.close()


def hold(spawn, run_dir, env=None):
    p = spawn(HOLD, run_dir, env=env)
    assert p.stdout.readline().strip() == "held"
    return p


def write_lock(run_dir, age_s=0.0, **fields):
    run_dir.mkdir(parents=True, exist_ok=True)
    info = {"host": socket.gethostname(), "pid": 1, "pid_start": None, "slurm_job": None}
    info |= {"started": "2024-01-01T00:00:00+0000", "token": uuid.uuid4().hex, **fields}
    tmp = run_dir / "tmp.json"
    tmp.write_text(json.dumps(info))
    os.replace(tmp, run_dir / LOCK_NAME)
    now = time.time()
    os.utime(run_dir / LOCK_NAME, (now - age_s, now - age_s))
    return info


def lock_info(run_dir):
    return json.loads((run_dir / LOCK_NAME).read_text())


def dead_pid():
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_second_process_is_refused_until_the_holder_dies(tmp_path, spawn):
    d = tmp_path / "run"
    child = hold(spawn, d)
    with pytest.raises(RunDirInUse) as err:
        RunLock(d).acquire()
    msg = str(err.value)
    assert f"process {child.pid}" in msg and f"host {socket.gethostname()}" in msg and "started" in msg
    assert "Slurm job" not in msg
    assert os.listdir(d) == [LOCK_NAME]  # refused before writing anything

    child.send_signal(signal.SIGKILL)
    child.wait()
    lock = RunLock(d).acquire()
    assert lock_info(d)["pid"] == os.getpid() == lock.holder["pid"]
    assert "process is gone" in lock.took_over
    lock.check()
    lock.release()
    assert not (d / LOCK_NAME).exists()


def test_same_slurm_job_takes_over_and_another_is_refused(tmp_path, spawn, monkeypatch):
    d = tmp_path / "run"
    hold(spawn, d, env={"SLURM_JOB_ID": "123"})
    monkeypatch.setenv("SLURM_JOB_ID", "124")
    with pytest.raises(RunDirInUse, match="Slurm job 123"):
        RunLock(d).acquire()

    monkeypatch.setenv("SLURM_JOB_ID", "123")
    with RunLock(d) as lock:
        assert lock_info(d)["token"] == lock.holder["token"]
        assert lock_info(d)["slurm_job"] == "123"
        assert "same Slurm job 123" in lock.took_over
    assert not (d / LOCK_NAME).exists()


def test_array_task_is_its_own_job(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "999")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "123")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "4")
    with RunLock(tmp_path) as lock:
        assert lock.holder["slurm_job"] == "123_4"


def test_other_host_is_taken_over_only_after_the_lease(tmp_path):
    write_lock(tmp_path, host="elsewhere")
    with pytest.raises(RunDirInUse, match="host elsewhere, process 1, started") as err:
        RunLock(tmp_path).acquire()
    assert "older than 300 s" in str(err.value)

    write_lock(tmp_path, age_s=400, host="elsewhere")
    with pytest.raises(RunDirInUse, match="older than 1000 s"):
        RunLock(tmp_path, lease_s=1000).acquire()
    with RunLock(tmp_path) as lock:
        assert lock_info(tmp_path)["host"] == socket.gethostname()
        assert "heartbeat 400 s old" in lock.took_over


def test_unreadable_lock_is_held_until_its_lease_ends(tmp_path):
    (tmp_path / LOCK_NAME).write_text("{not json")
    with pytest.raises(RunDirInUse, match="unknown holder"):
        RunLock(tmp_path).acquire()
    old = time.time() - 400
    os.utime(tmp_path / LOCK_NAME, (old, old))
    with RunLock(tmp_path):
        assert lock_info(tmp_path)["pid"] == os.getpid()


def test_reused_pid_is_not_the_holder(tmp_path):
    """Our own pid with another start time: the process that wrote the lock is gone."""
    write_lock(tmp_path, pid=os.getpid(), pid_start=1)
    with RunLock(tmp_path) as lock:
        assert lock.took_over is not None
    write_lock(tmp_path, pid=os.getpid(), pid_start=RunLock(tmp_path).holder["pid_start"])
    with pytest.raises(RunDirInUse, match=f"process {os.getpid()}"):
        RunLock(tmp_path).acquire()


def test_heartbeat_refreshes_the_mtime(tmp_path):
    with RunLock(tmp_path, lease_s=0.5):
        old = time.time() - 100
        os.utime(tmp_path / LOCK_NAME, (old, old))
        deadline = time.monotonic() + 10
        while (tmp_path / LOCK_NAME).stat().st_mtime < old + 50:
            assert time.monotonic() < deadline, "the heartbeat did not refresh the lock"
            time.sleep(0.02)


def test_check_detects_a_take_over_and_release_spares_the_new_holder(tmp_path):
    lock = RunLock(tmp_path).acquire()
    lock.check()
    theirs = write_lock(tmp_path, host="elsewhere", pid=42)
    with pytest.raises(LockLost, match="host elsewhere, process 42"):
        lock.check()
    lock.release()
    assert lock_info(tmp_path)["token"] == theirs["token"]


def test_two_contenders_for_a_stale_lock(tmp_path, spawn):
    write_lock(tmp_path, pid=dead_pid())
    contenders = [spawn(CONTEND, tmp_path, stdin=subprocess.PIPE) for _ in range(2)]
    for p in contenders:
        assert p.stdout.readline().strip() == "ready"
    for p in contenders:
        p.stdin.write("go\n")
        p.stdin.flush()
    answers = [p.stdout.readline().split(maxsplit=1) for p in contenders]
    assert sorted(a[0] for a in answers) == ["refused", "won"], answers
    winner = next(a[1].strip() for a in answers if a[0] == "won")
    refusal = next(a[1] for a in answers if a[0] == "refused")
    assert f"process {winner}," in refusal
    assert lock_info(tmp_path)["pid"] == int(winner)
    assert sorted(os.listdir(tmp_path)) == [LOCK_NAME]  # no temporary or set-aside files left


def test_a_dead_contenders_claim_is_cleared_and_a_live_one_waited_for(tmp_path):
    """A contender killed while taking over leaves its claim; a live claim means a take-over under way."""
    claim = tmp_path / f".{LOCK_NAME}.takeover"
    write_lock(tmp_path, pid=dead_pid())
    claim.write_text(json.dumps({"host": socket.gethostname(), "pid": dead_pid(), "token": "c"}))
    with RunLock(tmp_path):
        assert not claim.exists()

    write_lock(tmp_path, pid=dead_pid())
    me = RunLock(tmp_path).holder
    claim.write_text(json.dumps(me))
    with pytest.raises(RunDirInUse, match="contending"):
        RunLock(tmp_path).acquire()
    assert claim.exists()


def test_holder_text():
    info = {"host": "h", "pid": 7, "slurm_job": "5_1", "started": "T"}
    assert holder_text(info) == "host h, process 7, Slurm job 5_1, started T"
    assert holder_text({**info, "slurm_job": None}) == "host h, process 7, started T"
    assert "unknown" in holder_text({})


def test_a_second_search_on_a_held_run_directory_stops_before_writing(tmp_path, cli):
    """Two real `ista search` runs on one --out: the second (in this process), with other settings, is
    refused and writes nothing; the first finishes as it would have alone."""
    ista = os.path.join(os.path.dirname(sys.executable), "ista")
    args = [ista, "search", "--preset", "demo", "data.subset=128", "network.channels=4", "network.layers=3",
            "epochs=2"]  # fmt: skip
    out = ["--out", str(tmp_path), "--quiet"]
    first = subprocess.Popen([*args, *out], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (tmp_path / "config.json").exists():
        assert first.poll() is None and time.time() < deadline, first.stderr.read()
        time.sleep(0.05)
    config = (tmp_path / "config.json").read_bytes()
    code, _, err = cli(*args[1:], "optim.lr=0.05", *out)
    assert code == 2
    holder = f"host {socket.gethostname()}, process {first.pid}, started "
    assert f"{tmp_path} is in use by another run ({holder}" in err, err
    assert (tmp_path / "config.json").read_bytes() == config
    assert first.wait(timeout=300) == 0, first.stderr.read()
    assert (tmp_path / "result.json").exists() and not (tmp_path / LOCK_NAME).exists()
