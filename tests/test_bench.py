"""The benchmarks still run (at toy sizes): their figures are only measured, never asserted."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
def test_benchmark_runs_and_prints_json(script):
    if script == "loader.py" and ffcv_import_error():
        pytest.skip(f"ffcv is not installed: {ffcv_import_error()}")
    command = [sys.executable, str(BENCH / script), *RUNS[script]]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout.strip().splitlines()[-1])
    assert row["bench"] == script.removesuffix(".py")
