"""Faults across real ranks (`ista search` processes started the way torchrun starts them, gloo): a rank
that dies or hangs, and a mid-epoch checkpoint resumed with another number of ranks."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ISTA = Path(sys.executable).with_name("ista")
SEARCH = ["search", "--preset", "demo", "data.subset=256", "batch_size=16", "network.channels=4",
          "network.layers=3", "data.workers=1"]  # fmt: skip


def ranks(out: Path, port: int, *more: str, world: int = 2) -> list[subprocess.Popen]:
    procs = []
    for rank in range(world):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}  # fmt: skip
        args = [str(ISTA), *SEARCH, *more, "--out", str(out), "--quiet"]
        pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
        procs.append(subprocess.Popen(args, env=env, text=True, **pipes))
    return procs


def wait_for(path: Path, procs, seconds: float = 300) -> None:
    deadline = time.time() + seconds
    while not path.exists():
        running = all(p.poll() is None for p in procs)
        assert running and time.time() < deadline, [p.stderr.read() for p in procs]
        time.sleep(0.05)


def test_a_killed_rank_stops_the_other_with_one_line(tmp_path, free_port):
    rank0, rank1 = ranks(tmp_path, free_port, "epochs=3")
    wait_for(tmp_path / "checkpoint.pt", [rank0, rank1])  # an epoch done: the run is in its steps
    rank1.send_signal(signal.SIGKILL)
    _, err = rank0.communicate(timeout=120)
    assert rank0.returncode == 2, err
    assert "ista search: error: rank 0: a peer rank on 127.0.0.1 vanished" in err, err
    assert "run the same command again to resume" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_hung_rank_stops_the_other_after_timeout_s(tmp_path, free_port):
    rank0, rank1 = ranks(tmp_path, free_port, "epochs=3", "timeout_s=5")
    try:
        wait_for(tmp_path / "checkpoint.pt", [rank0, rank1])
        rank1.send_signal(signal.SIGSTOP)  # alive, connected, and silent
        _, err = rank0.communicate(timeout=120)
    finally:
        rank1.kill()
        rank1.wait()
    assert rank0.returncode == 2, err
    assert "rank 0: no answer from the other ranks within timeout_s=5 s" in err and "raise timeout_s" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_mid_epoch_checkpoint_needs_the_ranks_that_wrote_it(tmp_path, free_port):
    one = subprocess.Popen([str(ISTA), *SEARCH, "epochs=2", "--out", str(tmp_path), "--quiet"],
                           stderr=subprocess.PIPE, text=True)  # fmt: skip
    wait_for(tmp_path / "config.json", [one])
    one.send_signal(signal.SIGUSR2)
    assert one.wait(timeout=300) == 128 + signal.SIGUSR2, one.stderr.read()
    checkpoint = (tmp_path / "checkpoint.pt").read_bytes()
    for proc in ranks(tmp_path, free_port, "epochs=2"):
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 2, err
        assert "was written in the middle of epoch 0" in err and "by 1 ranks, and this run has 2" in err, err
    assert (tmp_path / "checkpoint.pt").read_bytes() == checkpoint
