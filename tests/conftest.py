"""Shared fixtures: data the project makes itself, in the layouts users have on disk."""

import io
import os
import signal
import socket
import subprocess
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest

# FFCV's pipelines are numba code that every new loader compiles afresh: 3-15 s each on 2 cores, most of
# the FFCV tests' time. Here they run as the same Python code uncompiled, except in the processes of
# tests/data/test_ffcv.py::test_two_ranks_read_disjoint_shards..., which compile them as every run does.
# (Set before anything imports numba, which reads it once; NUMBA_DISABLE_JIT=0 compiles everywhere.)
os.environ.setdefault("NUMBA_DISABLE_JIT", "1")
# One intra-op thread in every process of the suite, this one and those it starts (Slurm passes the
# submitting environment on): the suite runs two workers (tests/launch/test_slurm.py beside the rest) and
# many processes of its own on few cores, and OpenMP threads of concurrent processes spin against each other
# (gloo ranks, the test cluster's jobs). Runs given CPUs (`--cpus-per-task`) still set their own threads:
# tests/launch/test_local.py checks it. Set before numpy and torch read it at import.
os.environ["OMP_NUM_THREADS"] = "1"


@pytest.fixture
def free_port() -> int:
    """A loopback port nobody listens on, for a process group's rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def write_cifar():
    """Writes a CIFAR-10 folder in the official python layout with random images; returns the folder."""
    from ista.data.synthetic import write_cifar10_folder

    return write_cifar10_folder


@pytest.fixture
def write_image_folder():
    """Writes an ImageNet-style folder (train/ and val/, one folder per class) of real JPEG photos: crops
    of scikit-learn's two sample images, of random sizes. Returns the root."""

    def write(root, classes=("n01440764", "n01443537", "n01484850"), train=4, val=2, seed=0):
        from PIL import Image
        from sklearn.datasets import load_sample_images

        photos = load_sample_images().images
        rng = np.random.default_rng(seed)
        for split, n in (("train", train), ("val", val)):
            for c, wnid in enumerate(classes):
                folder = root / split / wnid
                folder.mkdir(parents=True)
                for i in range(n):
                    photo = photos[(c + i) % len(photos)]
                    h, w = rng.integers(80, 400), rng.integers(80, 600)
                    y, x = rng.integers(0, photo.shape[0] - h + 1), rng.integers(0, photo.shape[1] - w + 1)
                    Image.fromarray(photo[y : y + h, x : x + w]).save(folder / f"{wnid}_{i}.JPEG", quality=90)
        return root

    return write


@pytest.fixture(scope="session")
def cli():
    """Runs the `ista` command in this process (no interpreter start-up per call), rich tables 250 columns
    wide; returns (exit code, stdout, stderr). The console script itself is tested once, in tests/cli."""
    from ista.cli.main import main

    def run(*args) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        columns = os.environ.get("COLUMNS")
        os.environ["COLUMNS"] = "250"  # whole rows and notes on one line
        try:
            with redirect_stdout(out), redirect_stderr(err):
                code = main([str(a) for a in args])
        finally:
            os.environ.pop("COLUMNS") if columns is None else os.environ.update(COLUMNS=columns)
        return code, out.getvalue(), err.getvalue()

    return run


@pytest.fixture(scope="session")
def kill_when():
    """`kill_when(process, check)`: SIGKILLs `process` (a dying node: no handler runs) at the first look at
    which `check()` returns a value, and returns it. The process is stopped (SIGSTOP, until the kernel
    shows it stopped) during each look, so it cannot move on between the look and the kill."""

    def kill(process: subprocess.Popen, check, seconds: float = 600):
        stat = Path(f"/proc/{process.pid}/stat")
        deadline = time.time() + seconds
        while time.time() < deadline:
            assert process.poll() is None, process.stderr.read() if process.stderr else "it ended"
            process.send_signal(signal.SIGSTOP)
            while stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] not in "TtZX":
                time.sleep(0.001)
            if (value := check()) is not None:
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=60)
                return value
            process.send_signal(signal.SIGCONT)
            time.sleep(0.02)
        raise AssertionError("timed out")

    return kill


# With `-n 2` (pyproject's addopts) one worker runs the Slurm tests, then BESIDE; the other runs the rest, the
# two about equally long. A fixed split, not xdist's load balancing: every run pairs the same tests.
SLURM = "tests/launch/test_slurm.py"
BESIDE = ("tests/cli/", "tests/launch/test_local.py", "tests/launch/test_protocol.py", "tests/model/",
          "tests/report/test_summary.py", "tests/search/test_one_stage.py",
          "tests/test_containers.py")  # fmt: skip
# Modules whose processes talk to each other at every step (gloo ranks) run last: under `-n 2` the Slurm
# tests' jobs have ended by then, and such ranks slow down two- to threefold under another test's load.
RANKS = ("tests/data/test_ffcv.py", "tests/distributed/", "tests/sparse/test_broadcast.py")


def pytest_collection_modifyitems(config, items):
    ranked = {0: (SLURM,), 1: BESIDE, 3: RANKS}  # the rest: 2

    def place(item) -> int:  # stable: the order otherwise as collected
        return next((k for k, paths in ranked.items() if item.nodeid.startswith(paths)), 2)

    items.sort(key=place)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Two scopes, one a worker: the Slurm tests then BESIDE, and the rest. pytest-xdist's own
    `--dist loadgroup` would do this, but under pytest 9 its group marks no longer reach the scheduler."""
    from xdist.scheduler import LoadScopeScheduling

    class SlurmBeside(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "slurm" if nodeid.startswith((SLURM, *BESIDE)) else "local"

    return SlurmBeside(config, log)
