"""The benchmarks still run (at toy sizes): their figures are only measured, never asserted."""

import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ista.data.splits import ffcv_import_error

BENCH = Path(__file__).resolve().parents[1] / "bench"
RUNS = {
    "supernet_step.py": [
        "--batch",
        "2",
        "--repeats",
        "1",
        "--layers",
        "5",
        "--channels",
        "4",
        "--device",
        "cpu",
    ],
    "search_epoch.py": ["--images", "64", "--device", "cpu"],
    "recovery.py": ["--rounds", "2"],
    "loader.py": ["--images", "500", "--rounds", "1", "--batch", "50"],
}


@pytest.mark.parametrize("script", RUNS)
def test_benchmark_runs_and_prints_json(script, monkeypatch, capsys):
    """Each script as `python bench/SCRIPT` runs it, in this process: its imports are already paid."""
    if script == "loader.py" and ffcv_import_error():
        pytest.skip(f"ffcv is not installed: {ffcv_import_error()}")
    monkeypatch.setattr(sys, "argv", [str(BENCH / script), *RUNS[script]])
    monkeypatch.syspath_prepend(str(BENCH))
    threads = torch.get_num_threads()
    try:
        runpy.run_path(str(BENCH / script), run_name="__main__")
    finally:  # a script owns its process and sets its threads (FFCV's loader sets OpenMP's): not this one's
        torch.set_num_threads(threads)
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["bench"] == script.removesuffix(".py")


def test_the_gpu_check_lists_its_checks_within_8_minutes_and_each_is_runnable(cli, monkeypatch):
    """`bench/gpu.sh` runs only where a GPU is lent, so CI keeps it from rotting: the dry run lists every
    check the issue asks for within 8 minutes of budget, each check has its code, and each tiny run's
    command line is one `ista` accepts."""
    import importlib.util

    done = subprocess.run(["bash", str(BENCH / "gpu.sh"), "--dry-run"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rows = [line.split()[:2] for line in done.stdout.splitlines()]
    budgets = {name: int(seconds) for name, seconds in rows}
    assert budgets.pop("total") == sum(budgets.values()) <= 480
    assert {"host-sync-tests", "run:two-stage", "run:darts-fp16", "run:two-stage-fp16-clip_arch",
            "run:one-stage-official", "run:train-deterministic", "usr2-resume", "cpu-cuda-agreement",
            "syncs-per-step", "step-fp32", "step-bf16", "search-epoch"} <= set(budgets)  # fmt: skip
    spec = importlib.util.spec_from_file_location("gpu_check", BENCH / "gpu_check.py")
    gpu_check = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_check", gpu_check)  # its dataclasses look their module up
    spec.loader.exec_module(gpu_check)
    for name in budgets:
        assert name in gpu_check.RUNS or callable(getattr(gpu_check, "check_" + name.replace("-", "_")))
    for argv, _ in gpu_check.RUNS.values():
        code, out, err = cli(*argv, "data.root=/data", "device=cuda", "--print-config")
        assert code == 0 and json.loads(out)["device"] == "cuda", err
