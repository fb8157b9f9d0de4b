"""`ista launch` against a real two-node Slurm cluster (tests/cluster/slurm-test-cluster.sh; CI starts it).

Each seed is a 2-node distributed run (one CPU rank per node, gloo across the nodes' own addresses).
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ista.train.checkpoint import load_checkpoint

ISTA = Path(sys.executable).with_name("ista")
# 4 steps an epoch on each of the two ranks, so that a signal lands inside an epoch
PREEMPTED = {
    "search": ["--preset", "demo", "data.subset=256", "batch_size=16"],
    "training": ["--preset", "cifar10-eval", "data.subset=256", "batch_size=32"],
}
SMALL = ["network.channels=4", "network.layers=3", "epochs=2", "data.workers=1", "--nodes", "2",
         "--cpus-per-task", "1", "--time", "15"]  # fmt: skip
RUN = [*PREEMPTED["search"], *SMALL]  # the array's seed 0 is also the USR2 test's uninterrupted search


def cluster_up() -> str | None:
    """Why no cluster can be used here, or None."""
    if not os.environ.get("SLURM_CONF") or not shutil.which("sinfo"):
        return "no Slurm cluster: start one with tests/cluster/slurm-test-cluster.sh up and export SLURM_CONF"
    done = subprocess.run(["sinfo", "-h"], capture_output=True, text=True, timeout=30)
    return None if done.returncode == 0 else f"sinfo failed: {done.stderr.strip()}"


pytestmark = pytest.mark.skipif(  # CI sets ISTA_REQUIRE_SLURM, so there these tests cannot skip
    cluster_up() is not None and not os.environ.get("ISTA_REQUIRE_SLURM"), reason=str(cluster_up())
)


@pytest.fixture(scope="module")
def launch(cli):
    """`ista launch ARGS` (or another `command`) in this process (no interpreter start-up beside the
    cluster's jobs), with extra environment variables for the jobs it submits: Slurm passes the submitting
    environment on."""

    def run(*args: str, command: str = "launch", **env: str) -> subprocess.CompletedProcess:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            code, out, err = cli(command, *args)
        return subprocess.CompletedProcess(args, code, out, err)

    return run


def history(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if not k.endswith("_s")} for line in lines]


@pytest.fixture(scope="module")
def array(tmp_path_factory, launch):
    """Seeds 0-1 as one array job; seed 1 finds a damaged checkpoint in its run directory and fails."""
    experiment = tmp_path_factory.mktemp("array") / "experiment"
    (experiment / "seed-1").mkdir(parents=True)
    (experiment / "seed-1" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    # A MASTER_PORT in the submitting shell must not put the concurrent tasks' ranks in one group.
    done = launch(*RUN, "--seeds", "0-1", "--experiment", str(experiment), "--wait", MASTER_PORT="29555")
    return experiment, done


def test_seeds_run_as_one_array_of_two_node_runs(array):
    experiment, done = array
    assert done.returncode == 1, done.stdout + done.stderr  # one seed failed on purpose
    record = json.loads((experiment / "experiment.json").read_text())
    assert len({job.split("_")[0] for job in record["jobs"].values()}) == 1  # one array job
    run_dir = experiment / "seed-0"
    assert (run_dir / "genotype.json").exists() and (run_dir / "result.json").exists()
    env = json.loads((run_dir / "env.json").read_text())
    assert env["world_size"] == 2 and env["launcher"] == "torchrun" and env["slurm_job_id"]
    for seed in (0, 1):
        logs = sorted((experiment / "submitit").glob(f"*_{seed}/*_log.out"))
        assert len(logs) == 2  # one log per rank, one rank per node


def test_a_failing_seed_shows_as_failed_and_the_others_finish(array, cli):
    experiment, _ = array
    code, table, _ = cli("launch", "--status", experiment)
    assert code == 1  # something failed
    assert "1/2 seeds done" in table
    rows = {line.split("│")[1].strip(): line for line in table.splitlines() if line.count("│") > 4}
    assert "done" in rows["0"]
    assert "failed" in rows["1"] and "CheckpointError: cannot read checkpoint" in rows["1"]


def stdout(args: list[str]) -> str:
    return subprocess.run(args, capture_output=True, text=True).stdout


def job_info(job: str) -> str:
    return stdout(["scontrol", "show", "job", job])


def array_job(experiment: Path) -> str:
    """The Slurm array job of an experiment's seeds."""
    return json.loads((experiment / "experiment.json").read_text())["jobs"]["0"].split("_")[0]


def start_requeued(job: str, deadline: float) -> str:
    """Slurm holds a requeued job for 2 minutes; as the admin, let it start now: once it is pending (while
    it is still completing, the requeue's own begin time replaces ours), its nodes have finished the old
    allocation, and a new second has begun since its credential was revoked (slurmd compares whole
    seconds: a job started in the same second is killed with "Job credential revoked")."""
    while time.time() < deadline:
        info = job_info(job)
        if "Restarts=1" in info and "JobState=PENDING" in info:
            break
        time.sleep(0.2)
    nodes = ["sinfo", "-h", "-N", "-o", "%T"]
    while "comp" in subprocess.run(nodes, capture_output=True, text=True).stdout and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.1)
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)
    return info


@pytest.mark.parametrize("kind", PREEMPTED)
def test_usr2_mid_epoch_requeues_and_the_run_ends_as_an_uninterrupted_one(
    tmp_path, write_cifar, launch, array, kind
):
    """Preemption as Slurm does it: USR2 to the job's steps inside an epoch; every rank finishes its step,
    rank 0 checkpoints it, submitit requeues the job, and the requeued job resumes at that step. (The
    search runs on two nodes; the training, the same runner with another method, on one.)"""
    args = [*PREEMPTED[kind], *SMALL]  # (the KEY=VALUE overrides in one run)
    straight, interrupted = array[0], tmp_path / "interrupted"  # the array's seed 0 ran this search
    if kind == "training":
        args.insert(2, f"data.root={write_cifar(tmp_path / 'data', per_batch=60, digits=True).parent}")
        args[args.index("--nodes") + 1] = "1"  # 8 steps an epoch
        args += ["--genotype", "ISTA_twostage"]
        straight = tmp_path / "straight"
        done = launch(*args, "--seeds", "0", "--experiment", str(straight))  # side by side
        assert done.returncode == 0, done.stderr
    done = launch(*args, "--seeds", "0", "--experiment", str(interrupted))
    assert done.returncode == 0, done.stderr
    job = json.loads((interrupted / "experiment.json").read_text())["jobs"]["0"]
    run_dir = interrupted / "seed-0"
    deadline = time.time() + 600
    while not (run_dir / "checkpoint.pt").exists() and time.time() < deadline:
        time.sleep(0.05)  # epoch 0 is done: the ranks are in epoch 1's steps
    subprocess.run(["scancel", "--signal=USR2", job], check=True)  # to the job steps, as preemption does
    info = start_requeued(job, deadline)
    assert "Restarts=1" in info, info  # submitit requeued it
    for experiment in (straight, interrupted):
        while not (experiment / "seed-0" / "result.json").exists():
            assert time.time() < deadline, job_info(job)
            time.sleep(0.5)
    env = json.loads((run_dir / "env.json").read_text())
    assert env["resumed_from_epoch"] == 1 and env["resumed_from_step"] >= 1, env  # inside epoch 1
    assert history(run_dir) == history(straight / "seed-0")
    assert (run_dir / "genotype.json").read_text() == (straight / "seed-0" / "genotype.json").read_text()
    a, b = (load_checkpoint(d / "checkpoint.pt")["task"]["model"] for d in (run_dir, straight / "seed-0"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_dry_run_prints_the_array_script(tmp_path, launch):
    done = launch(
        *RUN, "--seeds", "0-4", "--experiment", str(tmp_path / "x"), "--dry-run", "--partition", "gpu"
    )
    assert done.returncode == 0, done.stderr
    for line in (
        "#SBATCH --array=0-4%5",
        "#SBATCH --nodes=2",
        "#SBATCH --signal=USR2@120",
        "#SBATCH --partition=gpu",
    ):
        assert line in done.stdout
    assert not (tmp_path / "x").exists()  # nothing submitted, nothing written


def test_the_plain_sbatch_template_runs_an_array_of_srun_ranks_and_requeues_on_usr2(tmp_path):
    """Without submitit: USR2 to the batch shell of task 0 (as `--signal=B:USR2@120` sends it) reaches the
    ranks, which checkpoint their step; the task requeues itself and resumes from that step."""
    template = Path(__file__).resolve().parents[2] / "slurm" / "ista-array.sbatch"
    resources = ["--array=0-1", "--nodes=2", "--cpus-per-task=1", "--gpus-per-node=0", "--time=10"]
    output = f"--output={tmp_path}/%a.out"
    search = [*PREEMPTED["search"], *SMALL[:4]]
    args = ["sbatch", "--parsable", *resources, output, str(template), "search", *search]
    env = {**os.environ, "ISTA": str(ISTA), "EXPERIMENT": str(tmp_path / "experiment")}
    job = subprocess.run(args, capture_output=True, text=True, env=env, check=True).stdout.strip()
    deadline = time.time() + 900
    while not (tmp_path / "experiment" / "seed-0" / "checkpoint.pt").exists():
        assert time.time() < deadline, "task 0 wrote no checkpoint"
        time.sleep(0.05)
    subprocess.run(["scancel", "--batch", "--signal=USR2", f"{job}_0"], check=True)
    info = start_requeued(f"{job}_0", deadline)
    assert "Restarts=1" in info, info + (tmp_path / "0.out").read_text()
    # Poll ourselves: `sbatch --wait` backs off to 30 s between its own polls.
    while subprocess.run(["squeue", "-h", "-j", job], capture_output=True, text=True).stdout.strip():
        assert time.time() < deadline, "the array did not finish"
        time.sleep(0.5)
    sacct = ["sacct", "-n", "-X", "-j", job, "-o", "State"]
    while time.time() < deadline:  # accounting can lag behind the queue
        states = subprocess.run(sacct, capture_output=True, text=True)
        if not {"RUNNING", "PENDING", "REQUEUED", "COMPLETING"} & set(states.stdout.split()):
            break
        time.sleep(0.5)
    log = (tmp_path / "0.out").read_text()
    assert states.stdout.split() == ["COMPLETED", "COMPLETED"], states.stdout + log
    assert "USR2: checkpointing and requeueing" in log and "stopped by SIGUSR2 at epoch 1, step" in log, log
    resumed = json.loads((tmp_path / "experiment" / "seed-0" / "env.json").read_text())
    assert resumed["resumed_from_epoch"] == 1 and resumed["resumed_from_step"] >= 1, resumed
    for seed in (0, 1):
        run_dir = tmp_path / "experiment" / f"seed-{seed}"
        env_json = json.loads((run_dir / "env.json").read_text())
        assert env_json["launcher"] == "srun" and env_json["world_size"] == 2 and env_json["seed"] == seed
        assert (run_dir / "genotype.json").exists()


def test_a_protocol_is_one_submission_and_ends_with_its_table(tmp_path, launch, cli):
    """Two-stage (search seed 1 fails on purpose: its table is over seed 0) as one `ista protocol` call that
    submits every stage at once; the evaluation waits for the searches. (The other protocols differ only in
    their plan and table, both the same on every executor: tests/launch/test_protocol.py runs them.)"""
    tiny = ["data.subset=256", "network.channels=4", "network.layers=3", "epochs=1", "data.workers=1",
            "eval.data.subset=192"]  # fmt: skip
    where = ["--nodes", "1", "--cpus-per-task", "1", "--time", "15"]
    two = tmp_path / "two-stage"
    (two / "search" / "seed-1").mkdir(parents=True)
    (two / "search" / "seed-1" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    seeds = ["--seeds", "0-1", "--eval-seeds", "0", "--folder", str(two)]
    done = launch("two-stage", "--preset", "demo", *tiny, *seeds, *where, command="protocol")
    assert done.returncode == 0 and "3 seed run(s) submitted to slurm" in done.stdout, done.stderr
    deadline = time.time() + 600
    while True:  # in this process: each table asks Slurm afresh
        _, status, _ = cli("launch", "--status", two)
        live = any(state in status for state in ("pending", "running", "requeued"))
        if status.count("seeds done") == 2 and not live:
            break
        assert time.time() < deadline, status
        time.sleep(1)
    # the evaluation was submitted depending on the searches, and waited: it started once every search had
    # ended
    search, evaluation = (array_job(two / stage) for stage in ("search", "eval"))
    (script,) = (two / "eval" / "submitit").glob(f"{evaluation}/*_submission.sh")
    assert f"#SBATCH --dependency=afterany:{search}_0:{search}_1" in script.read_text()
    sacct = ["sacct", "-n", "-X", "-P", "-j", f"{search},{evaluation}", "-o", "JobID,Start,End"]
    while len(rows := [r.split("|") for r in stdout(sacct).split()]) < 3 or "Unknown" in {r[2] for r in rows}:
        assert time.time() < deadline, rows  # accounting can lag behind the queue
        time.sleep(0.5)
    ends = [end for job, _, end in rows if job.split("_")[0] == search]
    assert min(start for job, start, _ in rows if job.split("_")[0] == evaluation) >= max(ends), rows
    code, out, err = cli("summarize", two, "--json")
    assert code == 0, err
    summary = json.loads(out)["protocols"][0]
    assert summary["searches"] == "1/2 done" and summary["selected"]["seed"] == 0
    assert summary["test_error"]["n"] == 1  # the evaluation seed trained seed 0's genotype


def test_cancel_ends_a_submitted_array(tmp_path, launch, cli):
    experiment = tmp_path / "cancelled"
    one = ["--nodes", "1", "--cpus-per-task", "1", "--time", "15", "--seeds", "0", "--experiment", experiment]
    done = launch(*PREEMPTED["search"], *SMALL[:4], *map(str, one))
    assert done.returncode == 0, done.stderr
    job = json.loads((experiment / "experiment.json").read_text())["jobs"]["0"]
    code, out, err = cli("launch", "--cancel", experiment)
    assert code == 0 and f"{experiment}: cancelled 1 job(s) {job}" in out, out + err
    deadline = time.time() + 120
    while subprocess.run(["squeue", "-h", "-j", job], capture_output=True, text=True).stdout.strip():
        assert time.time() < deadline, job_info(job)
        time.sleep(0.5)
    while "failed" not in (table := cli("launch", "--status", experiment)[1]):  # accounting may lag
        assert time.time() < deadline, table
        time.sleep(0.5)
