"""Preemption and faults with real processes: step checkpoints on USR2 and on a timer, exact mid-epoch
resume after SIGKILL, a full disk, safe loading of crafted and old checkpoints."""

import json
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ista.train.checkpoint import CheckpointError, load_checkpoint

ISTA = Path(sys.executable).with_name("ista")
TIMINGS = ("epoch_s", "recovery_s")
# two small jobs: a two-stage search on the digits and a training with cutout, drop-path and an auxiliary
# head (everything random a training draws), 8 and 6 steps an epoch
SEARCH = ["search", "--preset", "demo", "data.subset=256", "batch_size=16", "network.channels=4",
          "network.layers=3", "epochs=2"]  # fmt: skip
TRAIN = ["train", "--genotype", "ISTA_twostage", "--preset", "cifar10-eval", "network.channels=4",
         "network.layers=3", "batch_size=32", "epochs=2", "data.subset=192"]  # fmt: skip


def command(job, out: Path, *more: str) -> list[str]:
    return [str(ISTA), *job, *more, "--out", str(out), "--quiet"]


def start(job, out: Path, *more: str, **popen) -> subprocess.Popen:
    return subprocess.Popen(command(job, out, *more), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **popen)  # fmt: skip


@pytest.fixture(scope="module")
def finish(cli):
    """Runs a job to its end in this process: what an interrupted run is compared with, and the resume of
    one (the process that dies is the interrupted one; the one that resumes proves nothing by being new)."""

    def run(job, out: Path, *more: str) -> None:
        code, _, err = cli(*job, *more, "--out", out, "--quiet")
        assert code == 0, err

    return run


@pytest.fixture(scope="module")
def straight_search(tmp_path_factory, finish) -> Path:
    """SEARCH without interruption, once for the tests that compare with it."""
    out = tmp_path_factory.mktemp("straight") / "search"
    finish(SEARCH, out, "checkpoint_every_s=0")
    return out


def outcome(run_dir: Path):
    """What an exact resume must reproduce: metrics without timings, genotype and final weights."""
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    metrics = [{k: v for k, v in m.items() if k not in TIMINGS} for m in history]
    genotype = json.loads((run_dir / "genotype.json").read_text())
    return metrics, genotype, load_checkpoint(run_dir / "checkpoint.pt")["task"]["model"]


def assert_same(a: Path, b: Path) -> None:
    (ma, ga, wa), (mb, gb, wb) = outcome(a), outcome(b)
    assert ma == mb and ga == gb
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def wait_for(check, process: subprocess.Popen, seconds: float = 600):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if value := check():
            return value
        assert process.poll() is None, process.stderr.read()
        time.sleep(0.02)
    raise AssertionError("timed out")


def position(run_dir: Path):
    try:
        return load_checkpoint(run_dir / "checkpoint.pt").get("position")
    except (FileNotFoundError, CheckpointError):
        return None


def step_checkpoint(run_dir: Path, at_least: int):
    """The position of the run's checkpoint if it is a step checkpoint at step `at_least` or later."""
    at = position(run_dir)
    return at if at and at["step"] >= at_least else None


@pytest.mark.parametrize("job", [SEARCH, TRAIN], ids=["two-stage search", "training"])
def test_sigkill_after_a_periodic_step_checkpoint_resumes_exactly(
    tmp_path, write_cifar, finish, straight_search, kill_when, job
):
    straight = straight_search
    if job is TRAIN:
        job = [*job, f"data.root={write_cifar(tmp_path / 'data', per_batch=40, digits=True).parent}"]
        straight = tmp_path / "straight"
        finish(job, straight, "checkpoint_every_s=0")
    # a step checkpoint at every step boundary; killed right after the one of step 3 (or the next) of epoch 0
    every = ["checkpoint_every_s=1e-9"]
    interrupted = start(job, tmp_path / "killed", *every)
    at = kill_when(interrupted, lambda: step_checkpoint(tmp_path / "killed", at_least=3))
    assert at["world_size"] == 1
    finish(job, tmp_path / "killed", *every)  # the same command again, on the lock the dead run left
    env = json.loads((tmp_path / "killed" / "env.json").read_text())
    assert (env["resumed_from_epoch"], env["resumed_from_step"]) == (at["epoch"], at["step"])
    assert_same(straight, tmp_path / "killed")


def test_usr2_checkpoints_the_step_a_full_disk_keeps_it_and_the_same_command_resumes(
    tmp_path, cli, finish, straight_search
):
    run_dir = tmp_path / "run"
    stopped = start(SEARCH, run_dir)
    wait_for(lambda: (run_dir / "config.json").exists(), stopped)  # written once the handlers are in place
    stopped.send_signal(signal.SIGUSR2)  # what Slurm sends before a time limit or preemption
    _, err = stopped.communicate(timeout=600)
    assert stopped.returncode == 128 + signal.SIGUSR2, err
    at = position(run_dir)
    assert at["epoch"] == 0 and at["step"] >= 1
    assert f"stopped by SIGUSR2 at epoch 0, step {at['step']}; checkpoint {run_dir}/checkpoint.pt" in err
    assert "Traceback" not in err
    # A full disk: no file may grow beyond 64 KiB (the checkpoint is bigger). The run stops naming the path
    # and the step checkpoint stays as it was, with no temporary file beside it.
    # (In this process, which ignores SIGXFSZ as Python does, so a write beyond the limit fails with EFBIG.)
    before = (run_dir / "checkpoint.pt").read_bytes()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, hard))
    try:
        code, _, err = cli(*SEARCH, "--out", run_dir, "--quiet")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert code == 2, err
    assert f"cannot write checkpoint {run_dir}/checkpoint.pt: File too large" in err
    assert "previous checkpoint is intact" in err and "Traceback" not in err
    assert (run_dir / "checkpoint.pt").read_bytes() == before
    assert sorted(p.name for p in run_dir.glob(".*")) == []
    finish(SEARCH, run_dir)
    assert_same(straight_search, run_dir)


def test_a_crafted_checkpoint_is_refused_and_runs_nothing(tmp_path, cli):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):  # what unpickling would call: Path.touch(marker)
            return Path.touch, (marker,)

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    torch.save({"epoch": 0, "task": Payload()}, run_dir / "checkpoint.pt")
    code, _, err = cli(*SEARCH, "--out", run_dir, "--quiet")
    assert code == 2 and "refused to read checkpoint" in err and "Nothing in it was run" in err, err
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="tensors and plain values"):
        load_checkpoint(run_dir / "checkpoint.pt")
    assert not marker.exists()


def test_a_previous_release_checkpoint_with_numpy_arrays_still_resumes(tmp_path, cli):
    """The previous release stored A, z (and the one-stage z_prev) as numpy arrays and the RNG states as
    `torch_rng`; such checkpoints load (numeric arrays, nothing else)."""
    args = [*SEARCH[:-1], "epochs=1", "checkpoint_every_s=0"]
    code, _, err = cli(*args, "--out", tmp_path / "new", "--quiet")
    assert code == 0, err
    state = load_checkpoint(tmp_path / "new" / "checkpoint.pt")
    code_state = state["task"]["method"]["code"]
    for key in ("A", "z"):
        code_state[key] = {c: [t.numpy() for t in ts] for c, ts in code_state[key].items()}
    state["torch_rng"] = [r["cpu"] for r in state.pop("rng")]
    old = tmp_path / "old"
    shutil.copytree(tmp_path / "new", old)
    torch.save(state, old / "checkpoint.pt")
    assert isinstance(load_checkpoint(old / "checkpoint.pt")["task"]["method"]["code"]["z"]["normal"][0],
                      np.ndarray)  # fmt: skip
    code, _, err = cli(*args, "--out", old, "--quiet")  # a finished run: loaded, its records rewritten
    assert code == 0, err
    assert (old / "result.json").read_text() == (tmp_path / "new" / "result.json").read_text()
